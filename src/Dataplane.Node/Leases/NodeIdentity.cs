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

    /// <summary>
    /// Whether <paramref name="snapshot"/> still holds our lease as we started with it: a lease with our
    /// address and our subnet. Another lease under our address (a stale one of ours, on another
    /// subnet) does not make it vanish: that would rewrite ours on every read.
    /// </summary>
    public bool StillHolds(ClusterSnapshot snapshot) => Ipv6Only
        ? snapshot.Leases.Any(l => l.PublicIpv6 == Lease.PublicIpv6 && l.Ipv6Subnet == Lease.Ipv6Subnet)
        : snapshot.Leases.Any(l => l.PublicIp == Lease.PublicIp && l.Subnet == Subnet);

    /// <summary>The device's IPv6 address, as flannel-v6.1's: the IPv6 subnet's base address, /128.</summary>
    public UInt128? DeviceAddress6 => Ipv6Subnet?.Address;

    /// <summary>Our VTEP MAC for IPv6 frames: our lease's BackendV6Data.VtepMAC, else the IPv4 one.</summary>
    public MacAddress VtepMacV6 => Lease.VtepMacV6 ?? VtepMac;

    /// <summary>
    /// Builds the subnet table from a snapshot: every lease <paramref name="check"/> accepts is a peer
    /// (the others are in <paramref name="rejected"/>, each with its reason). The IPv6 half of a
    /// lease that cannot be used (vxlan without PublicIPv6 or BackendV6Data.VtepMAC) is left out
    /// with a line in <paramref name="notes"/>; its IPv4 half still is a peer.
    /// </summary>
    public SubnetTable BuildTable(ClusterSnapshot snapshot, LeaseCheck check, List<string> notes, out List<RejectedLease> rejected)
    {
        (List<LeaseRecord> accepted, rejected) = check.Split(snapshot);
        var peers = new List<Peer>(accepted.Count);
        Ipv6Prefix? ours6 = Ipv6Subnet;
        foreach (LeaseRecord l in accepted)
        {
            if (Ipv6Only)
            {
                peers.Add(Ipv6OnlyPeer(l));
                continue;
            }
            var peer = new Peer(l.Subnet, new UdpEndpoint(l.PublicIp, (ushort)Port), l.VtepMac ?? default);
            if (ours6 is not null && l.Ipv6Subnet is Ipv6Prefix theirs6)
            {
                peer = WithIpv6(peer, l, theirs6, notes);
            }
            peers.Add(peer);
        }
        (Ipv6Prefix, int, Ipv6Prefix)? ipv6 = ours6 is Ipv6Prefix o6 && Config.Ipv6Network is Ipv6Prefix n6 ? (n6, Config.Ipv6SubnetLength, o6) : null;
        return new SubnetTable(Config.Network, Config.SubnetLength, Lease.Subnet, peers, ipv6);
    }

    /// <summary>A peer of an IPv6-only network (checked complete): its IPv6 half alone, its empty IPv4 half kept as flannel keeps it.</summary>
    private Peer Ipv6OnlyPeer(LeaseRecord l)
    {
        MacAddress? mac6 = l.VtepMacV6 ?? l.VtepMac;
        var endpoint = UdpEndpoint.Ipv6(l.PublicIpv6!.Value, (ushort)Port);
        return new Peer(l.Subnet, endpoint, mac6 ?? default) { Ipv6Subnet = l.Ipv6Subnet, Endpoint6 = endpoint, VtepMacV6 = mac6 ?? default };
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
