using System.Text;
using System.Text.Json;
using Dataplane.Encap;
using Dataplane.Engine;
using Dataplane.Leases;
using Dataplane.Leases.Etcd;
using Dataplane.Leases.Kube;
using Dataplane.Node;
using Dataplane.TestSupport;
using Serilog;

namespace Dataplane.Tests;

/// <summary>The one lease schema every source reads and writes, the allocator, the peer tables and the choice of source.</summary>
public sealed class LeaseSchemaTests
{
    private static readonly Ipv4Prefix Subnet1 = Ipv4Prefix.TryParse("10.244.1.0/24", out Ipv4Prefix? p) ? p.Value : default;

    private static LeaseRecord Parse(string json) =>
        LeaseRecord.Parse("10.244.1.0-24", Encoding.UTF8.GetBytes(json), "etcd /coreos.com/network/subnets/10.244.1.0-24");

    [Fact]
    public void A_lease_is_written_byte_for_byte_as_flanneld_writes_it()
    {
        var vxlan = new LeaseRecord(Subnet1, Packets.Ip("192.0.2.1"), "vxlan", MacAddress.Read([0x0e, 0, 0x5e, 0, 0, 1]));
        Assert.Equal("""{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:5e:00:00:01"}}""", vxlan.ToJson(1));
        var udp = new LeaseRecord(Subnet1, Packets.Ip("192.0.2.1"), null, null);
        Assert.Equal("""{"PublicIP":"192.0.2.1","PublicIPv6":null}""", udp.ToJson(1));
        Assert.Equal("10.244.1.0-24", vxlan.Key);
        Assert.Equal(vxlan with { Vni = 1 }, Parse(vxlan.ToJson(1)));
        Assert.Equal(udp, Parse(udp.ToJson(1)));
    }

    [Fact]
    public void Field_names_match_without_regard_to_case_as_in_gos_encoding_json()
    {
        LeaseRecord l = Parse("""{"publicIP": "192.0.2.7", "backendtype": "vxlan", "backendData": {"vtepmac": "0e:00:5e:00:00:07", "vni": 1}}""");
        Assert.Equal("192.0.2.7", l.PublicIpText);
        Assert.Equal("0e:00:5e:00:00:07", l.VtepMac.ToString());
    }

    [Fact]
    public void Another_backends_data_that_is_not_an_object_is_no_error()
    {
        Assert.Null(Parse("""{"PublicIP": "192.0.2.1", "BackendType": "other", "BackendData": "opaque"}""").VtepMac);
        Assert.Null(Parse("""{"PublicIP": "192.0.2.1", "BackendData": null}""").VtepMac);
    }

    [Theory]
    [InlineData("""{"PublicIP": 5}""", ".PublicIP: must be a string")]
    [InlineData("""{"PublicIP": "192.0.2.1", "BackendData": {"VNI": "one"}}""", ".BackendData.VNI: must be an integer")]
    [InlineData("""{"PublicIP": "192.0.2.1", "BackendData": {"VtepMAC": 7}}""", ".BackendData.VtepMAC: must be a string")]
    [InlineData("""[1, 2]""", ": must be an object")]
    [InlineData("""{"PublicIP": "192.0.2.1",}""", ": invalid JSON at line 1, column 26")]
    public void A_field_of_the_wrong_type_is_one_line_naming_it(string json, string expected)
    {
        string e = Assert.Throws<ConfigException>(() => Parse(json)).Message;
        Assert.Equal("etcd /coreos.com/network/subnets/10.244.1.0-24" + expected, e);
    }

    [Theory]
    [InlineData("""{"Network": "10.244.0.0/16", "SubnetLen": "24"}""", "config.SubnetLen: must be an integer")]
    [InlineData("""{"Network": ["10.244.0.0/16"]}""", "config.Network: must be a string")]
    [InlineData("""{"Network": "10.244.0.0/16", "Backend": "vxlan"}""", "config.Backend: must be an object")]
    [InlineData("""{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "Port": true}}""", "config.Backend.Port: must be an integer")]
    public void A_config_field_of_the_wrong_type_is_one_line_naming_it(string json, string expected)
    {
        using JsonDocument doc = JsonDocument.Parse(json);
        Assert.Equal(expected, Assert.Throws<ConfigException>(() => NetworkConfig.Parse(doc.RootElement, "config")).Message);
    }

