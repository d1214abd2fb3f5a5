using Dataplane.Engine;

namespace Dataplane.Leases;

/// <summary>What a node asks of its lease source: a lease for this public IP, for this backend (vxlan leases carry a VTEP MAC and the VNI).</summary>
internal sealed record LeaseRequest(uint PublicIp, BackendKind Backend, uint Vni)
{
    /// <summary>
    /// A dual-stack network: the node can forward IPv6 and wants an IPv6 subnet too (sources that
    /// allocate take one), with this IPv6 underlay address (null: none; the udp backend then
    /// carries IPv6 over IPv4).
    /// </summary>
    public bool WantsIpv6 { get; init; }
    public UInt128? PublicIpv6 { get; init; }
}
