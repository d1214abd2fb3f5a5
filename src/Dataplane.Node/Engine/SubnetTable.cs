using Dataplane.Encap;
using Dataplane.TunTap;

namespace Dataplane.Engine;

/// <summary>
/// The immutable routing snapshot the packet loops read: which peer owns the subnet of a
/// destination, and which public IPs are peers. flannel gives every node a subnet of one length
/// inside one network, so a destination's subnet is an index: <c>(dst - network) &gt;&gt; (32 - SubnetLen)</c>.
/// The lookup is one range check, one shift and one array load, whatever the number of peers.
///
/// A dual-stack cluster's IPv6 subnets are indexed the same way (<see cref="Lookup6"/>:
/// <c>(dst - Ipv6Network) &gt;&gt; (128 - IPv6SubnetLen)</c>, one range check, one shift, one load).
///
/// The control plane builds a new table and publishes it with <c>Volatile.Write</c>; a loop reads
/// the reference once per batch. Nothing here is ever mutated after construction.
/// </summary>
internal sealed class SubnetTable
{
    /// <summary>At most 2^22 subnet slots (a /8 cut into /30s): 32 MiB of references.</summary>
    public const int MaxIndexBits = 22;

    private readonly Peer?[] _bySubnet;
    private readonly Dictionary<uint, Peer> _byPublicIp; // filled here, then only read
    private readonly Dictionary<UInt128, Peer>? _byPublicIpv6; // IPv6 underlay addresses (dual-stack only)
    private readonly int _shift;
    // IPv6: without an IPv6 network, one empty slot that only :: reaches (no branch in Lookup6).
    private readonly Peer?[] _bySubnet6 = [null];
    private readonly UInt128 _network6, _span6;
    private readonly int _shift6 = 127;

    /// <param name="ipv6">A dual-stack node's IPv6 network, IPv6SubnetLen and its own IPv6 subnet; null: IPv4 only.</param>
    /// <remarks>
    /// An IPv6-only network has SubnetLen 0 (flannel's empty IPv4 network): no IPv4 slot is filled,
    /// <see cref="Lookup"/> finds nothing, and peers are indexed, counted and found by their IPv6 half.
    /// </remarks>
    public SubnetTable(Ipv4Prefix network, int subnetLength, Ipv4Prefix ourSubnet, IEnumerable<Peer> peers,
        (Ipv6Prefix Network, int SubnetLength, Ipv6Prefix OurSubnet)? ipv6 = null)
    {
        Ipv4 = subnetLength != 0;
        int bits = subnetLength - network.Length;
        if (Ipv4 && bits is < 0 or > MaxIndexBits)
        {
            throw new ArgumentException($"SubnetLen {subnetLength} does not fit Network {network} (at most {MaxIndexBits} bits of subnets)");
        }
        Network = Ipv4 ? network : default;
        SubnetLength = subnetLength;
        OurSubnet = ourSubnet;
        // Without IPv4: two empty slots that any address reaches (offset >> 31), so Lookup needs no branch.
        _shift = Ipv4 ? 32 - subnetLength : 31;
        _bySubnet = new Peer?[Ipv4 ? 1 << bits : 2];
        int expected = peers.TryGetNonEnumeratedCount(out int n) ? n : 16;
        var list = new List<Peer>(expected);
        var byIp = new Dictionary<uint, Peer>(expected);
        Dictionary<UInt128, Peer>? byIpv6 = ipv6 is null ? null : [];
        if (ipv6 is { } v6Config)
        {
            (Ipv6Prefix network6, int subnetLength6, Ipv6Prefix ourSubnet6) = v6Config;
            int bits6 = subnetLength6 - network6.Length;
            if (bits6 is < 0 or > MaxIndexBits)
            {
                throw new ArgumentException($"IPv6SubnetLen {subnetLength6} does not fit IPv6Network {network6} (at most {MaxIndexBits} bits of subnets)");
            }
            Ipv6Network = network6;
            Ipv6SubnetLength = subnetLength6;
            OurIpv6Subnet = ourSubnet6;
            _network6 = network6.Address;
            _span6 = ~network6.Mask;
            _shift6 = 128 - subnetLength6;
            _bySubnet6 = new Peer?[1 << bits6];
        }
        foreach (Peer p in peers)
        {
            if (!Ipv4 && p.Ipv6Subnet is null)
            {
                throw new ArgumentException($"peer {p.Describe()} has no IPv6 subnet on an IPv6-only network");
            }
            if (Ipv4)
            {
                if (p.Subnet.Length != subnetLength || !network.Contains(p.Subnet))
                {
                    throw new ArgumentException($"subnet {p.Subnet} is not a /{subnetLength} of {network}");
                }
                ref Peer? slot = ref _bySubnet[(int)((p.Subnet.Address - network.Address) >> _shift)];
                if (slot is not null || p.Subnet == ourSubnet)
                {
                    throw new ArgumentException($"subnet {p.Subnet} is leased twice");
                }
                slot = p;
                byIp[p.PublicIp] = p;
            }
            list.Add(p);
            if (p.Ipv6Subnet is Ipv6Prefix v6)
            {
                if (Ipv6Network is not Ipv6Prefix n6 || v6.Length != Ipv6SubnetLength || !n6.Contains(v6))
                {
                    throw new ArgumentException($"IPv6 subnet {v6} is not a /{Ipv6SubnetLength} of {Ipv6Network}");
                }
                ref Peer? slot6 = ref _bySubnet6[(int)((v6.Address - _network6) >> _shift6)];
                if (slot6 is not null || v6 == OurIpv6Subnet)
                {
                    throw new ArgumentException($"IPv6 subnet {v6} is leased twice");
                }
                slot6 = p;
                if (p.Endpoint6.IsIpv6)
                {
                    byIpv6![p.Endpoint6.Ipv6Address] = p;
                }
            }
        }
        Peers = list;
        _byPublicIp = byIp;
        _byPublicIpv6 = byIpv6;
    }

