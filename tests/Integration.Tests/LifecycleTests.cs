using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Dataplane.Lab;
using Dataplane.Node;
using Xunit.Abstractions;
using Dataplane.TestSupport;

namespace Dataplane.Integration.Tests;

/// <summary>
/// What a stop or a crash does with the device (<c>--on-exit</c>), and what the next start does with
/// what it finds: a device of ours that was kept is taken over with its address and route in place;
/// anything else in the way, a node still running on the device, or a kept device the kernel
/// cannot attach this start's queues to, is refused in one line that names it.
/// </summary>
public class LifecycleTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("tun")]
    [InlineData("packet")]
    public void With_on_exit_keep_a_stop_keeps_device_route_and_rules_and_the_next_start_takes_them_over(string source)
    {
        using Cluster c = Cluster.WithTwoNodes();
        string iptables = Require.Tool("iptables", "iptables");
        string node1 = c.Topology.Node(1);
        NodeProcess n1 = c.StartNode(1, "vxlan", null, "--source", source, "--on-exit", "keep", "--ip-masq");
        c.StartNode(2, "vxlan", null, "--source", source);

        Assert.Equal(0, n1.Stop(TimeSpan.FromSeconds(10)));
        Assert.Contains("Kept device flannel.1 with its address and route (--on-exit keep)", n1.Output);
        string link = c.Topology.Ip(node1, "-d", "link", "show", "flannel.1");
        Assert.Contains($"alias dataplane source={source} queues={Environment.ProcessorCount}", link);
        if (source == "tun")
        {
            Assert.Contains("persist on", link);
        }
        Assert.Contains("10.244.1.0/32", c.Topology.Ip(node1, "addr", "show", "flannel.1"));
        Assert.Contains("10.244.0.0/16 dev flannel.1", c.Topology.Ip(node1, "route", "show"));
        Assert.Contains("FLANNEL-POSTRTG", c.Topology.Exec(node1, [iptables, "-t", "nat", "-S"]).Stdout);
        Assert.False(File.Exists(c.ControlSocket(1)), "the control socket outlived its node");

        NodeProcess kept = c.StartNode(1, "vxlan", null, "--source", source, "--on-exit", "keep", "--ip-masq");
        Assert.Contains("Taking over flannel.1: ours, kept by an earlier run", kept.Output);
        ProcessRunner.Result ping = c.Ping(c.Topology.Pod(1), Topology.PodIp(2));
        Assert.True(ping.ExitCode == 0, ping.Stdout + ping.Stderr);
        Assert.Equal(0, kept.Stop(TimeSpan.FromSeconds(10)));

        // The default, remove, takes a kept device over as well, and removes everything at its stop.
        NodeProcess removing = c.StartNode(1, "vxlan", null, "--source", source, "--ip-masq");
        Assert.Contains("Taking over flannel.1", removing.Output);
        ping = c.Ping(c.Topology.Pod(1), Topology.PodIp(2));
        Assert.True(ping.ExitCode == 0, ping.Stdout + ping.Stderr);
        Assert.Equal(0, removing.Stop(TimeSpan.FromSeconds(10)));
        Assert.DoesNotContain("flannel.1", c.Topology.Ip(node1, "link", "show"));
        Assert.DoesNotContain("10.244.0.0/16", c.Topology.Ip(node1, "route", "show"));
        Assert.DoesNotContain("FLANNEL", c.Topology.Exec(node1, [iptables, "-t", "nat", "-S"]).Stdout);
    }

    /// <summary>
    /// A SIGKILL (an OOM kill) of a node run with --on-exit keep: the device and its route stay, and a
    /// node started at once takes them over; pings every 2 ms through the node lose no more than the
    /// restart lasts (kill to "Ready" of the new process), with a margin of half of that.
    /// </summary>
    [Theory]
    [InlineData("vxlan", "tun")]
    [InlineData("udp", "tun")]
    [InlineData("vxlan", "packet")]
    public void A_killed_node_keeps_device_and_route_and_loses_no_more_than_its_restart(string backend, string source)
    {
        using Cluster c = Cluster.WithTwoNodes();
        string pingTool = Require.Tool("ping", "iputils-ping");
        string node1 = c.Topology.Node(1), device = backend == "vxlan" ? "flannel.1" : "flannel0";
        NodeProcess n1 = c.StartNode(1, backend, null, "--source", source, "--on-exit", "keep");
        c.StartNode(2, backend, null, "--source", source);
        ProcessRunner.Result warm = c.Ping(c.Topology.Pod(2), Topology.PodIp(1));
        Assert.True(warm.ExitCode == 0, warm.Stdout);

        const int IntervalMs = 2, Count = 2500; // 5 s of pings, the restart in the middle
        NodeProcess pings = c.Topology.Start(c.Topology.Pod(2),
            [pingTool, "-i", "0.002", "-c", Count.ToString(CultureInfo.InvariantCulture), "-W", "1", Topology.PodIp(1)], "ping");
        Thread.Sleep(1500);
        var restart = Stopwatch.StartNew();
        n1.Kill();
        Assert.True(n1.WaitForExit(TimeSpan.FromSeconds(10)));
        string link = c.Topology.Ip(node1, "link", "show", device), routes = c.Topology.Ip(node1, "route", "show");
        NodeProcess again = c.StartNode(1, backend, null, "--source", source, "--on-exit", "keep");
        double restartMs = restart.Elapsed.TotalMilliseconds;
        Assert.True(pings.WaitForExit(TimeSpan.FromSeconds(30)), "ping did not end");

        Assert.Contains(device, link);
        Assert.Contains($"10.244.0.0/16 dev {device}", routes);
        Assert.Contains($"Taking over {device}", again.Output);
        Match m = Regex.Match(pings.Output, @"(\d+) packets transmitted, (\d+) received");
        Assert.True(m.Success, pings.Output);
        int sent = int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), received = int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture);
        double lostMs = (sent - received) * IntervalMs;
        output.WriteLine($"{backend}/{source}: restart {restartMs:F0} ms (kill to Ready), {sent - received} of {sent} pings lost ({lostMs} ms)");
        Assert.True(sent >= Count * 9 / 10, pings.Output);
        Assert.True(lostMs <= 1.5 * restartMs + 20, $"lost {lostMs} ms of pings for a restart of {restartMs:F0} ms");
    }

    /// <summary>
    /// A start that finds the running node's control socket asks it for a hand-over (HandoverTests);
    /// one with another control socket cannot, and the running node's attached queues refuse it.
    /// </summary>
    /// <summary>
    /// SIGINT (Ctrl-C in a terminal, run with SIGINT's default disposition as a terminal gives it)
    /// stops a node as SIGTERM does: exit 0, the counters said, the device removed.
    /// </summary>
    [Fact]
    public void Ctrl_c_stops_a_node_as_sigterm_does()
    {
        using var c = new Cluster();
        c.Program = [Require.Tool("env", "coreutils"), "--default-signal=INT", .. SelfCommand.Prefix()];
        var (n1, _) = c.StartTwoNodes("vxlan");
        Assert.Equal(0, c.Ping(c.Topology.Pod(1), Topology.PodIp(2), count: 2).ExitCode);
        Assert.Equal(0, n1.Stop(TimeSpan.FromSeconds(10), "INT"));
        Assert.Contains(n1.Lines, l => l.Contains("Stopping", StringComparison.Ordinal));
        Assert.Contains(n1.Lines, l => l.Contains("Counters: out ", StringComparison.Ordinal));
        Assert.NotEqual(0, c.Topology.Exec(c.Topology.Node(1), ["ip", "link", "show", "flannel.1"]).ExitCode); // removed
    }

    [Fact]
    public void A_second_start_on_a_running_nodes_device_is_refused_and_the_first_keeps_forwarding()
    {
        using Cluster c = Cluster.WithTwoNodes();
        c.StartNode(1, "vxlan");
        c.StartNode(2, "vxlan");
        ProcessRunner.Result other = Run(c, "--control-socket", c.Path_("other.sock"));
        BadInputTests.AssertOneLine(other.ExitCode, other.Stderr, "flannel.1 is in use: a running node has its queues attached");
        ProcessRunner.Result ping = c.Ping(c.Topology.Pod(1), Topology.PodIp(2));
        Assert.True(ping.ExitCode == 0, ping.Stdout + ping.Stderr);
    }

    [Fact]
    public void A_kept_device_that_cannot_take_this_starts_queues_is_refused_naming_the_flag()
    {
        using Cluster c = Cluster.WithTwoNodes();
        NodeProcess n1 = c.StartNode(1, "vxlan", null, "--queues", "2", "--on-exit", "keep");
        Assert.Equal(0, n1.Stop(TimeSpan.FromSeconds(10)));
        ProcessRunner.Result r = Run(c, "--control-socket", c.ControlSocket(1), "--queues", "1");
        BadInputTests.AssertOneLine(r.ExitCode, r.Stderr, "--queues 1: flannel.1 is ours, kept by a node with --queues 2");
        Assert.Contains("start with --queues 2 or more, or remove it (dataplane uninstall --device flannel.1)", r.Stderr);
        Assert.Contains("flannel.1", c.Topology.Ip(c.Topology.Node(1), "link", "show")); // left as it was
    }

    [Fact]
    public void A_tun_device_of_another_program_is_refused()
    {
        using Cluster c = Cluster.WithTwoNodes();
        c.Topology.Ip(c.Topology.Node(1), "tuntap", "add", "dev", "flannel.1", "mode", "tun");
        ProcessRunner.Result r = Run(c, "--control-socket", c.ControlSocket(1));
        BadInputTests.AssertOneLine(r.ExitCode, r.Stderr, "a TUN device named flannel.1 exists and is not ours (it has no dataplane mark)");
        Assert.Contains("flannel.1", c.Topology.Ip(c.Topology.Node(1), "link", "show"));
    }

    /// <summary>A start of node 1 (vxlan) that is expected to be refused: it runs to its exit.</summary>
    private static ProcessRunner.Result Run(Cluster c, params string[] extra) =>
        c.Topology.Exec(c.Topology.Node(1), [.. c.Program, "run", "--leases", c.LeasesPath, "--public-ip", Topology.UnderlayIp(1),
            "--backend", "vxlan", "--subnet-file", c.Path_("refused.env"), .. extra], 30_000);
}
