using System.Text;
using System.Text.Json;
using Dataplane.Engine;
using Dataplane.Leases;
using Dataplane.TestSupport;
using Serilog;

namespace Dataplane.Tests;

/// <summary>
/// One bad lease is refused on its own, with its reason, and every other lease still becomes a
/// peer: each kind of bad lease beside good ones, the same winner of two leases of one subnet in
/// any order, each refusal said once, and a random snapshot always building a table that holds
/// exactly the accepted leases.
/// </summary>
public sealed class LeaseCheckTests
{
    private const string Vxlan = """{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":1}}""";

    private static readonly NetworkConfig Config = ParseConfig(Vxlan);

    /// <summary>Our lease: 10.244.1.0/24 via 192.0.2.1 (vxlan); this host also has 192.0.2.50 and 198.51.100.7.</summary>
    private static readonly LeaseRecord Ours = Lease("10.244.1.0-24", "192.0.2.1", mac: "0e:00:00:00:00:01");

    private static readonly (HashSet<uint>, HashSet<UInt128>) Local = ([Packets.Ip("192.0.2.1"), Packets.Ip("192.0.2.50"), Packets.Ip("198.51.100.7")], []);

    private static NetworkConfig ParseConfig(string json)
    {
        using JsonDocument doc = JsonDocument.Parse(json);
        return NetworkConfig.Parse(doc.RootElement, "config");
    }

    private static LeaseRecord Lease(string key, string publicIp, string? type = "vxlan", string? mac = "0e:00:00:00:00:09", int vni = 1)
    {
        string data = mac is null ? "null" : $$"""{"VNI":{{vni}},"VtepMAC":"{{mac}}"}""";
        string json = type is null ? $$"""{"PublicIP":"{{publicIp}}"}""" : $$"""{"PublicIP":"{{publicIp}}","BackendType":"{{type}}","BackendData":{{data}}}""";
        return LeaseRecord.Parse(key, Encoding.UTF8.GetBytes(json), $"etcd subnets/{key}");
    }

    private static NodeIdentity Node(NetworkConfig? config = null) => new(Ours, config ?? Config, BackendKind.Vxlan, 8472, 1);

    public static TheoryData<string, string, string> BadLeases => new()
    {
        { "10.9.0.0-16", "192.0.2.9", "subnet_outside_network" },
        { "0.0.0.0-1", "192.0.2.9", "subnet_outside_network" },
        { "10.244.1.0-25", "192.0.2.9", "subnet_outside_network" },
        { "192.0.2.0-24", "192.0.2.9", "subnet_outside_network" },
        { "10.244.1.0-24&", "192.0.2.9", "overlaps_our_subnet" }, // our subnet, another address
        { "10.244.7.0-24", "192.0.2.1", "our_stale_lease" },     // our address, another subnet
        { "10.244.7.0-24", "192.0.2.50", "our_stale_lease" },    // another address of this host
        { "10.244.7.0-24", "10.244.3.3", "public_ip_in_overlay" },
        { "10.244.7.0-24", "0.0.0.0", "public_ip_unusable" },
        { "10.244.7.0-24", "127.0.0.1", "public_ip_unusable" },
        { "10.244.7.0-24", "224.0.0.5", "public_ip_unusable" },
        { "10.244.7.0-24", "255.255.255.255", "public_ip_unusable" },
        { "10.244.7.0-24|udp", "192.0.2.9", "backend_mismatch" },
        { "10.244.7.0-24|host-gw", "192.0.2.9", "backend_mismatch" },
        { "10.244.7.0-24|vni", "192.0.2.9", "vni_mismatch" },
        { "10.244.7.0-24|nomac", "192.0.2.9", "vtep_mac_invalid" },
        { "10.244.7.0-24|zeromac", "192.0.2.9", "vtep_mac_invalid" },
    };

    [Theory]
    [MemberData(nameof(BadLeases))]
    public void A_bad_lease_is_refused_with_its_reason_and_the_good_ones_stay_peers(string spec, string publicIp, string reason)
    {
        string[] parts = spec.TrimEnd('&').Split('|');
        LeaseRecord bad = parts.Length == 1 ? Lease(parts[0], publicIp) : parts[1] switch
        {
            "udp" => Lease(parts[0], publicIp, type: "udp", mac: null),
            "host-gw" => Lease(parts[0], publicIp, type: "host-gw", mac: null),
            "vni" => Lease(parts[0], publicIp, vni: 4096),
            "nomac" => Lease(parts[0], publicIp, mac: null),
            _ => Lease(parts[0], publicIp, mac: "00:00:00:00:00:00"),
        };
        LeaseRecord good2 = Lease("10.244.2.0-24", "192.0.2.2"), good3 = Lease("10.244.3.0-24", "192.0.2.3");
        var notes = new List<string>();
        var check = new LeaseCheck(Node(), Local.Item1, Local.Item2);

        SubnetTable t = Node().BuildTable(new ClusterSnapshot(Config, [good2, bad, Ours, good3]), check, notes, out List<RejectedLease> rejected);

        Assert.Equal(["10.244.2.0/24", "10.244.3.0/24"], t.Peers.Select(p => p.Subnet.ToString()).Order());
        RejectedLease r = Assert.Single(rejected);
        Assert.Equal(reason, r.Reason);
        Assert.StartsWith(bad.Name + ": ", r.Detail, StringComparison.Ordinal);
        Assert.Empty(notes);
    }

