using System.Text.RegularExpressions;
using Dataplane.Lab;
using Dataplane.Node;

using Dataplane.TestSupport;

namespace Dataplane.Integration.Tests;

/// <summary>
/// Leases from a real etcd (Debian's etcd-server) running in its own namespace on the underlay
/// (192.0.2.100), written and read with etcdctl as an independent client.
/// </summary>
public class EtcdTests
{
    internal const int EtcdHost = 100;
    internal const string Endpoint = "http://192.0.2.100:2379";
    private const string VxlanConfig = """{"Network":"10.244.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan","VNI":1}}""";

    internal static NodeProcess StartEtcd(Cluster c)
    {
        c.Topology.AddNode(EtcdHost, withPod: false);
        NodeProcess etcd = c.Topology.Start(c.Topology.Node(EtcdHost), [Require.Tool("etcd", "etcd-server"), "--data-dir", c.Path_("etcd"),
            "--listen-client-urls", Endpoint, "--advertise-client-urls", Endpoint, "--listen-peer-urls", "http://127.0.0.1:2380"], "etcd");
        Assert.True(etcd.WaitForLine("ready to serve client requests", TimeSpan.FromSeconds(30)) is not null, etcd.Output);
        return etcd;
    }

    /// <summary>etcd started again on its data directory (after Stop), ready to serve.</summary>
    internal static NodeProcess RestartEtcd(Cluster c)
    {
        NodeProcess again = c.Topology.Start(c.Topology.Node(EtcdHost), [Require.Tool("etcd", "etcd-server"), "--data-dir", c.Path_("etcd"),
            "--listen-client-urls", Endpoint, "--advertise-client-urls", Endpoint, "--listen-peer-urls", "http://127.0.0.1:2380"], "etcd-again");
        Assert.True(again.WaitForLine("ready to serve client requests", TimeSpan.FromSeconds(30)) is not null, again.Output);
        return again;
    }

    internal static string Etcdctl(Cluster c, params string[] args)
    {
        ProcessRunner.Result r = c.Topology.Exec(c.Topology.Node(EtcdHost), [Require.Tool("etcdctl", "etcd-client"), "--endpoints", Endpoint, .. args]);
        Assert.True(r.ExitCode == 0, $"etcdctl {string.Join(' ', args)}: {r.Stderr}");
        return r.Stdout;
    }

    /// <summary>Leases for nodes 1 and 2 as flanneld writes them (its VtepMACs); the pods behind them sit in these subnets.</summary>
    private static void PutFlanneldLeases(Cluster c)
    {
        Etcdctl(c, "put", "/coreos.com/network/subnets/10.244.1.0-24", """{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:11:11:11:11:11"}}""");
        Etcdctl(c, "put", "/coreos.com/network/subnets/10.244.2.0-24", """{"PublicIP":"192.0.2.2","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:22:22:22:22:22"}}""");
    }

    /// <summary>Node i run against this etcd with its files in the cluster's directory, ready.</summary>
    internal static NodeProcess StartNode(Cluster c, int i, params string[] extra)
    {
        NodeProcess p = c.Topology.Start(c.Topology.Node(i), [.. c.Program, "run", "--etcd-endpoints", Endpoint,
            "--public-ip", Topology.UnderlayIp(i), "--subnet-file", c.Path_($"node{i}-subnet.env"), "--control-socket", c.ControlSocket(i),
            "--vtep-mac-file", c.Path_($"node{i}.vtepmac"), .. extra], $"node{i}");
        Assert.True(p.WaitForLine("Ready:", TimeSpan.FromSeconds(30)) is not null, p.Output);
        return p;
    }

