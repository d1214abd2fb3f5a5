using System.Text.Json.Nodes;
using Dataplane.Lab;
using Dataplane.TestSupport;

namespace Dataplane.Integration.Tests;

/// <summary>
/// flanneld's host rules beside the device and their flags: the FORWARD rules on by default
/// (<c>--iptables-forward-rules</c>), rules someone removed put back within <c>--iptables-resync</c>,
/// <c>--ip-masq-fully-random-disable</c>, <c>--ip-blackhole-route</c>, and the nftables variant of
/// a network config with <c>EnableNFTables</c>. Each checked by what it is for where it can be.
/// </summary>
public class HostRulesTests
{
    private const string Fwd = "-m comment --comment \"flanneld forward\"";

    [Fact]
    public void Forward_rules_are_on_by_default_and_let_pods_through_a_drop_policy_and_false_leaves_forward_alone()
    {
        using Cluster c = Cluster.WithTwoNodes();
        string iptables = Require.Tool("iptables", "iptables");
        NodeProcess one = c.StartNode(1, "vxlan");
        c.StartNode(2, "vxlan", null, "--iptables-forward-rules=false");
        string node1 = c.Topology.Node(1), node2 = c.Topology.Node(2);
        Assert.Equal(["-N FLANNEL-FWD", $"-A FLANNEL-FWD -s 10.244.0.0/16 {Fwd} -j ACCEPT", $"-A FLANNEL-FWD -d 10.244.0.0/16 {Fwd} -j ACCEPT"],
            Lines(c.Topology.Exec(node1, [iptables, "-S", "FLANNEL-FWD"]).Stdout));
        Assert.Contains($"-A FORWARD {Fwd} -j FLANNEL-FWD", c.Topology.Exec(node1, [iptables, "-S", "FORWARD"]).Stdout);
        Assert.Contains("Forward rules in filter FLANNEL-FWD", one.Output);
        Assert.NotEqual(0, c.Topology.Exec(node2, [iptables, "-S", "FLANNEL-FWD"]).ExitCode); // =false: no chain
        Assert.DoesNotContain("FLANNEL-FWD", c.Topology.Exec(node2, [iptables, "-S", "FORWARD"]).Stdout);

        // What they are for: node 1's FORWARD policy DROP (as Docker sets it) still forwards the overlay;
        // node 2's, with no rules of ours, does not.
        c.Topology.Exec(node1, [iptables, "-P", "FORWARD", "DROP"]);
        Assert.Equal(0, c.Ping(c.Topology.Pod(1), "10.244.2.2", count: 2).ExitCode);
        c.Topology.Exec(node2, [iptables, "-P", "FORWARD", "DROP"]);
        Assert.NotEqual(0, c.Ping(c.Topology.Pod(1), "10.244.2.2", count: 2).ExitCode);

        Assert.Equal(0, one.Stop(TimeSpan.FromSeconds(10))); // --on-exit remove: gone with the node
        Assert.NotEqual(0, c.Topology.Exec(node1, [iptables, "-S", "FLANNEL-FWD"]).ExitCode);
    }

    [Fact]
    public void Rules_someone_removed_come_back_within_the_resync_period()
    {
        using Cluster c = Cluster.WithTwoNodes();
        string iptables = Require.Tool("iptables", "iptables");
        NodeProcess one = c.StartNode(1, "vxlan", null, "--ip-masq", "--iptables-resync", "1");
        string node1 = c.Topology.Node(1);
        string masq = c.Topology.Exec(node1, [iptables, "-t", "nat", "-S", "FLANNEL-POSTRTG"]).Stdout;
        string forward = c.Topology.Exec(node1, [iptables, "-S", "FORWARD"]).Stdout;

        c.Topology.Exec(node1, [iptables, "-t", "nat", "-D", "FLANNEL-POSTRTG", "2"]); // a rule out of the middle
        c.Topology.Exec(node1, [iptables, "-D", "FORWARD", "-m", "comment", "--comment", "flanneld forward", "-j", "FLANNEL-FWD"]); // the jump
        Assert.NotEqual(masq, c.Topology.Exec(node1, [iptables, "-t", "nat", "-S", "FLANNEL-POSTRTG"]).Stdout);
        Assert.True(SpinWait.SpinUntil(() => c.Topology.Exec(node1, [iptables, "-t", "nat", "-S", "FLANNEL-POSTRTG"]).Stdout == masq
            && c.Topology.Exec(node1, [iptables, "-S", "FORWARD"]).Stdout == forward, TimeSpan.FromSeconds(4)), "the rules did not come back:\n" + one.Output);
        Assert.NotNull(one.WaitForLine("iptables nat FLANNEL-POSTRTG: 1 of 7 rules gone or changed: put back", TimeSpan.FromSeconds(2)));
        Assert.NotNull(one.WaitForLine("iptables filter FLANNEL-FWD: 1 of 3 rules gone or changed: put back", TimeSpan.FromSeconds(2)));
    }

    [Fact]
    public void Masquerade_without_random_fully_when_disabled()
    {
        using var c = new Cluster();
        string iptables = Require.Tool("iptables", "iptables");
        c.StartTwoNodes("vxlan", "--ip-masq", "--ip-masq-fully-random-disable");
        string rules = c.Topology.Exec(c.Topology.Node(1), [iptables, "-t", "nat", "-S", "FLANNEL-POSTRTG"]).Stdout;
        Assert.Equal(2, Lines(rules).Count(l => l.EndsWith("-j MASQUERADE", StringComparison.Ordinal)));
        Assert.DoesNotContain("random-fully", rules);
    }

