using Dataplane.Encap;
using Dataplane.Engine;
using Dataplane.TunTap;

namespace Dataplane.Leases;

/// <summary>
/// Who this node is in the cluster, fixed at start: our lease, and the backend, port and VNI
/// in force (the config's, or the command line's overrides). On a dual-stack network our IPv6 half
/// too: the lease's IPv6 subnet and our IPv6 underlay address (<see cref="PublicIpv6"/>).
/// </summary>
internal sealed record NodeIdentity(LeaseRecord Lease, NetworkConfig Config, BackendKind Backend, int Port, uint Vni)
{
    public Ipv4Prefix Subnet => Lease.Subnet;

    /// <summary>What our backend means: name, overheads, what its lease carries.</summary>
    public BackendProfile Profile => BackendProfile.Of(Backend);

    /// <summary>The device address flannel gives: the subnet's base address, /32 (10.244.1.0).</summary>
    public uint DeviceAddress => Lease.Subnet.Address;

    /// <summary>Our VTEP MAC (vxlan), from our own lease.</summary>
    public MacAddress VtepMac => Lease.VtepMac ?? default;

    /// <summary>
    /// Our IPv6 underlay address, where IPv6 datagrams leave from and arrive (null: none; the udp
    /// backend then carries IPv6 inner packets over IPv4).
    /// </summary>
    public UInt128? PublicIpv6 { get; init; }

    /// <summary>
    /// Our IPv6 subnet when this node forwards IPv6: the network config enables it, our lease has
    /// one, and there is an underlay to carry it (vxlan needs the IPv6 one, as flannel-v6.1).
    /// </summary>
    public Ipv6Prefix? Ipv6Subnet => Config.EnableIpv6 && Lease.Ipv6Subnet is Ipv6Prefix v6
        && (PublicIpv6 is not null || Profile.CarriesIpv6OverIpv4 && Config.EnableIpv4) ? v6 : null;

    /// <summary>An IPv6-only network: no IPv4 subnet, address, route or socket; everything over IPv6.</summary>
    public bool Ipv6Only => !Config.EnableIpv4;

    /// <summary>
    /// What this node forwards, decided here once: IPv6-only as the network is; dual-stack when it
    /// has an IPv6 subnet it can carry (<see cref="Ipv6Subnet"/>); else IPv4 only.
    /// </summary>
    public IpFamilies Families => Ipv6Only ? IpFamilies.Ipv6Only : Ipv6Subnet is not null ? IpFamilies.DualStack : IpFamilies.Ipv4;

    public bool ForwardsIpv4 => Families != IpFamilies.Ipv6Only;
    public bool ForwardsIpv6 => Families != IpFamilies.Ipv4;

    /// <summary>Whether <paramref name="snapshot"/> still holds our lease as we started with it (same subnets under our address).</summary>
    public bool StillHolds(ClusterSnapshot snapshot) => Ipv6Only
        ? snapshot.LeaseOf6(Lease.PublicIpv6.GetValueOrDefault())?.Ipv6Subnet == Lease.Ipv6Subnet
        : snapshot.LeaseOf(Lease.PublicIp)?.Subnet == Subnet;

    /// <summary>Whether <paramref name="l"/> is our own lease (by public address, or by subnet: a stale lease of ours from another address).</summary>
    private bool IsOurs(LeaseRecord l) => Ipv6Only
        ? l.PublicIpv6 == Lease.PublicIpv6 || l.Ipv6Subnet == Lease.Ipv6Subnet
        : l.PublicIp == Lease.PublicIp || l.Subnet == Lease.Subnet;

    /// <summary>The device's IPv6 address, as flannel-v6.1's: the IPv6 subnet's base address, /128.</summary>
    public UInt128? DeviceAddress6 => Ipv6Subnet?.Address;

    /// <summary>Our VTEP MAC for IPv6 frames: our lease's BackendV6Data.VtepMAC, else the IPv4 one.</summary>
    public MacAddress VtepMacV6 => Lease.VtepMacV6 ?? VtepMac;