    [Fact]
    public void Leases_written_as_flanneld_writes_them_are_reused_and_carry_traffic()
    {
        using var c = new Cluster();
        StartEtcd(c);
        c.Topology.AddNode(1);
        c.Topology.AddNode(2);
        Etcdctl(c, "put", "/coreos.com/network/config", VxlanConfig);
        // As flanneld writes them (its VtepMACs); the pods behind each node sit in these subnets.
        Etcdctl(c, "put", "/coreos.com/network/subnets/10.244.1.0-24",
            """{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:11:11:11:11:11"}}""");
        Etcdctl(c, "put", "/coreos.com/network/subnets/10.244.2.0-24",
            """{"PublicIP":"192.0.2.2","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:22:22:22:22:22"}}""");
        NodeProcess n1 = StartNode(c, 1);
        StartNode(c, 2);
        Assert.Contains("Lease reused: 10.244.1.0/24", n1.Output);
        Assert.Contains("FLANNEL_SUBNET=10.244.1.1/24", File.ReadAllText(c.Path_("node1-subnet.env")));

        ProcessRunner.Result ping = c.Ping(c.Topology.Pod(1), Topology.PodIp(2));
        Assert.True(ping.ExitCode == 0, ping.Stdout);
        c.StartTransfer(1, 2, 32L << 20).AssertIntact(TimeSpan.FromSeconds(60));

        // Our leases now carry a TTL (an etcd lease) and our BackendData; the MAC was kept.
        string leases = Etcdctl(c, "get", "--prefix", "/coreos.com/network/subnets/", "-w", "fields");
        Assert.Contains("\"Lease\" : ", leases);
        Assert.DoesNotMatch("\"Lease\" : 0\\n", leases);
        Assert.Contains("0e:11:11:11:11:11", Etcdctl(c, "get", "/coreos.com/network/subnets/10.244.1.0-24", "--print-value-only"));
        Assert.Equal("0e:11:11:11:11:11", File.ReadAllText(c.Path_("node1.vtepmac")).Trim());
    }

    /// <summary>
    /// A dual-stack flannel cluster (EnableIPv6, leases under MakeSubnetKey's "v4&amp;v6" keys with
    /// PublicIPv6 and BackendV6Data): node 1 reuses the dual-stack lease a flanneld left (same key,
    /// both halves), node 2 takes a free subnet of each family under a "v4&amp;v6" key, both carry
    /// IPv6 between their pods and write subnet.env's IPv6 lines; node 3, with no IPv6 underlay
    /// address, holds an IPv4 lease, says so, and is reached over IPv4.
    /// </summary>
    [Fact]
    public void A_dual_stack_flannel_cluster_is_joined_in_both_families()
    {
        using var c = new Cluster();
        StartEtcd(c);
        c.Topology.AddNode(1, ipv6: true);
        c.Topology.AddNode(2, ipv6: true);
        c.Topology.AddNode(3);
        Etcdctl(c, "put", "/coreos.com/network/config",
            """{"Network":"10.244.0.0/16","SubnetLen":24,"SubnetMin":"10.244.1.0","SubnetMax":"10.244.3.0","EnableIPv6":true,"IPv6Network":"2001:db8:244::/48","IPv6SubnetMin":"2001:db8:244:1::","IPv6SubnetMax":"2001:db8:244:3::","Backend":{"Type":"vxlan","VNI":1}}""");
        Etcdctl(c, "put", "/coreos.com/network/subnets/10.244.1.0-24&2001:db8:244:1::-64",
            """{"PublicIP":"192.0.2.1","PublicIPv6":"2001:db8:2::1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:11:11:11:11:11"},"BackendV6Data":{"VNI":1,"VtepMAC":"0e:66:66:66:66:11"}}""");
        NodeProcess n1 = StartNode(c, 1);
        NodeProcess n2 = StartNode(c, 2);
        NodeProcess n3 = StartNode(c, 3);
        Assert.Contains("Lease reused: 10.244.1.0/24 and 2001:db8:244:1::/64", n1.Output);
        Assert.Contains("but this node forwards IPv4 only: no IPv6 underlay address", n3.Output);

        string keys = Etcdctl(c, "get", "--prefix", "/coreos.com/network/subnets/", "--keys-only");
        Assert.Contains("/coreos.com/network/subnets/10.244.1.0-24&2001:db8:244:1::-64\n", keys);
        string node2Key = Assert.Single(keys.Split('\n'), k => k.Contains("&", StringComparison.Ordinal) && !k.Contains("10.244.1.0-24", StringComparison.Ordinal));
        Assert.Matches(@"/subnets/10\.244\.[23]\.0-24&2001:db8:244:[23]::-64$", node2Key);
        Assert.Single(keys.Split('\n'), k => k.StartsWith("/coreos.com/network/subnets/10.244.", StringComparison.Ordinal) && !k.Contains("&", StringComparison.Ordinal));
        string mine = Etcdctl(c, "get", "/coreos.com/network/subnets/10.244.1.0-24&2001:db8:244:1::-64", "--print-value-only");
        Assert.Contains("\"PublicIPv6\":\"2001:db8:2::1\"", mine);
        Assert.Contains("\"BackendV6Data\":{\"VNI\":1,\"VtepMAC\":\"0e:66:66:66:66:11\"}", mine);
        Assert.Contains("FLANNEL_IPV6_SUBNET=2001:db8:244:1::1/64\n", File.ReadAllText(c.Path_("node1-subnet.env")));
        Assert.DoesNotContain("IPV6", File.ReadAllText(c.Path_("node3-subnet.env")));

        // Node 2's pod sits in whatever subnets it took: move it there, then IPv6 both ways.
        string n2Subnet6 = System.Text.RegularExpressions.Regex.Match(node2Key, @"2001:db8:244:(\d)::").Groups[1].Value;
        string pod2 = c.Topology.Pod(2), node2 = c.Topology.Node(2);
        c.Topology.Ip(node2, "addr", "replace", $"2001:db8:244:{n2Subnet6}::1/64", "dev", "pod0", "nodad");
        c.Topology.Ip(pod2, "addr", "replace", $"2001:db8:244:{n2Subnet6}::2/64", "dev", "eth0", "nodad");
        c.Topology.Ip(pod2, "-6", "route", "replace", "default", "via", $"2001:db8:244:{n2Subnet6}::1");
        Assert.True(SpinUntil(() => n1.Output.Contains($"2001:db8:244:{n2Subnet6}::/64 via", StringComparison.Ordinal), 20), n1.Output);
        ProcessRunner.Result ping = c.Ping(c.Topology.Pod(1), $"2001:db8:244:{n2Subnet6}::2");
        Assert.True(ping.ExitCode == 0, ping.Stdout + ping.Stderr);
        ProcessRunner.Result back = c.Ping(pod2, Topology.PodIpv6(1));
        Assert.True(back.ExitCode == 0, back.Stdout + back.Stderr);
    }

