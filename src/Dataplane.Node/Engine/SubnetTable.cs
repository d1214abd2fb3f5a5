using Dataplane.Encap;

namespace Dataplane.Engine;

/// <summary>
/// The immutable routing snapshot the packet loops read: which peer owns the subnet of a
/// destination, and which public IPs are peers. flannel gives every node a subnet of one length
/// inside one network, so a destination's subnet is an index: <c>(dst - network) &gt;&gt; (32 - SubnetLen)</c>.
/// The lookup is one range check, one shift and one array load, whatever the number of peers.
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
    private readonly int _shift;

    public SubnetTable(Ipv4Prefix network, int subnetLength, Ipv4Prefix ourSubnet, IEnumerable<Peer> peers)
    {
        int bits = subnetLength - network.Length;
        if (bits is < 0 or > MaxIndexBits)
        {
            throw new ArgumentException($"SubnetLen {subnetLength} does not fit Network {network} (at most {MaxIndexBits} bits of subnets)");
        }
        Network = network;
        SubnetLength = subnetLength;
        OurSubnet = ourSubnet;
        _shift = 32 - subnetLength;
        _bySubnet = new Peer?[1 << bits];
        int expected = peers.TryGetNonEnumeratedCount(out int n) ? n : 16;
        var list = new List<Peer>(expected);
        var byIp = new Dictionary<uint, Peer>(expected);
        foreach (Peer p in peers)
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
            list.Add(p);
            byIp[p.PublicIp] = p;
        }
        Peers = list;
        _byPublicIp = byIp;
    }

    public Ipv4Prefix Network { get; }
    public int SubnetLength { get; }
    public Ipv4Prefix OurSubnet { get; }
    public IReadOnlyList<Peer> Peers { get; }

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

    /// <summary>The peer whose public IP is <paramref name="publicIp"/>, or null.</summary>
    public Peer? PeerAt(uint publicIp) => _byPublicIp.GetValueOrDefault(publicIp);

    /// <summary>How many subnets the network holds: the index range of <see cref="SlotOf"/>.</summary>
    public int SlotCount => _bySubnet.Length;

    /// <summary>The index of a subnet of the network (stable across tables of the same network).</summary>
    public int SlotOf(Ipv4Prefix subnet) => (int)((subnet.Address - Network.Address) >> _shift);

    /// <summary>The base address of the /SubnetLen around <paramref name="address"/>.</summary>
    public uint SubnetBase(uint address) => address & (uint.MaxValue << _shift);
}
