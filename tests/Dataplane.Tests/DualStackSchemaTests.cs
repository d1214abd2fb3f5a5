using System.Text;
using System.Text.Json;
using Dataplane.Encap;
using Dataplane.Leases;

namespace Dataplane.Tests;

/// <summary>
/// flannel's dual-stack schema (issue 9 part 2, first piece): the config's IPv6 fields with
/// flannel's rules and defaults (pkg/subnet/config.go), and dual-stack leases as flanneld writes
/// them (MakeSubnetKey's "v4&amp;v6" key, PublicIPv6, BackendV6Data). Such leases are read, checked
/// and kept; the node reaches those peers over IPv4.
/// </summary>
public sealed class DualStackSchemaTests
{
    private const string DualKey = "10.244.2.0-24&2001:db8:244:2::-64";

    /// <summary>A lease value as a dual-stack flanneld (vxlan) writes it.</summary>
    private const string FlanneldDualStackLease =
        """{"PublicIP":"192.0.2.2","PublicIPv6":"2001:db8:2::2","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:5e:00:00:02"},"BackendV6Data":{"VNI":1,"VtepMAC":"0e:00:5e:00:06:02"}}""";

    private static LeaseRecord Lease(string key, string json) =>
        LeaseRecord.Parse(key, Encoding.UTF8.GetBytes(json), $"etcd /coreos.com/network/subnets/{key}");

    private static NetworkConfig Config(string json)
    {
        using JsonDocument doc = JsonDocument.Parse(json);
        return NetworkConfig.Parse(doc.RootElement, "config");
    }

    private static string ConfigError(string json) => Assert.Throws<ConfigException>(() => Config(json)).Message;

    [Fact]
    public void A_dual_stack_lease_is_read_with_both_halves()
    {
        LeaseRecord l = Lease(DualKey, FlanneldDualStackLease);
        Assert.Equal("10.244.2.0/24", l.Subnet.ToString());
        Assert.Equal("192.0.2.2", l.PublicIpText);
        Assert.Equal("0e:00:5e:00:00:02", l.VtepMac.ToString());
        Assert.Equal("2001:db8:244:2::/64", l.Ipv6Subnet.ToString());
        Assert.Equal("2001:db8:2::2", Ipv6Prefix.Format(l.PublicIpv6!.Value));
        Assert.Equal("0e:00:5e:00:06:02", l.VtepMacV6.ToString());
        Assert.Equal(DualKey, l.Key); // flannel's MakeSubnetKey, back again
    }

    [Fact]
    public void An_ipv4_lease_has_no_ipv6_half_and_its_key_is_unchanged()
    {
        LeaseRecord l = Lease("10.244.1.0-24", """{"PublicIP":"192.0.2.1","PublicIPv6":null}""");
        Assert.Null(l.Ipv6Subnet);
        Assert.Null(l.PublicIpv6);
        Assert.Null(l.VtepMacV6);
        Assert.Equal("10.244.1.0-24", l.Key);
    }

    [Theory]
    [InlineData("10.244.2.0-24&2001:db8:244:2::1-64", "'2001:db8:244:2::1-64' after '&' is not an IPv6 subnet like 2001:db8:244:1::-64")]
    [InlineData("10.244.2.0-24&", "'' after '&' is not an IPv6 subnet like 2001:db8:244:1::-64")]
    [InlineData("10.244.2.0-24&10.1.0.0-16", "'10.1.0.0-16' after '&' is not an IPv6 subnet like 2001:db8:244:1::-64")]
    [InlineData("2001:db8:244:2::-64", "'2001:db8:244:2::-64' is not a subnet like 10.244.1.0-24 (or 10.244.1.0-24&2001:db8:244:1::-64)")]
    public void A_bad_dual_stack_key_is_one_line_naming_it(string key, string expected)
    {
        string e = Assert.Throws<ConfigException>(() => Lease(key, FlanneldDualStackLease)).Message;
        Assert.Equal($"etcd /coreos.com/network/subnets/{key}: {expected}", e);
    }