    /// <summary>
    /// An IPv6-only network in etcd (EnableIPv4 false): each node takes a free IPv6 subnet under
    /// flannel's key <c>0.0.0.0-0&amp;...</c> with PublicIP 0.0.0.0 and BackendV6Data only, as flanneld
    /// writes it, and the nodes reach each other's VTEP addresses over the overlay.
    /// </summary>
    [Fact]
    public void An_ipv6_only_network_is_acquired_and_carried()
    {
        using var c = new Cluster();
        StartEtcd(c);
        c.Topology.AddNode(1, withPod: false, ipv6: true);
        c.Topology.AddNode(2, withPod: false, ipv6: true);
        Etcdctl(c, "put", "/coreos.com/network/config",
            """{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"2001:db8:244::/48","IPv6SubnetMin":"2001:db8:244:1::","IPv6SubnetMax":"2001:db8:244:9::","Backend":{"Type":"vxlan"}}""");
        NodeProcess n1 = StartNode(c, 1, "--public-ipv6", Topology.UnderlayIpv6(1));
        NodeProcess n2 = StartNode(c, 2, "--iface", "eth0");

        string[] keys = Etcdctl(c, "get", "--prefix", "/coreos.com/network/subnets/", "--keys-only").Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, keys.Length);
        Assert.All(keys, k => Assert.Matches(@"^/coreos\.com/network/subnets/0\.0\.0\.0-0&2001:db8:244:[1-9]::-64$", k));
        string value = Etcdctl(c, "get", keys[0], "--print-value-only");
        Assert.Matches("""^\{"PublicIP":"0\.0\.0\.0","PublicIPv6":"2001:db8:2::[12]","BackendType":"vxlan","BackendV6Data":\{"VNI":1,"VtepMAC":"[0-9a-f:]{17}"\}\}""", value.Trim());
        Assert.DoesNotContain("FLANNEL_NETWORK", File.ReadAllText(c.Path_("node1-subnet.env")));