    public Ipv4Prefix Network { get; }
    public int SubnetLength { get; }
    public Ipv4Prefix OurSubnet { get; }
    public IReadOnlyList<Peer> Peers { get; }
    /// <summary>False on an IPv6-only network (no IPv4 half at all).</summary>
    public bool Ipv4 { get; }
    /// <summary>The cluster's IPv6 network when this node forwards IPv6, its IPv6SubnetLen and our IPv6 subnet.</summary>
    public Ipv6Prefix? Ipv6Network { get; }
    public int Ipv6SubnetLength { get; }
    public Ipv6Prefix? OurIpv6Subnet { get; }

    /// <summary>The peer owning <paramref name="destination"/>'s subnet, or null.</summary>
    public Peer? Lookup(uint destination)
    {
        uint offset = destination - Network.Address;
        if (offset > ~Network.Mask)
        {
            return null;
        }
        return _bySubnet[(int)(offset >> _shift)];
    }

    /// <summary>The peer owning <paramref name="destination"/>'s IPv6 subnet, or null.</summary>
    public Peer? Lookup6(UInt128 destination)
    {
        UInt128 offset = destination - _network6;
        if (offset > _span6)
        {
            return null;
        }
        return _bySubnet6[(int)(offset >> _shift6)];
    }

    /// <summary>The peer one of whose public addresses (IPv4 or IPv6) is <paramref name="from"/>'s, or null.</summary>
    public Peer? PeerAt(UdpEndpoint from) =>
        from.IsIpv6 ? _byPublicIpv6?.GetValueOrDefault(from.Ipv6Address) : _byPublicIp.GetValueOrDefault(from.Address);

    /// <summary>The peer whose public IPv4 address is <paramref name="publicIp"/>, or null.</summary>
    public Peer? PeerAt(uint publicIp) => _byPublicIp.GetValueOrDefault(publicIp);

    /// <summary>How many subnets the network holds: the index range of <see cref="PeerSlot"/>.</summary>
    public int SlotCount => Ipv4 ? _bySubnet.Length : _bySubnet6.Length;

    /// <summary>
    /// A peer's counter slot, stable across tables of the same network: its IPv4 subnet's index, or on
    /// an IPv6-only network its IPv6 subnet's.
    /// </summary>
    public int PeerSlot(Peer peer) =>
        Ipv4 ? SlotOf(peer.Subnet) : (int)((peer.Ipv6Subnet.GetValueOrDefault().Address - _network6) >> _shift6);

    /// <summary>The index of a subnet of the network (stable across tables of the same network).</summary>
    public int SlotOf(Ipv4Prefix subnet) => (int)((subnet.Address - Network.Address) >> _shift);

    /// <summary>The base address of the /SubnetLen around <paramref name="address"/>.</summary>
    public uint SubnetBase(uint address) => address & (uint.MaxValue << _shift);
}