    [Theory]
    [InlineData("""{"PublicIP":"192.0.2.2","PublicIPv6":"192.0.2.2"}""", ".PublicIPv6: '192.0.2.2' is not an IPv6 address")]
    [InlineData("""{"PublicIP":"192.0.2.2","PublicIPv6":"fe80::1%eth0"}""", ".PublicIPv6: 'fe80::1%eth0' is not an IPv6 address")]
    [InlineData("""{"PublicIP":"192.0.2.2","PublicIPv6":"::ffff:192.0.2.2"}""", ".PublicIPv6: '::ffff:192.0.2.2' is not a unicast IPv6 address (IPv4-mapped, unspecified or multicast)")]
    [InlineData("""{"PublicIP":"192.0.2.2","PublicIPv6":"ff02::1"}""", ".PublicIPv6: 'ff02::1' is not a unicast IPv6 address (IPv4-mapped, unspecified or multicast)")]
    [InlineData("""{"PublicIP":"192.0.2.2","BackendV6Data":{"VtepMAC":"zz"}}""", ".BackendV6Data.VtepMAC: 'zz' is not a MAC address like 0e:12:34:56:78:9a")]
    [InlineData("""{"PublicIP":"192.0.2.2","BackendV6Data":{"VtepMAC":"01:00:5e:00:00:01"}}""", ".BackendV6Data.VtepMAC: '01:00:5e:00:00:01' is a multicast address")]
    public void Bad_ipv6_fields_of_a_lease_are_one_line_naming_the_field(string json, string expected)
    {
        string e = Assert.Throws<ConfigException>(() => Lease(DualKey, json)).Message;
        Assert.Equal($"etcd /coreos.com/network/subnets/{DualKey}{expected}", e);
    }

    [Fact]
    public void The_ipv6_config_gets_flannels_defaults()
    {
        NetworkConfig c = Config("""{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8:244::/48","Backend":{"Type":"vxlan"}}""");
        Assert.True(c.EnableIpv6);
        Assert.Equal("2001:db8:244::/48", c.Ipv6Network.ToString());
        Assert.Equal(64, c.Ipv6SubnetLength);
        // The first subnet is skipped, as flannel does; the last one is the network's last /64.
        Assert.Equal("2001:db8:244:1::", Ipv6Prefix.Format(c.Ipv6SubnetMin));
        Assert.Equal("2001:db8:244:ffff::", Ipv6Prefix.Format(c.Ipv6SubnetMax));
        Assert.Equal("10.244.0.0/16", c.Network.ToString()); // IPv4 as before

        // A network longer than /62 is cut into its length + 2.
        Assert.Equal(122, Config("""{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8::/120"}""").Ipv6SubnetLength);
        // Given explicitly, with bounds on the boundary.
        NetworkConfig given = Config("""{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8:244::/48","IPv6SubnetLen":80,"IPv6SubnetMin":"2001:db8:244:0:1::","IPv6SubnetMax":"2001:db8:244:0:ff::"}""");
        Assert.Equal(80, given.Ipv6SubnetLength);
        Assert.Equal("2001:db8:244:0:1::", Ipv6Prefix.Format(given.Ipv6SubnetMin));
        // EnableIPv6 false (or missing): the IPv6 fields are not used, as in flannel.
        Assert.False(Config("""{"Network":"10.244.0.0/16","IPv6Network":"2001:db8:244::/48"}""").EnableIpv6);
        Assert.False(Config("""{"Network":"10.244.0.0/16","EnableIPv6":false,"IPv6Network":"nonsense"}""").EnableIpv6);
    }