    /// <summary>
    /// --ip-blackhole-route: on a node whose subnet has no other route (no CNI bridge), a blackhole
    /// route for it, put back when deleted, removed at the stop; where a bridge's route covers the
    /// subnet, none (what the blackhole is for is already done).
    /// </summary>
    [Fact]
    public void The_blackhole_route_covers_our_subnet_when_nothing_else_does()
    {
        using var c = new Cluster();
        c.Topology.AddNode(1, withPod: false);
        c.Topology.AddNode(2);
        new ClusterFileBuilder().Node(1).Node(2).WriteTo(c.LeasesPath);
        NodeProcess one = c.StartNode(1, "vxlan", null, "--ip-blackhole-route", "--iptables-resync", "1");
        NodeProcess two = c.StartNode(2, "vxlan", null, "--ip-blackhole-route");
        string node1 = c.Topology.Node(1);
        Assert.Equal("blackhole 10.244.1.0/24", c.Topology.Ip(node1, "route", "show", "type", "blackhole").Trim());
        Assert.Contains("a route for the subnet is already there", two.Output);
        Assert.Equal("", c.Topology.Ip(c.Topology.Node(2), "route", "show", "type", "blackhole").Trim());

        c.Topology.Ip(node1, "route", "del", "blackhole", "10.244.1.0/24");
        Assert.True(SpinWait.SpinUntil(() => c.Topology.Ip(node1, "route", "show", "type", "blackhole").Contains("10.244.1.0/24", StringComparison.Ordinal),
            TimeSpan.FromSeconds(4)), one.Output);
        Assert.Equal(0, one.Stop(TimeSpan.FromSeconds(10)));
        Assert.Equal("", c.Topology.Ip(node1, "route", "show", "type", "blackhole").Trim());
    }

    /// <summary>
    /// EnableNFTables: flanneld's nftables rules (table ip flannel-ipv4, chains postrtg and forward)
    /// instead of iptables chains; masquerading works as with iptables (tshark on node 2 sees node 1's
    /// address for pod 1's echo to it, pod 2 sees pod 1's); a rule deleted comes back; the stop removes the table.
    /// </summary>
    [Fact]
    public void With_enable_nftables_the_rules_are_flanneld_s_nftables_table()
    {
        using var c = new Cluster();
        string nft = Require.Tool("nft", "nftables");
        string iptables = Require.Tool("iptables", "iptables");
        c.Topology.AddNode(1);
        c.Topology.AddNode(2);
        JsonObject file = JsonNode.Parse(new ClusterFileBuilder().Node(1).Node(2).ToJson())!.AsObject();
        file["config"]!["EnableNFTables"] = true;
        File.WriteAllText(c.LeasesPath, file.ToJsonString());
        NodeProcess one = c.StartNode(1, "vxlan", null, "--ip-masq", "--iptables-resync", "1");
        c.StartNode(2, "vxlan");
        string node1 = c.Topology.Node(1);
        string postrtg = c.Topology.Exec(node1, [nft, "list", "chain", "ip", "flannel-ipv4", "postrtg"]).Stdout;
        string[] rules = [.. Lines(postrtg).Where(l => !l.StartsWith("table", StringComparison.Ordinal) && !l.StartsWith("chain", StringComparison.Ordinal)
            && !l.StartsWith("type", StringComparison.Ordinal) && !l.StartsWith("comment", StringComparison.Ordinal) && l != "}")];
        Assert.Equal(
            [
                "meta mark 0x00004000 return",
                "ip saddr 10.244.1.0/24 ip daddr 10.244.0.0/16 return",
                "ip saddr 10.244.0.0/16 ip daddr 10.244.1.0/24 return",
                "ip saddr != 10.244.1.0/24 ip daddr 10.244.0.0/16 return",
                "ip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random",
                "ip saddr != 10.244.0.0/16 ip daddr 10.244.0.0/16 masquerade fully-random",
            ], rules);
        Assert.Contains("type nat hook postrouting priority srcnat", postrtg);
        string forward = c.Topology.Exec(node1, [nft, "list", "chain", "ip", "flannel-ipv4", "forward"]).Stdout;
        Assert.Contains("ip saddr 10.244.0.0/16 accept", forward);
        Assert.Contains("ip daddr 10.244.0.0/16 accept", forward);
        Assert.NotEqual(0, c.Topology.Exec(node1, [iptables, "-t", "nat", "-S", "FLANNEL-POSTRTG"]).ExitCode); // no iptables chains

        Assert.Equal(["10.244.1.2"], IpMasqTests.EchoSources(c, c.Topology.Pod(2), Topology.PodIp(2)));
        Assert.Equal(["192.0.2.1"], IpMasqTests.EchoSources(c, c.Topology.Node(2), Topology.UnderlayIp(2)));

        c.Topology.Exec(node1, [nft, "flush", "chain", "ip", "flannel-ipv4", "postrtg"]);
        Assert.True(SpinWait.SpinUntil(() => c.Topology.Exec(node1, [nft, "list", "chain", "ip", "flannel-ipv4", "postrtg"]).Stdout == postrtg,
            TimeSpan.FromSeconds(4)), one.Output);
        Assert.Equal(0, one.Stop(TimeSpan.FromSeconds(10)));
        Assert.NotEqual(0, c.Topology.Exec(node1, [nft, "list", "table", "ip", "flannel-ipv4"]).ExitCode);
    }

    private static string[] Lines(string text) => [.. text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)];
}
