using Dataplane.Encap;

namespace Dataplane.Engine;

/// <summary>
/// What a backend means, stated once (flannel: each backend owns its <c>encapOverhead</c> and
/// <c>MTU()</c>): its name, default port and device, what it writes in front of the inner packet
/// inside the UDP payload, the overhead that makes over each underlay family, what its lease
/// carries, and whether it carries IPv6 over an IPv4 underlay.
///
///   udp:   the UDP payload is the inner packet: 20 IPv4 + 8 UDP = 28 (48 over IPv6); port 8285;
///          device flannel0; flanneld's udp backend writes no BackendType or BackendData.
///   vxlan: 8 VXLAN + 14 Ethernet in front: 20 + 8 + 22 = 50 (70 over IPv6); port 8472 (Linux's
///          default, as flannel.1); device flannel.1; the lease carries "vxlan" and a VtepMAC; IPv6
///          travels over the IPv6 underlay only, as kernel flannel-v6.1.
/// </summary>
internal sealed record BackendProfile(BackendKind Kind, string Name, int DefaultPort, string DefaultDevice, int PayloadPrefix,
    string? LeaseBackendType, bool CarriesIpv6OverIpv4)
{
    public static readonly BackendProfile Udp = new(BackendKind.Udp, "udp", 8285, "flannel0", PayloadPrefix: 0,
        LeaseBackendType: null, CarriesIpv6OverIpv4: true);

    public static readonly BackendProfile Vxlan = new(BackendKind.Vxlan, "vxlan", 8472, "flannel.1", Overheads.VxlanPayloadPrefix,
        LeaseBackendType: "vxlan", CarriesIpv6OverIpv4: false);

    public static BackendProfile Of(BackendKind kind) => kind == BackendKind.Vxlan ? Vxlan : Udp;

    /// <summary>The lease names our VTEP MAC (the VtepMAC of BackendData, BackendV6Data on IPv6).</summary>
    public bool NeedsVtepMac => Kind == BackendKind.Vxlan;

    /// <summary>Bytes on the wire in front of an inner packet: outer IP header + 8 UDP + <see cref="PayloadPrefix"/>.</summary>
    public int Overhead(bool ipv6Underlay) => (ipv6Underlay ? Overheads.Ipv6Header : Overheads.Ipv4Header) + Overheads.UdpHeader + PayloadPrefix;

    /// <summary>The largest inner packet over an underlay of <paramref name="underlayMtu"/> (the device MTU).</summary>
    public int InnerMtu(int underlayMtu, bool ipv6Underlay) => underlayMtu - Overhead(ipv6Underlay);
}