    [Fact]
    public void A_lease_covering_an_address_of_this_host_is_refused_when_the_network_holds_the_underlay()
    {
        NetworkConfig wide = ParseConfig("""{"Network":"198.51.0.0/16","Backend":{"Type":"vxlan"}}""");
        LeaseRecord ours = Lease("198.51.1.0-24", "192.0.2.1", mac: "0e:00:00:00:00:01");
        var node = new NodeIdentity(ours, wide, BackendKind.Vxlan, 8472, 1);
        LeaseRecord covering = Lease("198.51.100.0-24", "192.0.2.9"), fine = Lease("198.51.2.0-24", "192.0.2.2");
        SubnetTable t = node.BuildTable(new ClusterSnapshot(wide, [ours, covering, fine]), new LeaseCheck(node, Local.Item1, Local.Item2), [], out List<RejectedLease> rejected);
        Assert.Equal("198.51.2.0/24", Assert.Single(t.Peers).Subnet.ToString());
        Assert.Equal("covers_local_address", Assert.Single(rejected).Reason);
        Assert.Contains("covers 198.51.100.7", rejected[0].Detail);
    }

    [Fact]
    public void Of_two_leases_of_one_subnet_the_first_by_name_wins_whatever_the_order()
    {
        NetworkConfig dual = ParseConfig("""{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8:244::/48","Backend":{"Type":"vxlan"}}""");
        var node = new NodeIdentity(Ours, dual, BackendKind.Vxlan, 8472, 1);
        LeaseRecord a = Lease("10.244.5.0-24", "192.0.2.5"), b = Lease("10.244.5.0-24&2001:db8:244:5::-64", "192.0.2.6");
        foreach (LeaseRecord[] order in new[] { new[] { a, b }, [b, a] })
        {
            SubnetTable t = node.BuildTable(new ClusterSnapshot(dual, [Ours, .. order]), new LeaseCheck(node, new HashSet<uint>(), new HashSet<UInt128>()), [], out List<RejectedLease> rejected);
            Assert.Equal(Packets.Ip("192.0.2.5"), Assert.Single(t.Peers).PublicIp);
            Assert.Equal("overlaps_lease", Assert.Single(rejected).Reason);
            Assert.Equal("10.244.5.0-24&2001:db8:244:5::-64: subnet 10.244.5.0/24 is leased by 10.244.5.0-24 too", rejected[0].Detail);
        }
    }

    [Fact]
    public void A_udp_node_accepts_leases_with_no_backend_type_as_flanneld_writes_them()
    {
        NetworkConfig udpNetwork = ParseConfig("""{"Network":"10.244.0.0/16"}"""); // no Backend: udp, as in flannel
        LeaseRecord ours = Lease("10.244.1.0-24", "192.0.2.1", type: null);
        var node = new NodeIdentity(ours, udpNetwork, BackendKind.Udp, 8285, 1);
        LeaseRecord none = Lease("10.244.2.0-24", "192.0.2.2", type: null), empty = Lease("10.244.3.0-24", "192.0.2.3", type: "", mac: null),
            udp = Lease("10.244.4.0-24", "192.0.2.4", type: "udp", mac: null), vxlan = Lease("10.244.5.0-24", "192.0.2.5");
        var snapshot = new ClusterSnapshot(udpNetwork, [ours, none, empty, udp, vxlan]);
        SubnetTable t = node.BuildTable(snapshot, new LeaseCheck(node, new HashSet<uint>(), new HashSet<UInt128>()), [], out List<RejectedLease> rejected);
        Assert.Equal(3, t.Peers.Count);
        Assert.Equal("10.244.5.0-24: backend vxlan, ours is udp", Assert.Single(rejected).Detail);

        // A node told --backend udp on a vxlan network (a lab over one file) takes the network's vxlan leases.
        var overridden = new NodeIdentity(ours, Config, BackendKind.Udp, 8285, 1);
        overridden.BuildTable(snapshot with { Config = Config }, new LeaseCheck(overridden, new HashSet<uint>(), new HashSet<UInt128>()), [], out rejected);
        Assert.Empty(rejected);
    }

