using Dataplane.Lab;
using Dataplane.Node;
using Dataplane.TestSupport;

namespace Dataplane.Integration.Tests;

/// <summary>
/// <c>--ip-masq</c> as flanneld writes it (pkg/trafficmngr/iptables masqRules), and what it is for,
/// read by tshark on the receiving side: pod-to-pod traffic keeps the pod's address, traffic leaving
/// the overlay is masqueraded to the node's, and traffic kube-proxy marked (0x4000) is left alone.
/// </summary>
public class IpMasqTests
{
    [Fact]
    public void Flanneld_s_chain_in_its_order_and_only_traffic_leaving_the_overlay_is_masqueraded()
    {
        using var c = new Cluster();
        string iptables = Require.Tool("iptables", "iptables");
        c.StartTwoNodes("vxlan", "--ip-masq");
        string node1 = c.Topology.Node(1);
        string random = ProcessRunner.Run(iptables, ["-j", "MASQUERADE", "--help"]).Stdout.Contains("random-fully", StringComparison.Ordinal) ? " --random-fully" : "";
        const string m = "-m comment --comment \"flanneld masq\"";
        Assert.Equal(
            [
                "-N FLANNEL-POSTRTG",
                $"-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 {m} -j RETURN",
                $"-A FLANNEL-POSTRTG -s 10.244.1.0/24 -d 10.244.0.0/16 {m} -j RETURN",
                $"-A FLANNEL-POSTRTG -s 10.244.0.0/16 -d 10.244.1.0/24 {m} -j RETURN",
                $"-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.1.0/24 {m} -j RETURN",
                $"-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 {m} -j MASQUERADE{random}",
                $"-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.0.0/16 {m} -j MASQUERADE{random}",
            ],
            c.Topology.Exec(node1, [iptables, "-t", "nat", "-S", "FLANNEL-POSTRTG"]).Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains($"-A POSTROUTING {m} -j FLANNEL-POSTRTG", c.Topology.Exec(node1, [iptables, "-t", "nat", "-S", "POSTROUTING"]).Stdout);

        // Pod to pod: pod 2 sees pod 1's own address.
        Assert.Equal(["10.244.1.2"], EchoSources(c, c.Topology.Pod(2), Topology.PodIp(2)));
        // Leaving the overlay (pod 1 to node 2's underlay address): node 2 sees node 1's address.
        Assert.Equal(["192.0.2.1"], EchoSources(c, c.Topology.Node(2), Topology.UnderlayIp(2)));
        // Marked by kube-proxy (its masquerade bit): left for kube-proxy, so the pod's address goes out as it is.
        c.Topology.Exec(node1, [iptables, "-t", "mangle", "-A", "PREROUTING", "-s", Topology.PodIp(1), "-d", Topology.UnderlayIp(2),
            "-j", "MARK", "--set-xmark", "0x4000/0x4000"]);
        Assert.Equal(["10.244.1.2"], EchoSources(c, c.Topology.Node(2), Topology.UnderlayIp(2)));
    }

    /// <summary>The sources of the echo requests pod 1 sends to <paramref name="target"/>, as tshark captures them in <paramref name="netns"/>.</summary>
    internal static string[] EchoSources(Cluster c, string netns, string target)
    {
        string tshark = Require.Tool("tshark", "tshark");
        NodeProcess capture = c.Topology.Start(netns, [tshark, "-i", "eth0", "-l", "-f", $"icmp[icmptype] == icmp-echo and dst host {target}",
            "-a", "duration:6", "-T", "fields", "-e", "ip.src"], "tshark");
        try
        {
            Assert.True(capture.WaitForLine("Capturing on", TimeSpan.FromSeconds(10)) is not null, capture.Output);
            ProcessRunner.Result ping = c.Ping(c.Topology.Pod(1), target, count: 2);
            Assert.True(capture.WaitForExit(TimeSpan.FromSeconds(15)), capture.Output);
            string[] sources = [.. capture.Lines.Where(l => System.Net.IPAddress.TryParse(l, out _)).Distinct()];
            Assert.True(sources.Length > 0, $"no echo request to {target} captured (ping: {ping.Stdout})\n{capture.Output}");
            return sources;
        }
        finally
        {
            capture.Kill();
        }
    }
}
