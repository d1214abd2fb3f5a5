using Dataplane.Encap;
using Dataplane.Engine;

namespace Dataplane.Leases;

/// <summary>Why a lease in the store is not a peer; its label is the <c>reason</c> of <c>dataplane_leases_rejected</c>.</summary>
internal enum LeaseProblem
{
    /// <summary>Its JSON, annotations or backend data do not parse.</summary>
    Unreadable,
    /// <summary>A half it needs is missing (an IPv6-only network's lease without an IPv6 subnet or PublicIPv6).</summary>
    Incomplete,
    /// <summary>Its subnet is not a SubnetLen subnet inside Network (or IPv6SubnetLen inside IPv6Network).</summary>
    SubnetOutsideNetwork,
    /// <summary>Another address claims our subnet.</summary>
    OverlapsOurSubnet,
    /// <summary>Another accepted lease has its subnet (the lease whose name sorts first wins, on every node).</summary>
    OverlapsLease,
    /// <summary>Its subnet covers an address of this host (the underlay), outside our own subnet.</summary>
    CoversLocalAddress,
    /// <summary>Its PublicIP is an address of this host, on another subnet than ours: our stale lease.</summary>
    OurStaleLease,
    /// <summary>Its PublicIP lies inside the overlay network.</summary>
    PublicIpInOverlay,
    /// <summary>Its PublicIP is not a unicast address a datagram can go to.</summary>
    PublicIpUnusable,
    /// <summary>It names another backend than ours.</summary>
    BackendMismatch,
    /// <summary>Its vxlan VNI is not ours.</summary>
    VniMismatch,
    /// <summary>vxlan without a VtepMAC, or an all-zero one.</summary>
    VtepMacInvalid,
}

/// <summary>A lease that is not a peer, by name (etcd: its key; Kubernetes: its node), with the reason in one line.</summary>
internal sealed record RejectedLease(string Name, LeaseProblem Problem, string Detail)
{
    public string Reason => LeaseCheck.Label(Problem);
}

/// <summary>
/// Every lease of a snapshot checked on its own, the same way for the file, etcd and Kubernetes, so
/// one bad lease is refused (with its reason) and every other one still applies. Order-free: the
/// leases are taken in the order of their names, so where two claim one subnet the same one wins on
/// every node. Our own lease (our public IP with our subnet) is neither a peer nor refused.
/// </summary>
internal sealed class LeaseCheck(NodeIdentity node, IReadOnlySet<uint> localIpv4, IReadOnlySet<UInt128> localIpv6)
{
    private readonly NetworkConfig _config = node.Config;
    private readonly string _backend = node.Profile.Name;
    // The network config's backend: a node told --backend otherwise (a lab switching backends over one file) still takes its leases.
    private readonly string _configBackend = BackendProfile.Of(node.Config.Backend).Name;

    public static string Label(LeaseProblem p) => p switch
    {
        LeaseProblem.Unreadable => "unreadable",
        LeaseProblem.Incomplete => "incomplete",
        LeaseProblem.SubnetOutsideNetwork => "subnet_outside_network",
        LeaseProblem.OverlapsOurSubnet => "overlaps_our_subnet",
        LeaseProblem.OverlapsLease => "overlaps_lease",
        LeaseProblem.CoversLocalAddress => "covers_local_address",
        LeaseProblem.OurStaleLease => "our_stale_lease",
        LeaseProblem.PublicIpInOverlay => "public_ip_in_overlay",
        LeaseProblem.PublicIpUnusable => "public_ip_unusable",
        LeaseProblem.BackendMismatch => "backend_mismatch",
        LeaseProblem.VniMismatch => "vni_mismatch",
        LeaseProblem.VtepMacInvalid => "vtep_mac_invalid",
        _ => p.ToString(),
    };

    /// <summary>The leases that may be peers, in name order, and the refused ones (the unreadable ones of the snapshot first).</summary>
    public (List<LeaseRecord> Accepted, List<RejectedLease> Rejected) Split(ClusterSnapshot snapshot)
    {
        var accepted = new List<LeaseRecord>(snapshot.Leases.Count);
        var rejected = new List<RejectedLease>();
        rejected.AddRange(snapshot.Unreadable.Select(u => new RejectedLease(u.Name, LeaseProblem.Unreadable, u.Message)));
        var taken = new Dictionary<Ipv4Prefix, string>();
        var taken6 = new Dictionary<Ipv6Prefix, string>();
        foreach (LeaseRecord l in snapshot.Leases.OrderBy(l => l.Name, StringComparer.Ordinal))
        {
            if (IsOurs(l))
            {
                continue;
            }
            if ((Problem(l) ?? Overlap(l, taken, taken6)) is { } refused)
            {
                rejected.Add(new RejectedLease(l.Name, refused.Problem, $"{l.Name}: {refused.Detail}"));
                continue;
            }
            if (!node.Ipv6Only)
            {
                taken[l.Subnet] = l.Name;
            }
            if (Uses6(l) && l.Ipv6Subnet is Ipv6Prefix s6)
            {
                taken6[s6] = l.Name;
            }
            accepted.Add(l);
        }
        return (accepted, rejected);
    }

    /// <summary>Our lease as we hold it: our address with our subnet.</summary>
    private bool IsOurs(LeaseRecord l) => node.Ipv6Only
        ? l.PublicIpv6 == node.Lease.PublicIpv6 && l.Ipv6Subnet == node.Lease.Ipv6Subnet
        : l.PublicIp == node.Lease.PublicIp && l.Subnet == node.Subnet;

    /// <summary>Whether the lease's IPv6 half matters here: this node forwards IPv6 (or the network is IPv6 only).</summary>
    private bool Uses6(LeaseRecord l) => l.Ipv6Subnet is not null && (node.Ipv6Only || node.Ipv6Subnet is not null);

