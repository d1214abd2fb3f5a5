using System.Text.Json;
using Dataplane.Lab;
using Dataplane.Node;
using Dataplane.TestSupport;
using Xunit.Abstractions;

namespace Dataplane.Integration.Tests;

/// <summary>
/// <c>dataplane doctor</c> on nodes in namespaces: a healthy node passes every check, and each
/// failure is produced for real on the host (not simulated) and named with its fix.
/// </summary>
public class DoctorTests(ITestOutputHelper output)
{
    private static ProcessRunner.Result Doctor(Cluster c, string cniDir, params string[] extra) =>
        c.Topology.Exec(c.Topology.Node(1), [.. SelfCommand.Prefix(), "doctor", "--control-socket", c.ControlSocket(1), "--cni-dir", cniDir, .. extra]);

    private static string CniDir(Cluster c, int? mtu)
    {
        string dir = c.Path_("cni");
        Directory.CreateDirectory(dir);
        string delegateMtu = mtu is int m ? $", \"mtu\": {m}" : "";
        File.WriteAllText(Path.Combine(dir, "10-flannel.conflist"),
            "{\"name\": \"cbr0\", \"cniVersion\": \"0.3.1\", \"plugins\": [" +
            "{\"type\": \"flannel\", \"delegate\": {\"hairpinMode\": true, \"isDefaultGateway\": true" + delegateMtu + "}}, " +
            "{\"type\": \"portmap\", \"capabilities\": {\"portMappings\": true}}]}");
        return dir;
    }

    private static string Line(ProcessRunner.Result r, string status, string check) =>
        r.Stdout.Split('\n').FirstOrDefault(l => System.Text.RegularExpressions.Regex.IsMatch(l, $@"^{status}\s+{System.Text.RegularExpressions.Regex.Escape(check)}\s"))
        ?? throw new Xunit.Sdk.XunitException($"no {status} line for {check}:\n{r.Stdout}\n{r.Stderr}");

    [Theory]
    [InlineData("udp")]
    [InlineData("vxlan")]
    public void A_healthy_node_passes_every_check(string backend)
    {
        using var c = new Cluster();
        c.StartTwoNodes(backend);
        ProcessRunner.Result r = Doctor(c, CniDir(c, mtu: null));
        output.WriteLine(r.Stdout);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        foreach (string check in new[] { "node", "ip-forward", "kernel-flannel", "rp-filter", "forward-policy", "device", "device-address",
            "network-route", "conflicting-route", "udp-port", "subnet-env", "cni-config", "lease-source" })
        {
            Line(r, "PASS", check);
        }
        Assert.Contains("10.244.2.0/24 via 192.0.2.2: 10.244.2.0 answers in", Line(r, "PASS", "peer"));
        Assert.DoesNotContain("FAIL", r.Stdout);

        ProcessRunner.Result json = Doctor(c, CniDir(c, mtu: null), "--json");
        using JsonDocument doc = JsonDocument.Parse(json.Stdout);
        Assert.True(doc.RootElement.GetProperty("ok").GetBoolean());
        Assert.All(doc.RootElement.GetProperty("checks").EnumerateArray(), e => Assert.Equal("PASS", e.GetProperty("status").GetString()));
    }

    /// <summary>A dual-stack node: its subnet.env with the IPv6 lines passes, and IPv6 forwarding is checked.</summary>
    [Fact]
    public void A_dual_stack_node_is_checked_for_ipv6_forwarding()
    {
        using var c = new Cluster();
        c.DualStackPair();
        c.StartNode(1, "vxlan");
        c.StartNode(2, "vxlan");
        ProcessRunner.Result r = Doctor(c, CniDir(c, mtu: null));
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        Line(r, "PASS", "ipv6-forward");
        Line(r, "PASS", "subnet-env");

        c.Topology.Exec(c.Topology.Node(1), ["/bin/sh", "-c", "echo 0 > /proc/sys/net/ipv6/conf/all/forwarding"]);
        r = Doctor(c, CniDir(c, mtu: null));
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("sysctl -w net.ipv6.conf.all.forwarding=1", Line(r, "FAIL", "ipv6-forward"));
    }