        string vtep2 = System.Text.RegularExpressions.Regex.Match(n2.Output, @"Lease acquired: (2001:db8:244:\d::)/64").Groups[1].Value;
        Assert.True(vtep2.Length > 0, n2.Output);
        Assert.True(SpinUntil(() => n1.Output.Contains($"Subnet added: {vtep2}/64 via 2001:db8:2::2", StringComparison.Ordinal), 20), n1.Output);
        ProcessRunner.Result ping = c.Ping(c.Topology.Node(1), vtep2);
        Assert.True(ping.ExitCode == 0, ping.Stdout + ping.Stderr);
    }

    [Fact]
    public void Nodes_starting_together_get_distinct_subnets_and_see_each_other_join_and_leave()
    {
        using var c = new Cluster();
        StartEtcd(c);
        for (int i = 1; i <= 3; i++)
        {
            c.Topology.AddNode(i, withPod: false);
        }
        Etcdctl(c, "put", "/coreos.com/network/config", """{"Network":"10.244.0.0/16","SubnetLen":24,"SubnetMin":"10.244.10.0","SubnetMax":"10.244.13.0"}""");
        // Three at once (udp: the config names no backend), from a range of only four subnets.
        Task<NodeProcess>[] starting = [.. Enumerable.Range(1, 3).Select(i => Task.Run(() => StartNode(c, i)))];
        NodeProcess[] nodes = [.. starting.Select(t => t.Result)];
        string[] subnets = [.. Enumerable.Range(1, 3).Select(i => Regex.Match(File.ReadAllText(c.Path_($"node{i}-subnet.env")), @"FLANNEL_SUBNET=(\S+)").Groups[1].Value)];
        Assert.Equal(3, subnets.Distinct().Count());
        Assert.All(subnets, s => Assert.Matches(@"^10\.244\.1[0-3]\.1/24$", s));
        string keys = Etcdctl(c, "get", "--prefix", "/coreos.com/network/subnets/", "--keys-only");
        Assert.Equal(3, keys.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);

        // Each sees the other two (the watch), and a node leaving (its key deleted) is removed live.
        foreach (NodeProcess n in nodes)
        {
            Assert.True(n.WaitForLine("via 192.0.2.", TimeSpan.FromSeconds(15)) is not null, n.Output);
        }
        Assert.True(SpinUntil(() => nodes[0].Lines.Count(l => l.Contains("Subnet added:", StringComparison.Ordinal)) >= 2, 20), nodes[0].Output);
        string node3Subnet = subnets[2].Replace(".1/24", ".0-24", StringComparison.Ordinal);
        nodes[2].Stop(TimeSpan.FromSeconds(10));
        Etcdctl(c, "del", $"/coreos.com/network/subnets/{node3Subnet}");
        Assert.True(nodes[0].WaitForLine($"Subnet removed: {subnets[2].Replace(".1/24", ".0/24", StringComparison.Ordinal)}", TimeSpan.FromSeconds(20)) is not null, nodes[0].Output);
    }

    [Fact]
    public void Etcd_errors_are_one_line_and_create_nothing()
    {
        using var c = new Cluster();
        StartEtcd(c);
        c.Topology.AddNode(1, withPod: false);
        ProcessRunner.Result noConfig = c.Topology.Exec(c.Topology.Node(1), [.. SelfCommand.Prefix(), "run", "--etcd-endpoints", Endpoint,
            "--public-ip", "192.0.2.1", "--subnet-file", c.Path_("subnet.env"), "--control-socket", c.ControlSocket(1)]);
        BadInputTests.AssertOneLine(noConfig.ExitCode, noConfig.Stderr, $"dataplane: etcd {Endpoint}: no network config at /coreos.com/network/config");

        ProcessRunner.Result unreachable = c.Topology.Exec(c.Topology.Node(1), [.. SelfCommand.Prefix(), "run", "--etcd-endpoints", "http://192.0.2.99:2379",
            "--etcd-timeout", "2", "--public-ip", "192.0.2.1", "--subnet-file", c.Path_("subnet.env"), "--control-socket", c.ControlSocket(1)]);
        // Unreachable says so, and how: no host answers at that address.
        BadInputTests.AssertOneLine(unreachable.ExitCode, unreachable.Stderr, "dataplane: etcd http://192.0.2.99:2379: not reachable within 2 s (cannot connect to 192.0.2.99:2379");

        Etcdctl(c, "put", "/coreos.com/network/config", """{"Network":"10.244.0.0/16","Backend":{"Type":"geneve"}}""");
        ProcessRunner.Result badConfig = c.Topology.Exec(c.Topology.Node(1), [.. SelfCommand.Prefix(), "run", "--etcd-endpoints", Endpoint,
            "--public-ip", "192.0.2.1", "--subnet-file", c.Path_("subnet.env"), "--control-socket", c.ControlSocket(1)]);
        BadInputTests.AssertOneLine(badConfig.ExitCode, badConfig.Stderr, "etcd /coreos.com/network/config.Backend.Type: unknown backend 'geneve'");
        Assert.DoesNotContain("flannel", c.Topology.Ip(c.Topology.Node(1), "link", "show"));
        Assert.False(File.Exists(c.Path_("subnet.env")));
    }

    /// <summary>
    /// etcd with authentication on, and flannel's keys under another prefix: a user whose role may
    /// read and write that prefix only (as an operator gives flanneld one). Two nodes with
    /// <c>--etcd-prefix</c>, <c>--etcd-username</c> and <c>--etcd-password</c> write their leases
    /// there, see each other (through the watch, which needs its own token) and carry a ping; a
    /// wrong password is one line.
    /// </summary>
    [Fact]
    public void Etcd_with_a_user_and_password_and_a_custom_prefix()
    {
        using var c = new Cluster();
        StartEtcd(c);
        c.Topology.AddNode(1);
        c.Topology.AddNode(2);
        Etcdctl(c, "user", "add", "root", "--new-user-password", "rootpw");
        Etcdctl(c, "user", "grant-role", "root", "root");
        Etcdctl(c, "role", "add", "flannel");
        Etcdctl(c, "role", "grant-permission", "flannel", "--prefix=true", "readwrite", "/example.com/net/");
        Etcdctl(c, "user", "add", "flannel", "--new-user-password", "secret");
        Etcdctl(c, "user", "grant-role", "flannel", "flannel");
        Etcdctl(c, "auth", "enable");
        Etcdctl(c, "--user", "root:rootpw", "put", "/example.com/net/config", VxlanConfig);
        foreach (int i in new[] { 1, 2 })
        {
            // The leases flanneld left there (the pods sit in these subnets): reused by the nodes.
            Etcdctl(c, "--user", "root:rootpw", "put", $"/example.com/net/subnets/10.244.{i}.0-24",
                $$$"""{"PublicIP":"192.0.2.{{{i}}}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:{{{i}}}{{{i}}}:{{{i}}}{{{i}}}:{{{i}}}{{{i}}}:{{{i}}}{{{i}}}:{{{i}}}{{{i}}}"}}""");
        }
        string[] auth = ["--etcd-prefix", "/example.com/net", "--etcd-username", "flannel"];

        ProcessRunner.Result wrong = c.Topology.Exec(c.Topology.Node(1), [.. SelfCommand.Prefix(), "run", "--etcd-endpoints", Endpoint, .. auth, "--etcd-password", "nope",
            "--etcd-timeout", "3", "--public-ip", "192.0.2.1", "--subnet-file", c.Path_("subnet.env"), "--control-socket", c.ControlSocket(1)]);
        Assert.Equal(1, wrong.ExitCode);
        Assert.Single(wrong.Stderr.Trim().Split('\n'));
        Assert.True(wrong.Stderr.Contains("authentication failed", StringComparison.OrdinalIgnoreCase), wrong.Stderr);

        NodeProcess n1 = StartNode(c, 1, [.. auth, "--etcd-password", "secret"]);
        StartNode(c, 2, [.. auth, "--etcd-password", "secret"]);
        Assert.True(n1.WaitForLine("Subnet added: 10.244.2.0/24 via 192.0.2.2", TimeSpan.FromSeconds(10)) is not null, n1.Output);
        Assert.Equal(0, c.Ping(c.Topology.Pod(1), Topology.PodIp(2)).ExitCode);
        string keys = Etcdctl(c, "--user", "root:rootpw", "get", "--prefix", "--keys-only", "/");
        Assert.Equal(2, keys.Split('\n').Count(k => k.StartsWith("/example.com/net/subnets/10.244.", StringComparison.Ordinal)));
        Assert.DoesNotContain("/coreos.com/", keys, StringComparison.Ordinal);
    }

    [Fact]
    public void A_node_joining_and_one_leaving_while_a_transfer_between_two_others_stays_intact()
    {
        using var c = new Cluster();
        StartEtcd(c);
        c.Topology.AddNode(1);
        c.Topology.AddNode(2);
        c.Topology.AddNode(3, withPod: false);
        c.Topology.AddNode(4, withPod: false);
        Etcdctl(c, "put", "/coreos.com/network/config", VxlanConfig);
        PutFlanneldLeases(c);
        // Node 1 re-lists only once an hour: whatever it learns below, it learns from the watch.
        NodeProcess n1 = StartNode(c, 1, "--etcd-resync", "3600");
        StartNode(c, 2);
        NodeProcess leaving = StartNode(c, 4);

        Transfer transfer = c.StartTimedTransfer(1, 2, seconds: 8);
        Thread.Sleep(500);
        NodeProcess joining = StartNode(c, 3); // takes a free subnet while the transfer runs
        // Within 3 s, and only the watch can tell node 1 (its re-list is an hour away).
        Assert.True(n1.WaitForLine("via 192.0.2.3", TimeSpan.FromSeconds(3)) is not null, n1.Output);
        string leavingSubnet = Regex.Match(File.ReadAllText(c.Path_("node4-subnet.env")), @"FLANNEL_SUBNET=10\.244\.(\d+)\.1/24").Groups[1].Value;
        leaving.Stop(TimeSpan.FromSeconds(10));
        Etcdctl(c, "del", $"/coreos.com/network/subnets/10.244.{leavingSubnet}.0-24"); // as its lease expiring would
        Assert.True(n1.WaitForLine($"Subnet removed: 10.244.{leavingSubnet}.0/24", TimeSpan.FromSeconds(20)) is not null, n1.Output);
        transfer.AssertIntact(TimeSpan.FromSeconds(60));
        Assert.False(joining.HasExited);
    }

    [Fact]
    public void Our_lease_deleted_from_etcd_is_written_again()
    {
        using var c = new Cluster();
        StartEtcd(c);
        c.Topology.AddNode(1, withPod: false);
        Etcdctl(c, "put", "/coreos.com/network/config", VxlanConfig);
        NodeProcess n = StartNode(c, 1);
        string key = Etcdctl(c, "get", "--prefix", "/coreos.com/network/subnets/", "--keys-only").Trim();
        Etcdctl(c, "del", key);
        Assert.True(n.WaitForLine("Lease re-acquired:", TimeSpan.FromSeconds(20)) is not null, n.Output);
        Assert.Equal(key, Etcdctl(c, "get", "--prefix", "/coreos.com/network/subnets/", "--keys-only").Trim()); // the same subnet
    }

    [Fact]
    public void A_short_lived_lease_is_renewed_before_it_expires()
    {
        using var c = new Cluster();
        StartEtcd(c);
        c.Topology.AddNode(1, withPod: false);
        Etcdctl(c, "put", "/coreos.com/network/config", VxlanConfig);
        // A 4 s lease renewed 2 s (0.0333 min) before expiry: over 12 s it must be renewed several times and never lapse.
        NodeProcess n = StartNode(c, 1, "--etcd-lease-ttl", "4", "--subnet-lease-renew-margin", "0.0333");
        for (int t = 0; t < 12; t++)
        {
            Thread.Sleep(1000);
            Assert.Single(Etcdctl(c, "get", "--prefix", "/coreos.com/network/subnets/", "--keys-only").Split('\n', StringSplitOptions.RemoveEmptyEntries));
        }
        Assert.True(n.Lines.Count(l => l.Contains("Lease renewed:", StringComparison.Ordinal)) >= 3, n.Output);
    }

    [Fact]
    public void Etcd_stopped_during_a_transfer_then_started_again()
    {
        using var c = new Cluster();
        NodeProcess etcd = StartEtcd(c);
        c.Topology.AddNode(1);
        c.Topology.AddNode(2);
        Etcdctl(c, "put", "/coreos.com/network/config", VxlanConfig);
        PutFlanneldLeases(c);
        NodeProcess n1 = StartNode(c, 1, "--etcd-timeout", "1");
        StartNode(c, 2, "--etcd-timeout", "1");

        Transfer transfer = c.StartTimedTransfer(1, 2, seconds: 14);
        Intervals intervals = c.StartIntervals(2, 1, seconds: 14);
        Thread.Sleep(500);
        etcd.Stop(TimeSpan.FromSeconds(10));
        Assert.True(n1.WaitForLine("forwarding on the last known subnets", TimeSpan.FromSeconds(20)) is not null, n1.Output);
        Thread.Sleep(3000); // seconds of traffic with etcd away, inside both transfers
        Assert.False(transfer.Sender.HasExited || intervals.Client.HasExited, "the transfers ended before etcd came back: make them longer so the test proves something");
        RestartEtcd(c);
        Assert.True(n1.WaitForLine("reachable again", TimeSpan.FromSeconds(40)) is not null, n1.Output);
        transfer.AssertIntact(TimeSpan.FromSeconds(60));
        intervals.AssertEverySecondCarried(1_000_000); // the other direction, second by second, through the whole outage
        Assert.False(n1.HasExited);
        Assert.Contains("10.244.1.0-24", Etcdctl(c, "get", "--prefix", "/coreos.com/network/subnets/", "--keys-only")); // our lease still held
    }

    [Fact]
    public void Readiness_ip_masq_and_a_kernel_node_programmed_from_the_etcd_leases()
    {
        using var c = new Cluster();
        StartEtcd(c);
        c.Topology.AddNode(1);
        c.Topology.AddNode(2);
        Etcdctl(c, "put", "/coreos.com/network/config", VxlanConfig);
        PutFlanneldLeases(c);

        // Readiness on a test NOTIFY_SOCKET, as systemd's Type=notify receives it.
        string notifyPath = c.Path_("notify.sock");
        using var notify = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Dgram, System.Net.Sockets.ProtocolType.Unspecified);
        notify.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(notifyPath));
        notify.ReceiveTimeout = 30_000;
        NodeProcess n1 = c.Topology.Start(c.Topology.Node(1), [Require.Tool("env", "coreutils"), $"NOTIFY_SOCKET={notifyPath}", .. SelfCommand.Prefix(), "run",
            "--etcd-endpoints", Endpoint, "--public-ip", "192.0.2.1", "--subnet-file", c.Path_("node1-subnet.env"), "--control-socket", c.ControlSocket(1),
            "--vtep-mac-file", c.Path_("node1.vtepmac"), "--ip-masq"], "node1");
        byte[] buf = new byte[512];
        string ready = System.Text.Encoding.UTF8.GetString(buf, 0, notify.Receive(buf));
        Assert.StartsWith("READY=1", ready);
        Assert.Contains("FLANNEL_IPMASQ=true", File.ReadAllText(c.Path_("node1-subnet.env"))); // written before READY=1

        // flanneld's rules, inside the node's namespace only.
        string iptables = Require.Tool("iptables", "iptables");
        ProcessRunner.Result nat = c.Topology.Exec(c.Topology.Node(1), [iptables, "-t", "nat", "-S"]);
        Assert.Contains("-A POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG", nat.Stdout);
        Assert.Contains("-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully", nat.Stdout);
        Assert.Contains("-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment \"flanneld forward\" -j ACCEPT", c.Topology.Exec(c.Topology.Node(1), [iptables, "-S"]).Stdout);

        // Node 2 is a kernel flannel.1 programmed from what etcd holds (its lease and ours).
        string ours = Etcdctl(c, "get", "/coreos.com/network/subnets/10.244.1.0-24", "--print-value-only");
        string ourMac = Regex.Match(ours, "\"VtepMAC\":\"([0-9a-f:]{17})\"").Groups[1].Value;
        c.ProgramKernelVxlanNode(2, "0e:22:22:22:22:22", [(1, ourMac)]);
        ProcessRunner.Result ping = c.Ping(c.Topology.Pod(1), Topology.PodIp(2));
        Assert.True(ping.ExitCode == 0, ping.Stdout + n1.Output);
        c.StartTransfer(2, 1, 16L << 20).AssertIntact(TimeSpan.FromSeconds(60));

        // Stop: STOPPING=1, exit 0, rules gone.
        Assert.Equal(0, n1.Stop(TimeSpan.FromSeconds(10)));
        string stopping = System.Text.Encoding.UTF8.GetString(buf, 0, notify.Receive(buf));
        Assert.Equal("STOPPING=1", stopping);
        Assert.DoesNotContain("FLANNEL", c.Topology.Exec(c.Topology.Node(1), [iptables, "-t", "nat", "-S"]).Stdout);
        Assert.DoesNotContain("FLANNEL", c.Topology.Exec(c.Topology.Node(1), [iptables, "-S"]).Stdout);
    }

    [Fact]
    public void Etcd_over_tls_with_a_client_certificate()
    {
        using var c = new Cluster();
        c.Topology.AddNode(EtcdHost, withPod: false);
        c.Topology.AddNode(1, withPod: false);
        string d = c.Topology.WorkDir;
        // A throwaway CA, a server certificate for 192.0.2.100 and a client certificate.
        ProcessRunner.Result pki = ProcessRunner.Run("/bin/bash", ["-c", $"""
            set -e; cd {d}; o={Require.Tool("openssl", "openssl")}
            $o req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.crt -days 1 -subj /CN=test-ca 2>/dev/null
            for n in server client; do
              $o req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout $n.key -out $n.csr -subj /CN=$n 2>/dev/null
            done
            echo 'subjectAltName=IP:192.0.2.100' > server.ext; echo 'extendedKeyUsage=serverAuth' >> server.ext
            echo 'extendedKeyUsage=clientAuth' > client.ext
            for n in server client; do
              $o x509 -req -in $n.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out $n.crt -days 1 -extfile $n.ext 2>/dev/null
            done
            """]);
        Assert.True(pki.ExitCode == 0, pki.Stderr);
        const string tlsEndpoint = "https://192.0.2.100:2379";
        NodeProcess etcd = c.Topology.Start(c.Topology.Node(EtcdHost), [Require.Tool("etcd", "etcd-server"), "--data-dir", c.Path_("etcd"),
            "--listen-client-urls", tlsEndpoint, "--advertise-client-urls", tlsEndpoint, "--listen-peer-urls", "http://127.0.0.1:2380",
            "--cert-file", $"{d}/server.crt", "--key-file", $"{d}/server.key", "--trusted-ca-file", $"{d}/ca.crt", "--client-cert-auth"], "etcd");
        Assert.True(etcd.WaitForLine("ready to serve client requests", TimeSpan.FromSeconds(30)) is not null, etcd.Output);
        ProcessRunner.Result put = c.Topology.Exec(c.Topology.Node(EtcdHost), [Require.Tool("etcdctl", "etcd-client"), "--endpoints", tlsEndpoint,
            "--cacert", $"{d}/ca.crt", "--cert", $"{d}/client.crt", "--key", $"{d}/client.key", "put", "/coreos.com/network/config", VxlanConfig]);
        Assert.True(put.ExitCode == 0, put.Stderr);

        string[] common = ["run", "--etcd-endpoints", tlsEndpoint, "--etcd-timeout", "3", "--public-ip", "192.0.2.1",
            "--subnet-file", c.Path_("node1-subnet.env"), "--control-socket", c.ControlSocket(1), "--vtep-mac-file", c.Path_("node1.vtepmac")];
        // Without our certificate etcd refuses us: one line, nothing created.
        ProcessRunner.Result refused = c.Topology.Exec(c.Topology.Node(1), [.. SelfCommand.Prefix(), .. common, "--etcd-cafile", $"{d}/ca.crt"]);
        // ...and says it was refused, not unreachable.
        BadInputTests.AssertOneLine(refused.ExitCode, refused.Stderr, $"dataplane: etcd {tlsEndpoint}:");
        Assert.Contains("etcd refused our TLS connection", refused.Stderr);
        Assert.DoesNotContain("cannot connect", refused.Stderr);
        Assert.False(File.Exists(c.Path_("node1-subnet.env")));

        NodeProcess n = c.Topology.Start(c.Topology.Node(1), [.. SelfCommand.Prefix(), .. common,
            "--etcd-cafile", $"{d}/ca.crt", "--etcd-certfile", $"{d}/client.crt", "--etcd-keyfile", $"{d}/client.key"], "node1");
        Assert.True(n.WaitForLine("Ready:", TimeSpan.FromSeconds(30)) is not null, n.Output);
        Assert.Contains("Lease acquired: 10.244.", n.Output);
    }

    private static bool SpinUntil(Func<bool> condition, int seconds)
    {
        var until = DateTime.UtcNow.AddSeconds(seconds);
        while (!condition())
        {
            if (DateTime.UtcNow > until)
            {
                return false;
            }
            Thread.Sleep(100);
        }
        return true;
    }
}