    [Fact]
    public void The_allocator_offers_every_free_subnet_between_min_and_max_once()
    {
        using JsonDocument doc = JsonDocument.Parse("""{"Network": "10.244.0.0/16", "SubnetMin": "10.244.10.0", "SubnetMax": "10.244.19.0"}""");
        NetworkConfig c = NetworkConfig.Parse(doc.RootElement, "config");
        LeaseRecord Taken(int i) => new(new Ipv4Prefix(Packets.Ip($"10.244.{i}.0"), 24), Packets.Ip($"192.0.2.{i}"), null, null);
        List<Ipv4Prefix> free = SubnetAllocator.FreeSubnets(c, [Taken(10), Taken(15), Taken(30)]);
        Assert.Equal(8, free.Count);
        Assert.Equal(8, free.Distinct().Count());
        Assert.All(free, s => Assert.True(s.Address >= Packets.Ip("10.244.11.0") && s.Address <= Packets.Ip("10.244.19.0") && s.Length == 24));
        Assert.DoesNotContain(new Ipv4Prefix(Packets.Ip("10.244.15.0"), 24), free);
    }

    [Fact]
    public void Peer_tables_publish_only_when_the_peers_change_and_leave_our_subnet_out()
    {
        using JsonDocument doc = JsonDocument.Parse("""{"Network": "10.244.0.0/16"}""");
        NetworkConfig c = NetworkConfig.Parse(doc.RootElement, "config");
        LeaseRecord Lease(int subnet, int ip) => new(new Ipv4Prefix(Packets.Ip($"10.244.{subnet}.0"), 24), Packets.Ip($"192.0.2.{ip}"), null, null);
        var node = new NodeIdentity(Lease(1, 1), c, BackendKind.Udp, 8285, 1);
        var published = new List<SubnetTable>();
        var tables = new PeerTables(node, published.Add, new LoggerConfiguration().CreateLogger());

        // A stale lease of our own subnet from another address is not a peer.
        SubnetTable first = tables.First(new ClusterSnapshot(c, [Lease(1, 1), Lease(2, 2), Lease(1, 9)]));
        Assert.Equal(["10.244.2.0/24"], first.Peers.Select(p => p.Subnet.ToString()));
        Assert.False(tables.Offer(new ClusterSnapshot(c, [Lease(1, 1), Lease(2, 2)])));
        Assert.Empty(published);
        Assert.True(tables.Offer(new ClusterSnapshot(c, [Lease(1, 1), Lease(2, 2), Lease(3, 3)])));
        Assert.True(tables.Offer(new ClusterSnapshot(c, [Lease(1, 1), Lease(2, 4), Lease(3, 3)])));
        Assert.Equal(2, published.Count);
        Assert.Equal(2, tables.Generation);
        Assert.Equal(Packets.Ip("192.0.2.4"), published[^1].Lookup(Packets.Ip("10.244.2.7"))!.PublicIp);
    }