    [Theory]
    [InlineData("""{"Network":"10.244.0.0/16","EnableIPv6":true}""", "config: EnableIPv6 is true but \"IPv6Network\" is missing")]
    [InlineData("""{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"10.1.0.0/16"}""", "config.IPv6Network: '10.1.0.0/16' is not an IPv6 network like 2001:db8:244::/48")]
    [InlineData("""{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8:244::1/48"}""", "config.IPv6Network: '2001:db8:244::1/48' is not an IPv6 network like 2001:db8:244::/48")]
    [InlineData("""{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8::/125"}""", "config.IPv6Network: 2001:db8::/125 is too small (flannel's smallest useful IPv6 network is a /124)")]
    [InlineData("""{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8::/48","IPv6SubnetLen":127}""", "config.IPv6SubnetLen: 127 must be at most 126 and at least 2 longer than the network's /48 (four subnets at least)")]
    [InlineData("""{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8::/48","IPv6SubnetLen":49}""", "config.IPv6SubnetLen: 49 must be at most 126 and at least 2 longer than the network's /48 (four subnets at least)")]
    [InlineData("""{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8::/48","IPv6SubnetMin":"2001:db8:0:1::1"}""", "config.IPv6SubnetMin: '2001:db8:0:1::1' is not the base address of a /64 inside 2001:db8::/48")]
    [InlineData("""{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8::/48","IPv6SubnetMax":"2001:db9::"}""", "config.IPv6SubnetMax: '2001:db9::' is not the base address of a /64 inside 2001:db8::/48")]
    [InlineData("""{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8::/48","IPv6SubnetMin":"2001:db8:0:9::","IPv6SubnetMax":"2001:db8:0:2::"}""", "config: IPv6SubnetMin 2001:db8:0:9:: is above IPv6SubnetMax 2001:db8:0:2::")]
    [InlineData("""{"EnableIPv4":false,"Network":"10.244.0.0/16"}""", "config: EnableIPv4 is false and EnableIPv6 is not true: the network has no family to forward")]
    [InlineData("""{"EnableIPv4":false,"EnableIPv6":true}""", "config: EnableIPv6 is true but \"IPv6Network\" is missing")]
    public void Bad_ipv6_config_is_one_line_naming_the_field(string json, string expected)
    {
        Assert.Equal(expected, ConfigError(json));
    }

    [Theory]
    [InlineData("2001:db8:244::/48", "2001:db8:244::/48", "2001:db8:244::-48")]
    [InlineData("2001:DB8:244:1:0:0:0:0-64", "2001:db8:244:1::/64", "2001:db8:244:1::-64")]
    [InlineData("::/0", "::/0", "::-0")]
    public void Ipv6_prefixes_parse_in_both_forms_and_print_canonically(string text, string printed, string key)
    {
        Assert.True(Ipv6Prefix.TryParse(text, out Ipv6Prefix? p));
        Assert.Equal(printed, p.ToString());
        Assert.Equal(key, p.Value.ToKey());
    }

    [Fact]
    public void A_dual_stack_lease_is_written_as_flanneld_writes_it_and_reads_back()
    {
        LeaseRecord l = Lease(DualKey, FlanneldDualStackLease);
        Assert.Equal(FlanneldDualStackLease, l.ToJson(1));
        Assert.Equal(l, Lease(l.Key, l.ToJson(1)));
        LeaseRecord udp = l with { VtepMac = null, VtepMacV6 = null, BackendType = null };
        Assert.Equal("""{"PublicIP":"192.0.2.2","PublicIPv6":"2001:db8:2::2"}""", udp.ToJson(1));
    }

    [Fact]
    public void Subnet_env_gets_the_ipv6_lines_in_flanneld_order()
    {
        Assert.True(Ipv6Prefix.TryParse("2001:db8:244::/48", out Ipv6Prefix? n6));
        Assert.True(Ipv6Prefix.TryParse("2001:db8:244:1::/64", out Ipv6Prefix? s6));
        string text = Node.SubnetEnvFile.Format(new Ipv4Prefix(Packets.Ip("10.244.0.0"), 16), new Ipv4Prefix(Packets.Ip("10.244.1.0"), 24), 1450, false, (n6.Value, s6.Value));
        Assert.Equal("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_IPV6_NETWORK=2001:db8:244::/48\nFLANNEL_IPV6_SUBNET=2001:db8:244:1::1/64\n" +
            "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n", text);
    }