    [Fact]
    public void A_broken_node_gets_each_failure_named_with_its_fix()
    {
        using var c = new Cluster();
        var (_, two) = c.StartTwoNodes("udp", "--iptables-forward-rules=false"); // no FLANNEL-FWD: the DROP policy below bites
        string n1 = c.Topology.Node(1);
        string iptables = Require.Tool("iptables", "iptables");

        // What goes wrong on real nodes, done for real in node 1's namespace:
        c.Topology.Exec(n1, ["/bin/sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward"]);
        c.Topology.Exec(n1, [iptables, "-P", "FORWARD", "DROP"]);
        // kube-proxy in IPVS mode binds addresses to the down dummy kube-ipvs0 (any link type here).
        c.Topology.Ip(n1, "link", "add", "kube-ipvs0", "type", "bridge");
        c.Topology.Ip(n1, "addr", "add", "10.244.3.7/32", "dev", "kube-ipvs0");
        // A kernel flannel.1 beside our flannel0 (flanneld was never stopped), its checksum offload off.
        c.Topology.Ip(n1, "link", "add", "flannel.1", "type", "vxlan", "id", "1", "dstport", "8472");
        c.Topology.Exec(n1, [Require.Tool("ethtool", "ethtool"), "-K", "flannel.1", "tx-checksum-ip-generic", "off"]);
        // A peer's subnet routed elsewhere, and a node that stopped.
        c.Topology.Ip(n1, "link", "add", "stray0", "type", "bridge");
        c.Topology.Ip(n1, "link", "set", "stray0", "up");
        c.Topology.Ip(n1, "route", "add", "10.244.2.128/25", "dev", "stray0");
        two.Stop(TimeSpan.FromSeconds(10));

        ProcessRunner.Result r = Doctor(c, CniDir(c, mtu: 9000));
        output.WriteLine(r.Stdout);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("fix: sysctl -w net.ipv4.ip_forward=1", Line(r, "FAIL", "ip-forward"));
        Assert.Contains("fix: iptables -A FORWARD -s 10.244.0.0/16 -j ACCEPT", Line(r, "FAIL", "forward-policy"));
        string[] conflicts = [.. r.Stdout.Split('\n').Where(l => System.Text.RegularExpressions.Regex.IsMatch(l, @"^FAIL\s+conflicting-route\s"))];
        Assert.Contains(conflicts, l => l.Contains("local 10.244.3.7/32 dev kube-ipvs0", StringComparison.Ordinal)
            && l.Contains("fix: ip route del table local local 10.244.3.7 dev kube-ipvs0", StringComparison.Ordinal));
        Assert.Contains(conflicts, l => l.Contains("10.244.2.128/25 dev stray0 takes peer subnet 10.244.2.0/24", StringComparison.Ordinal)
            && l.Contains("fix: ip route del 10.244.2.128/25 dev stray0", StringComparison.Ordinal));
        Assert.Contains("sets MTU 9000, above the device's 1472", Line(r, "FAIL", "cni-config"));
        Assert.Contains("fix: stop flanneld, then ip link del flannel.1", Line(r, "FAIL", "kernel-flannel"));
        Assert.Contains("fix: ethtool -K flannel.1 tx-checksum-ip-generic on", Line(r, "WARN", "vxlan-tx-checksum"));
        Assert.Contains("10.244.2.0/24 via 192.0.2.2: 10.244.2.0 does not answer", Line(r, "FAIL", "peer"));
        Assert.Contains("fix: check the node at 192.0.2.2", Line(r, "FAIL", "peer"));

        // Each fix, applied, clears its failure.
        c.Topology.Exec(n1, ["/bin/sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]);
        c.Topology.Exec(n1, [iptables, "-A", "FORWARD", "-s", "10.244.0.0/16", "-j", "ACCEPT"]);
        c.Topology.Ip(n1, "route", "del", "table", "local", "local", "10.244.3.7", "dev", "kube-ipvs0");
        c.Topology.Ip(n1, "route", "del", "10.244.2.128/25", "dev", "stray0");
        c.Topology.Ip(n1, "link", "del", "flannel.1");
        c.StartNode(2, "udp");
        ProcessRunner.Result after = Doctor(c, CniDir(c, mtu: 1472));
        output.WriteLine(after.Stdout);
        Assert.True(after.ExitCode == 0, after.Stdout);
    }

    [Fact]
    public void Without_a_running_node_it_says_so_and_fails()
    {
        using var c = new Cluster();
        c.Topology.AddNode(1, withPod: false);
        ProcessRunner.Result r = Doctor(c, c.Path_("no-cni"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains($"no node answers on {c.ControlSocket(1)}", Line(r, "FAIL", "node"));
        Line(r, "PASS", "ip-forward"); // the host-wide checks still run
    }
}