    [Fact]
    public void A_lease_a_source_could_not_read_is_logged_once_however_often_it_is_read_again()
    {
        using JsonDocument doc = JsonDocument.Parse("""{"Network": "10.244.0.0/16"}""");
        NetworkConfig c = NetworkConfig.Parse(doc.RootElement, "config");
        var ours = new LeaseRecord(new Ipv4Prefix(Packets.Ip("10.244.1.0"), 24), Packets.Ip("192.0.2.1"), null, null);
        var lines = new List<string>();
        var tables = new PeerTables(new NodeIdentity(ours, c, BackendKind.Udp, 8285, 1), _ => { },
            new LoggerConfiguration().WriteTo.Sink(new ListLogSink(lines)).CreateLogger());
        var bad = new ClusterSnapshot(c, [ours]) { Unreadable = [("10.244.7.0-24", "etcd /coreos.com/network/subnets/10.244.7.0-24.PublicIP: 'x' is not an IPv4 address")] };
        tables.First(bad);
        tables.Offer(bad);
        tables.Offer(bad); // a source re-reading every few seconds
        Assert.Single(lines, l => l.StartsWith("Lease refused (unreadable): etcd /coreos.com/network/subnets/10.244.7.0-24", StringComparison.Ordinal));
        tables.Offer(new ClusterSnapshot(c, [ours]));
        Assert.Contains("Lease 10.244.7.0-24 is gone: no longer refused", lines);
        tables.Offer(bad); // gone and back: said again
        Assert.Equal(2, lines.Count(l => l.StartsWith("Lease refused", StringComparison.Ordinal)));
    }

    [Fact]
    public void A_store_away_is_said_once_retried_with_doubling_jittered_delays_and_said_back_once()
    {
        var lines = new List<string>();
        var outage = new StoreOutage("etcd http://192.0.2.100:2379", new LoggerConfiguration().WriteTo.Sink(new ListLogSink(lines)).CreateLogger());
        outage.Reached(); // never away: nothing to say
        double[] waits = [.. Enumerable.Range(0, 7).Select(_ => outage.Failed("connection refused").TotalSeconds)];
        double[] nominal = [1, 2, 4, 8, 16, 30, 30];
        Assert.All(waits.Zip(nominal), w => Assert.InRange(w.First, w.Second * 0.8, w.Second * 1.2)); // ± 20 %: nodes spread out
        outage.Reached();
        outage.Reached();
        Assert.Equal(["etcd http://192.0.2.100:2379: connection refused; forwarding on the last known subnets", "etcd http://192.0.2.100:2379 reachable again"], lines);
        Assert.InRange(outage.Failed("again").TotalSeconds, 0.8, 1.2); // the delay starts over

        var quick = new StoreOutage("etcd", new LoggerConfiguration().CreateLogger(), TimeSpan.FromSeconds(0.2), TimeSpan.FromSeconds(2));
        Assert.All(Enumerable.Range(0, 10).Select(_ => quick.Failed("x").TotalSeconds), w => Assert.InRange(w, 0.16, 2.4));
    }

    [Fact]
    public void Exactly_one_lease_source_is_chosen()
    {
        ILogger log = new LoggerConfiguration().CreateLogger();
        var etcd = new EtcdOptions { Endpoints = ["http://192.0.2.100:2379"], VtepMacFile = "/nonexistent/mac" };
        var kube = new KubeOptions { ApiUrl = "http://192.0.2.100:6443" };
        Assert.IsType<StaticLeaseSource>(LeaseSources.Create("cluster.json", null, null, log));
        using (ILeaseSource e = LeaseSources.Create(null, etcd, null, log))
        {
            Assert.IsType<EtcdLeaseSource>(e);
            Assert.Equal("etcd http://192.0.2.100:2379", e.Description);
        }
        using (ILeaseSource k = LeaseSources.Create(null, null, kube, log))
        {
            Assert.IsType<KubeLeaseSource>(k);
            Assert.Equal("Kubernetes API http://192.0.2.100:6443", k.Description);
        }
        const string two = "two lease sources: give one of --leases FILE, --etcd-endpoints URL, --kube-subnet-mgr";
        Assert.Equal(two, Assert.Throws<ConfigException>(() => LeaseSources.Create("cluster.json", etcd, null, log)).Message);
        Assert.Equal(two, Assert.Throws<ConfigException>(() => LeaseSources.Create(null, etcd, kube, log)).Message);
        Assert.Equal(two, Assert.Throws<ConfigException>(() => LeaseSources.Create("cluster.json", null, kube, log)).Message);
        Assert.StartsWith("no lease source", Assert.Throws<ConfigException>(() => LeaseSources.Create(null, null, null, log)).Message);
    }
}