    [Fact]
    public void The_table_takes_each_peers_ipv6_half_when_it_can_be_reached_and_says_why_not()
    {
        NetworkConfig config = Config("""{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8:244::/48","Backend":{"Type":"vxlan"}}""");
        LeaseRecord ours = Lease("10.244.1.0-24&2001:db8:244:1::-64", FlanneldDualStackLease.Replace("192.0.2.2", "192.0.2.1").Replace("2001:db8:2::2", "2001:db8:2::1"));
        LeaseRecord full = Lease(DualKey, FlanneldDualStackLease);
        LeaseRecord noV6Address = Lease("10.244.3.0-24&2001:db8:244:3::-64", """{"PublicIP":"192.0.2.3","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:5e:00:00:03"},"BackendV6Data":{"VNI":1,"VtepMAC":"0e:00:5e:00:06:03"}}""");
        LeaseRecord v4Only = Lease("10.244.4.0-24", """{"PublicIP":"192.0.2.4","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:5e:00:00:04"}}""");
        var snapshot = new ClusterSnapshot(config, [ours, full, noV6Address, v4Only]);
        Assert.True(Ipv6Prefix.TryParseAddress("2001:db8:2::1", out UInt128 publicIpv6));

        var skipped = new List<string>();
        var node = new NodeIdentity(ours, config, Engine.BackendKind.Vxlan, 8472, 1) { PublicIpv6 = publicIpv6 };
        Engine.SubnetTable t = Table(node, snapshot, skipped);
        Assert.Equal(3, t.Peers.Count);
        Assert.True(Ipv6Prefix.TryParseAddress("2001:db8:244:2::7", out UInt128 inB));
        Assert.Equal("[2001:db8:2::2]:8472", t.Lookup6(inB)!.Endpoint6.ToString());
        Assert.Equal("0e:00:5e:00:06:02", t.Lookup6(inB)!.VtepMacV6.ToString());
        Assert.Equal("2001:db8:244:3::/64 of 10.244.3.0/24 via 192.0.2.3: no PublicIPv6 for IPv6 over vxlan (its IPv4 half is used)", Assert.Single(skipped));
        Assert.NotNull(t.Lookup(Packets.Ip("10.244.3.9")));

        // Without an IPv6 underlay address of our own, vxlan forwards IPv4 only; udp then carries IPv6 over IPv4.
        var noUnderlay = new NodeIdentity(ours, config, Engine.BackendKind.Vxlan, 8472, 1);
        Assert.Null(noUnderlay.Ipv6Subnet);
        Assert.Null(Table(noUnderlay, snapshot, []).Lookup6(inB));
        var udp = new NodeIdentity(ours, config, Engine.BackendKind.Udp, 8285, 1);
        var udpLeases = new ClusterSnapshot(config, [.. snapshot.Leases.Select(l => l with { BackendType = null, VtepMac = null })]);
        Assert.Equal("192.0.2.2:8285", Table(udp, udpLeases, []).Lookup6(inB)!.Endpoint6.ToString());
    }

    [Fact]
    public void Free_ipv6_subnets_are_the_first_hundred_free_ones_from_the_minimum()
    {
        NetworkConfig config = Config("""{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8:244::/48"}""");
        List<Ipv6Prefix> free = SubnetAllocator.FreeIpv6Subnets(config, [Lease(DualKey, FlanneldDualStackLease)]);
        Assert.Equal(100, free.Count);
        Assert.Equal(free.Count, free.Distinct().Count());
        Assert.DoesNotContain(free, p => p.ToString() == "2001:db8:244:2::/64"); // taken
        Assert.DoesNotContain(free, p => p.ToString() == "2001:db8:244::/64");   // below IPv6SubnetMin
        Assert.Contains(free, p => p.ToString() == "2001:db8:244:65::/64");     // 1, 3..101 (hex 65)
        Assert.All(free, p => Assert.Equal(64, p.Length));
    }