    /// <summary>
    /// Builds the subnet table from a snapshot: every lease but ours (by public IP, or by subnet: a
    /// stale lease of our subnet from another address) is a peer. Leases that cannot
    /// be used with this backend (vxlan without a VtepMAC) are left out and reported in
    /// <paramref name="skipped"/>; so is the IPv6 half of a lease that cannot be used (vxlan
    /// without PublicIPv6 or BackendV6Data.VtepMAC), whose IPv4 half still is.
    /// </summary>
    public SubnetTable BuildTable(ClusterSnapshot snapshot, List<string> skipped)
    {
        var peers = new List<Peer>();
        skipped.AddRange(snapshot.Unreadable);
        Ipv6Prefix? ours6 = Ipv6Subnet;
        foreach (LeaseRecord l in snapshot.Leases)
        {
            if (IsOurs(l))
            {
                continue;
            }
            if (Ipv6Only)
            {
                if (Ipv6OnlyPeer(l, skipped) is Peer only)
                {
                    peers.Add(only);
                }
                continue;
            }
            if (Profile.NeedsVtepMac && l.VtepMac is null)
            {
                skipped.Add($"{l.Subnet} via {l.PublicIpText}: no BackendData.VtepMAC for vxlan");
                continue;
            }
            var endpoint = new UdpEndpoint(l.PublicIp, (ushort)Port);
            var peer = new Peer(l.Subnet, endpoint, l.VtepMac ?? default);
            if (ours6 is not null && l.Ipv6Subnet is Ipv6Prefix theirs6)
            {
                peer = WithIpv6(peer, l, theirs6, skipped);
            }
            peers.Add(peer);
        }
        (Ipv6Prefix, int, Ipv6Prefix)? ipv6 = ours6 is Ipv6Prefix o6 && Config.Ipv6Network is Ipv6Prefix n6 ? (n6, Config.Ipv6SubnetLength, o6) : null;
        return new SubnetTable(Config.Network, Config.SubnetLength, Lease.Subnet, peers, ipv6);
    }

    /// <summary>A peer of an IPv6-only network: its IPv6 half alone (its empty IPv4 half kept as flannel keeps it), or null and why not.</summary>
    private Peer? Ipv6OnlyPeer(LeaseRecord l, List<string> skipped)
    {
        string name = l.Ipv6Subnet?.ToString() ?? l.Key;
        if (l.Ipv6Subnet is not Ipv6Prefix subnet6 || l.PublicIpv6 is not UInt128 v6)
        {
            skipped.Add($"{name}: no {(l.Ipv6Subnet is null ? "IPv6 subnet" : "PublicIPv6")} on an IPv6-only network");
            return null;
        }
        MacAddress? mac6 = l.VtepMacV6 ?? l.VtepMac;
        if (Profile.NeedsVtepMac && mac6 is null)
        {
            skipped.Add($"{name} via {Ipv6Prefix.Format(v6)}: no BackendV6Data.VtepMAC for vxlan");
            return null;
        }
        var endpoint = UdpEndpoint.Ipv6(v6, (ushort)Port);
        return new Peer(l.Subnet, endpoint, mac6 ?? default) { Ipv6Subnet = subnet6, Endpoint6 = endpoint, VtepMacV6 = mac6 ?? default };
    }

    /// <summary>The peer with its IPv6 half, or as it is (and a line in <paramref name="skipped"/>) when that half cannot be reached.</summary>
    private Peer WithIpv6(Peer peer, LeaseRecord l, Ipv6Prefix subnet6, List<string> skipped)
    {
        if (Profile.NeedsVtepMac)
        {
            // As kernel flannel-v6.1: IPv6 inner packets over the IPv6 underlay, to the v6 VtepMAC.
            if (l.PublicIpv6 is not UInt128 v6 || l.VtepMacV6 is not MacAddress mac6)
            {
                skipped.Add($"{subnet6} of {l.Subnet} via {l.PublicIpText}: no {(l.PublicIpv6 is null ? "PublicIPv6" : "BackendV6Data.VtepMAC")} for IPv6 over vxlan (its IPv4 half is used)");
                return peer;
            }
            return peer with { Ipv6Subnet = subnet6, Endpoint6 = UdpEndpoint.Ipv6(v6, (ushort)Port), VtepMacV6 = mac6 };
        }
        // udp (ours alone: flannel's udp backend is IPv4-only): over IPv6 when both ends have it, else over IPv4.
        UdpEndpoint to = l.PublicIpv6 is UInt128 a && PublicIpv6 is not null ? UdpEndpoint.Ipv6(a, (ushort)Port) : peer.Endpoint;
        return peer with { Ipv6Subnet = subnet6, Endpoint6 = to };
    }
}