    [Fact]
    public void Each_refusal_is_said_once_counted_while_present_and_its_end_is_said()
    {
        var lines = new List<string>();
        var tables = new PeerTables(Node(), _ => { }, new LoggerConfiguration().WriteTo.Sink(new ListLogSink(lines)).CreateLogger(), Local);
        LeaseRecord bad = Lease("10.9.0.0-16", "192.0.2.9"), good = Lease("10.244.2.0-24", "192.0.2.2");
        tables.First(new ClusterSnapshot(Config, [Ours, bad]));
        for (int i = 0; i < 5; i++)
        {
            tables.Offer(new ClusterSnapshot(Config, [Ours, bad, good]));
        }
        Assert.Single(lines, l => l.StartsWith("Lease refused (subnet_outside_network): 10.9.0.0-16: subnet 10.9.0.0/16 is not a /24", StringComparison.Ordinal));
        Assert.Contains("Subnet added: 10.244.2.0/24 via 192.0.2.2", lines);
        Assert.Equal("10.9.0.0-16", Assert.Single(tables.Rejected).Name);

        tables.Offer(new ClusterSnapshot(Config, [Ours, good]));
        Assert.Contains("Lease 10.9.0.0-16 is gone: no longer refused", lines);
        Assert.Empty(tables.Rejected);
    }

    [Fact]
    public void A_changed_network_config_is_said_once_and_leases_valid_under_the_running_one_keep_applying()
    {
        var lines = new List<string>();
        var published = new List<SubnetTable>();
        var tables = new PeerTables(Node(), published.Add, new LoggerConfiguration().WriteTo.Sink(new ListLogSink(lines)).CreateLogger(), Local);
        tables.First(new ClusterSnapshot(Config, [Ours]));
        NetworkConfig changed = ParseConfig("""{"Network":"10.245.0.0/16","Backend":{"Type":"vxlan","VNI":1}}""");
        tables.Offer(new ClusterSnapshot(changed, [Ours, Lease("10.244.2.0-24", "192.0.2.2")]));
        tables.Offer(new ClusterSnapshot(changed, [Ours, Lease("10.244.2.0-24", "192.0.2.2"), Lease("10.244.3.0-24", "192.0.2.3")]));
        Assert.Single(lines, l => l.StartsWith("The network config in the store changed (Network 10.245.0.0/16, was 10.244.0.0/16)", StringComparison.Ordinal));
        Assert.Equal(2, published[^1].Peers.Count);
        tables.Offer(new ClusterSnapshot(Config, [Ours]));
        Assert.Contains("The network config in the store is again the one this node runs with", lines);
    }

    /// <summary>Random snapshots (random keys, addresses, backends, MACs): the table is built, and holds exactly the accepted leases, each subnet once.</summary>
    [Fact]
    public void Any_snapshot_builds_a_table_of_exactly_the_accepted_leases()
    {
        var random = new Random(2026);
        string[] ips = ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.50", "10.244.9.9", "0.0.0.0", "127.0.0.1", "198.51.100.4", "239.1.1.1"];
        string[] keys = ["10.244.1.0-24", "10.244.2.0-24", "10.244.3.0-24", "10.244.2.0-25", "10.9.0.0-16", "0.0.0.0-1", "10.244.255.0-24", "192.0.2.0-24"];
        for (int round = 0; round < 300; round++)
        {
            var leases = new List<LeaseRecord> { Ours };
            for (int n = random.Next(0, 12); n > 0; n--)
            {
                leases.Add(Lease(keys[random.Next(keys.Length)], ips[random.Next(ips.Length)], random.Next(5) == 0 ? "udp" : "vxlan",
                    random.Next(6) == 0 ? null : $"0e:00:00:00:00:{random.Next(256):x2}", vni: random.Next(8) == 0 ? 2 : 1));
            }
            var check = new LeaseCheck(Node(), Local.Item1, Local.Item2);
            SubnetTable t = Node().BuildTable(new ClusterSnapshot(Config, leases), check, [], out List<RejectedLease> rejected);
            Assert.Equal(leases.Count - 1 - leases.Skip(1).Count(l => l.PublicIp == Ours.PublicIp && l.Subnet == Ours.Subnet), t.Peers.Count + rejected.Count);
            Assert.Equal(t.Peers.Count, t.Peers.Select(p => p.Subnet).Distinct().Count());
            Assert.All(t.Peers, p => Assert.Same(p, t.Lookup(p.Subnet.Address + 1)));
            Assert.DoesNotContain(t.Peers, p => p.Subnet == Ours.Subnet || Local.Item1.Contains(p.PublicIp));
        }
    }
}