    [Fact]
    public void An_ipv6_only_network_has_the_empty_ipv4_half_and_flannels_keys()
    {
        NetworkConfig c = Config("""{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"2001:db8:244::/48","Network":"ignored","Backend":{"Type":"vxlan"}}""");
        Assert.False(c.EnableIpv4);
        Assert.True(c.EnableIpv6);
        Assert.Equal("0.0.0.0/0", c.Network.ToString());
        Assert.Equal(0, c.SubnetLength);
        Assert.Equal(8472, c.Port);

        // As flanneld writes an IPv6-only vxlan lease: key 0.0.0.0-0&..., PublicIP 0.0.0.0, BackendV6Data only.
        const string flanneld = """{"PublicIP":"0.0.0.0","PublicIPv6":"2001:db8:2::2","BackendType":"vxlan","BackendV6Data":{"VNI":1,"VtepMAC":"0e:00:5e:06:00:02"}}""";
        LeaseRecord l = Lease("0.0.0.0-0&2001:db8:244:2::-64", flanneld);
        Assert.Equal("0.0.0.0-0&2001:db8:244:2::-64", l.Key);
        Assert.Null(l.VtepMac);
        Assert.Equal(flanneld, l.ToJson(1));

        LeaseRecord ours = Lease("0.0.0.0-0&2001:db8:244:1::-64", flanneld.Replace("2001:db8:2::2", "2001:db8:2::1").Replace("06:00:02", "06:00:01"));
        var snapshot = new ClusterSnapshot(c, [ours, l]);
        ClusterFile.CheckLeases(c, snapshot.Leases, "file");
        Assert.True(Ipv6Prefix.TryParseAddress("2001:db8:2::1", out UInt128 publicIpv6));
        Assert.Same(ours, snapshot.LeaseOf(new LeaseRequest(0, Engine.BackendKind.Vxlan, 1) { PublicIpv6 = publicIpv6 }));
        var node = new NodeIdentity(ours, c, Engine.BackendKind.Vxlan, 8472, 1) { PublicIpv6 = publicIpv6 };
        Assert.True(node.Ipv6Only);
        Engine.SubnetTable t = Table(node, snapshot, []);
        Assert.False(t.Ipv4);
        Engine.Peer peer = Assert.Single(t.Peers);
        Assert.Equal("2001:db8:244:2::/64 via 2001:db8:2::2", peer.Describe());
        Assert.Null(t.Lookup(Packets.Ip("10.244.2.1")));
        Assert.True(Ipv6Prefix.TryParseAddress("2001:db8:244:2::9", out UInt128 inPeer));
        Assert.Same(peer, t.Lookup6(inPeer));
        Assert.NotEqual(t.PeerSlot(peer), t.PeerSlot(peer with { Ipv6Subnet = new Ipv6Prefix(inPeer & ~(UInt128)0xFFFF_FFFF_FFFF_FFFF + ((UInt128)1 << 64), 64) }));
        Assert.Equal("FLANNEL_IPV6_NETWORK=2001:db8:244::/48\nFLANNEL_IPV6_SUBNET=2001:db8:244:1::1/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=false\n",
            Node.SubnetEnvFile.Format(null, 1430, false, (c.Ipv6Network!.Value, ours.Ipv6Subnet!.Value)));
    }

    [Fact]
    public void An_ipv6_only_file_refuses_a_lease_without_an_ipv6_half()
    {
        NetworkConfig c = Config("""{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"2001:db8:244::/48"}""");
        LeaseRecord v4 = Lease("10.244.1.0-24", """{"PublicIP":"192.0.2.1"}""");
        Assert.Equal("file: lease 10.244.1.0-24 has no IPv6 subnet, and the network is IPv6-only",
            Assert.Throws<ConfigException>(() => ClusterFile.CheckLeases(c, [v4], "file")).Message);
        LeaseRecord a = Lease("0.0.0.0-0&2001:db8:244:1::-64", """{"PublicIP":"0.0.0.0","PublicIPv6":"2001:db8:2::1"}""");
        LeaseRecord b = Lease("0.0.0.0-0&2001:db8:244:1::-64", """{"PublicIP":"0.0.0.0","PublicIPv6":"2001:db8:2::2"}""");
        Assert.Contains("IPv6 subnet 2001:db8:244:1::/64 is leased twice", Assert.Throws<ConfigException>(() => ClusterFile.CheckLeases(c, [a, b], "file")).Message);
    }

    /// <summary>The node's table of <paramref name="snapshot"/>, no local address to avoid; refused leases are lines in <paramref name="notes"/>.</summary>
    private static Engine.SubnetTable Table(NodeIdentity node, ClusterSnapshot snapshot, List<string> notes)
    {
        Engine.SubnetTable table = node.BuildTable(snapshot, new LeaseCheck(node, new HashSet<uint>(), new HashSet<UInt128>()), notes, out List<RejectedLease> rejected);
        notes.AddRange(rejected.Select(r => r.Detail));
        return table;
    }
}