    private (LeaseProblem Problem, string Detail)? Problem(LeaseRecord l) =>
        (node.Ipv6Only ? Incomplete6(l) : Ipv4Half(l)) ?? (Uses6(l) ? Ipv6Half(l) : null) ?? Backend(l);

    private (LeaseProblem, string)? Ipv4Half(LeaseRecord l)
    {
        Ipv4Prefix network = _config.Network;
        if (l.Subnet.Length != _config.SubnetLength || !network.Contains(l.Subnet))
        {
            return (LeaseProblem.SubnetOutsideNetwork, $"subnet {l.Subnet} is not a /{_config.SubnetLength} of the Network {network}");
        }
        if (l.Subnet == node.Subnet)
        {
            return (LeaseProblem.OverlapsOurSubnet, $"{l.PublicIpText} claims our subnet {l.Subnet}");
        }
        uint ip = l.PublicIp;
        if (ip == node.Lease.PublicIp || localIpv4.Contains(ip))
        {
            return (LeaseProblem.OurStaleLease, $"its PublicIP {l.PublicIpText} is an address of this node, whose subnet is {node.Subnet}: a stale lease of ours");
        }
        if ((ip >> 24) is 0 or 127 || (ip >> 28) >= 14)
        {
            return (LeaseProblem.PublicIpUnusable, $"PublicIP {l.PublicIpText} is not a unicast address (0/8, loopback, multicast or reserved)");
        }
        if (network.Contains(ip))
        {
            return (LeaseProblem.PublicIpInOverlay, $"PublicIP {l.PublicIpText} lies inside the overlay {network}");
        }
        if (localIpv4.FirstOrDefault(a => l.Subnet.Contains(a) && !node.Subnet.Contains(a)) is uint local and not 0)
        {
            return (LeaseProblem.CoversLocalAddress, $"subnet {l.Subnet} covers {Ipv4Prefix.Format(local)}, an address of this node");
        }
        return null;
    }

    private (LeaseProblem, string)? Incomplete6(LeaseRecord l) =>
        l.Ipv6Subnet is null || l.PublicIpv6 is null
            ? (LeaseProblem.Incomplete, $"no {(l.Ipv6Subnet is null ? "IPv6 subnet" : "PublicIPv6")} on an IPv6-only network")
            : null;

    private (LeaseProblem, string)? Ipv6Half(LeaseRecord l)
    {
        Ipv6Prefix subnet6 = l.Ipv6Subnet!.Value;
        if (_config.Ipv6Network is not Ipv6Prefix network6 || subnet6.Length != _config.Ipv6SubnetLength || !network6.Contains(subnet6))
        {
            return (LeaseProblem.SubnetOutsideNetwork, $"IPv6 subnet {subnet6} is not a /{_config.Ipv6SubnetLength} of the IPv6Network {_config.Ipv6Network}");
        }
        if (subnet6 == node.Lease.Ipv6Subnet)
        {
            return (LeaseProblem.OverlapsOurSubnet, $"it claims our IPv6 subnet {subnet6}");
        }
        if (l.PublicIpv6 is not UInt128 ip6)
        {
            return null; // its IPv6 half is carried over IPv4 (udp), or left out with a note (vxlan)
        }
        string text = Ipv6Prefix.Format(ip6);
        if (ip6 == node.PublicIpv6 || localIpv6.Contains(ip6))
        {
            return (LeaseProblem.OurStaleLease, $"its PublicIPv6 {text} is an address of this node: a stale lease of ours");
        }
        if (ip6 == UInt128.One)
        {
            return (LeaseProblem.PublicIpUnusable, $"PublicIPv6 {text} is the loopback address");
        }
        if (network6.Contains(ip6))
        {
            return (LeaseProblem.PublicIpInOverlay, $"PublicIPv6 {text} lies inside the overlay {network6}");
        }
        return null;
    }

    private (LeaseProblem, string)? Backend(LeaseRecord l)
    {
        if (l.BackendType is { Length: > 0 } type && !string.Equals(type, _backend, StringComparison.OrdinalIgnoreCase)
            && !string.Equals(type, _configBackend, StringComparison.OrdinalIgnoreCase))
        {
            return (LeaseProblem.BackendMismatch, $"backend {type}, ours is {_backend}");
        }
        if (!node.Profile.NeedsVtepMac)
        {
            return null;
        }
        if (l.Vni is uint vni && vni != node.Vni)
        {
            return (LeaseProblem.VniMismatch, $"VNI {vni}, ours is {node.Vni}");
        }
        MacAddress? mac = node.Ipv6Only ? l.VtepMacV6 ?? l.VtepMac : l.VtepMac;
        return mac is null ? (LeaseProblem.VtepMacInvalid, $"no {(node.Ipv6Only ? "BackendV6Data" : "BackendData")}.VtepMAC for vxlan")
            : mac.Value.Value == 0 ? (LeaseProblem.VtepMacInvalid, $"VtepMAC {mac} is all zeros")
            : null;
    }

    private (LeaseProblem, string)? Overlap(LeaseRecord l, Dictionary<Ipv4Prefix, string> taken, Dictionary<Ipv6Prefix, string> taken6) =>
        !node.Ipv6Only && taken.TryGetValue(l.Subnet, out string? first) ? (LeaseProblem.OverlapsLease, $"subnet {l.Subnet} is leased by {first} too")
        : Uses6(l) && l.Ipv6Subnet is Ipv6Prefix s6 && taken6.TryGetValue(s6, out string? first6) ? (LeaseProblem.OverlapsLease, $"IPv6 subnet {s6} is leased by {first6} too")
        : null;
}
