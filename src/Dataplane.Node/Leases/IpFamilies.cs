namespace Dataplane.Leases;

/// <summary>
/// The address families a network has (<see cref="NetworkConfig.Families"/>: flannel's EnableIPv4 and
/// EnableIPv6) and those a node forwards (<see cref="NodeIdentity.Families"/>, decided once at start:
/// a dual-stack network's node forwards IPv4 only when it has no way to carry IPv6).
/// </summary>
internal enum IpFamilies
{
    /// <summary>IPv4 only: one IPv4 socket per queue, no IPv6 address or route.</summary>
    Ipv4,
    /// <summary>Both: an IPv4 subnet and an IPv6 one; IPv6 over the IPv6 underlay (or with udp, over IPv4 when there is none).</summary>
    DualStack,
    /// <summary>IPv6 only (EnableIPv4 false): no IPv4 subnet, address, route or socket.</summary>
    Ipv6Only,
}
