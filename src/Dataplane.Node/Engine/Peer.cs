using Dataplane.Encap;
using Dataplane.TunTap;

namespace Dataplane.Engine;

/// <summary>
/// Another node: the subnet it owns, where its UDP endpoint is, and (vxlan) its VTEP MAC. A
/// dual-stack peer also owns an IPv6 subnet (<see cref="Ipv6Subnet"/>); IPv6 inner packets go to
/// <see cref="Endpoint6"/> (vxlan: its PublicIPv6, as to kernel flannel-v6.1; udp: its PublicIPv6,
/// or its IPv4 endpoint when it has none) with <see cref="VtepMacV6"/> as the inner destination MAC.
/// </summary>
internal sealed record Peer(Ipv4Prefix Subnet, UdpEndpoint Endpoint, MacAddress VtepMac)
{
    public uint PublicIp => Endpoint.Address;

    /// <summary>The peer's IPv6 subnet, when it and this node both forward IPv6.</summary>
    public Ipv6Prefix? Ipv6Subnet { get; init; }

    /// <summary>Where IPv6 inner packets to this peer go (and come from); meaningful only with <see cref="Ipv6Subnet"/>.</summary>
    public UdpEndpoint Endpoint6 { get; init; }

    /// <summary>The peer's flannel-v6.1 MAC (vxlan): the inner destination of IPv6 frames.</summary>
    public MacAddress VtepMacV6 { get; init; }

    /// <summary>"10.244.2.0/24 via 192.0.2.2" or, dual-stack, "10.244.2.0/24 and 2001:db8:244:2::/64 via 192.0.2.2 and [2001:db8:2::2]".</summary>
    /// (An IPv6-only network's peer, whose IPv4 half is the empty 0.0.0.0/0: "2001:db8:244:2::/64 via 2001:db8:2::2".)
    public string Describe() => Ipv6Subnet is Ipv6Prefix v6
        ? Subnet.Length == 0 ? $"{v6} via {Endpoint6.AddressText}"
        : $"{Subnet} and {v6} via {Endpoint.AddressText}" + (Endpoint6.IsIpv6 ? $" and {Endpoint6.AddressText}" : "")
        : $"{Subnet} via {Endpoint.AddressText}";
}
