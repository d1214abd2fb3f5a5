using System.Globalization;
using System.Text.RegularExpressions;
using Dataplane.Lab;
using Dataplane.Node;
using Xunit.Abstractions;

using Dataplane.TestSupport;

namespace Dataplane.Integration.Tests;

/// <summary>Faults a node must survive or handle cleanly, in namespaces with real traffic.</summary>
public class FaultTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("tun")]
    [InlineData("packet")]
    public void Device_deleted_under_a_running_node_exits_1_with_one_clear_line(string source)
    {
        using var c = new Cluster();
        c.Topology.AddNode(1);
        new ClusterFileBuilder().Node(1).Node(2).WriteTo(c.LeasesPath);
        NodeProcess n = c.StartNode(1, "udp", null, "--source", source);
        c.Topology.Ip(c.Topology.Node(1), "link", "del", "flannel0");
        Assert.True(n.WaitForExit(TimeSpan.FromSeconds(10)), "the node did not notice its device was deleted");
        Assert.Equal(1, n.ExitCode);
        Assert.Single(n.Lines, l => l.Contains("ERR Stopping: device flannel0 is gone (deleted under us); exiting with status 1", StringComparison.Ordinal));
        Assert.DoesNotContain("10.244.0.0/16", c.Topology.Ip(c.Topology.Node(1), "route", "show"));
        Assert.False(File.Exists(c.ControlSocket(1)), "the control socket was left behind");
    }

    [Theory]
    [InlineData("outbound")]
    [InlineData("inbound")]
    public void An_exception_in_a_loop_stops_the_node_through_the_clean_up_path_with_status_1(string loop)
    {
        using var c = new Cluster();
        c.Topology.AddNode(1);
        c.Topology.AddNode(2);
        new ClusterFileBuilder().Node(1).Node(2).WriteTo(c.LeasesPath);
        string iptables = Require.Tool("iptables", "iptables");
        NodeProcess n1 = c.StartNode(1, "vxlan", null, "--ip-masq", "--inject-fault", loop);
        c.StartNode(2, "vxlan");
        Assert.Contains("FLANNEL-POSTRTG", c.Topology.Exec(c.Topology.Node(1), [iptables, "-t", "nat", "-S"]).Stdout);

        // A packet through the faulty loop: out of pod 1, or into node 1 from pod 2.
        c.Ping(loop == "outbound" ? c.Topology.Pod(1) : c.Topology.Pod(2), loop == "outbound" ? Topology.PodIp(2) : Topology.PodIp(1), count: 1);
        Assert.True(n1.WaitForExit(TimeSpan.FromSeconds(10)), $"the node did not stop after the fault:\n{n1.Output}");
        Assert.Equal(1, n1.ExitCode);
        string thread = loop == "outbound" ? "dp-out-" : "dp-in-";
        // Logged once, with the exception's stack, then the same clean-up as on SIGTERM.
        Assert.Single(n1.Lines, l => l.Contains($"ERR Stopping: loop {thread}", StringComparison.Ordinal)
            && l.Contains($"InvalidOperationException: injected fault in the {loop} loop", StringComparison.Ordinal));
        Assert.Contains(n1.Lines, l => l.TrimStart().StartsWith("at Dataplane.", StringComparison.Ordinal));
        Assert.Contains(n1.Lines, l => l.Contains("Removed device flannel.1 and route 10.244.0.0/16", StringComparison.Ordinal));
        Assert.DoesNotContain("flannel.1", c.Topology.Ip(c.Topology.Node(1), "link", "show"));
        Assert.DoesNotContain("10.244.0.0/16", c.Topology.Ip(c.Topology.Node(1), "route", "show"));
        Assert.DoesNotContain("FLANNEL", c.Topology.Exec(c.Topology.Node(1), [iptables, "-t", "nat", "-S"]).Stdout);
        Assert.DoesNotContain("FLANNEL", c.Topology.Exec(c.Topology.Node(1), [iptables, "-S"]).Stdout);
        Assert.False(File.Exists(c.ControlSocket(1)), "the control socket was left behind");
    }

    [Fact]
    public void After_sigkill_a_new_start_finds_the_leftovers_and_takes_over()
    {
        using var c = new Cluster();
        c.Topology.AddNode(1);
        c.Topology.AddNode(2);
        new ClusterFileBuilder().Node(1).Node(2).WriteTo(c.LeasesPath);
        NodeProcess first = c.StartNode(1, "vxlan");
        c.StartNode(2, "vxlan");
        ProcessRunner.Run("/bin/sh", ["-c", $"kill -KILL {first.Pid}"]);
        Assert.True(first.WaitForExit(TimeSpan.FromSeconds(10)));
        // What a killed node leaves: the kernel removed the device (its last descriptor closed) and
        // with it the route; the control socket file and subnet.env stay.
        Assert.DoesNotContain("flannel.1", c.Topology.Ip(c.Topology.Node(1), "link", "show"));
        Assert.True(File.Exists(c.ControlSocket(1)));
        c.StartNode(1, "vxlan");
        ProcessRunner.Result ping = c.Ping(c.Topology.Pod(1), Topology.PodIp(2));
        Assert.True(ping.ExitCode == 0, ping.Stdout);
        ProcessRunner.Result stats = ProcessRunner.Run(SelfCommand.Prefix()[0], [.. SelfCommand.Prefix().Skip(1), "stats", "--control-socket", c.ControlSocket(1), "--once"]);
        Assert.True(stats.ExitCode == 0, stats.Stderr); // the new instance serves the old path
    }

    [Theory]
    [InlineData("vxlan")]
    [InlineData("udp")]
    public void Garbage_flood_from_the_peers_address_while_ping_and_a_transfer_run(string backend)
    {
        using var c = new Cluster();
        c.Topology.AddNode(1);
        c.Topology.AddNode(2);
        new ClusterFileBuilder().Node(1).Node(2).WriteTo(c.LeasesPath);
        NodeProcess n1 = c.StartNode(1, backend);
        c.StartNode(2, backend);
        string port = backend == "vxlan" ? "8472" : "8285";

        Transfer transfer = c.StartTimedTransfer(2, 1, seconds: 8);
        NodeProcess ping = c.Topology.Start(c.Topology.Pod(2), [Require.Tool("ping", "iputils-ping"), "-c", "60", "-i", "0.1", "-W", "1", Topology.PodIp(1)], "ping");
        NodeProcess flood = c.Topology.Start(c.Topology.Node(2), [.. SelfCommand.Prefix(), "flood", "--from", Topology.UnderlayIp(2),
            "--to", $"{Topology.UnderlayIp(1)}:{port}", "--count", "300000", "--seconds", "8"], "flood");

        Assert.True(flood.WaitForExit(TimeSpan.FromSeconds(30)), flood.Output);
        string sent = transfer.AssertIntact(TimeSpan.FromSeconds(60));
        Assert.True(ping.WaitForExit(TimeSpan.FromSeconds(30)));
        Assert.False(n1.HasExited, n1.Output);
        string floodLine = flood.Lines.Single(l => l.StartsWith("flood ", StringComparison.Ordinal));
        string pingLine = ping.Lines.Single(l => l.Contains("packet loss", StringComparison.Ordinal));
        double loss = double.Parse(Regex.Match(pingLine, @"([\d.]+)% packet loss").Groups[1].Value, CultureInfo.InvariantCulture);

        ProcessRunner.Result stats = ProcessRunner.Run(SelfCommand.Prefix()[0], [.. SelfCommand.Prefix().Skip(1), "stats", "--control-socket", c.ControlSocket(1), "--once"]);
        string drops = stats.Stdout.Split('\n').Single(l => l.TrimStart().StartsWith("drops:", StringComparison.Ordinal)).Trim();
        output.WriteLine($"{backend}: {floodLine}; legitimate ping: {pingLine.Trim()}; transfer: {sent}; node 1 {drops}");

        // Measured: no echo of 60 lost in any run (both backends, the transfer beside it); one is allowed for a loaded CI machine.
        Assert.True(loss <= 100.0 / 60, $"legitimate ping lost {loss}% during the flood");
        Assert.Matches(@"flood sent=\d{5,}", floodLine);
        string[] expected = backend == "vxlan"
            ? ["bad_vxlan_flags", "wrong_vni", "not_our_mac", "malformed_inner", "bad_inner_checksum", "inner_source_not_peer_subnet", "truncated"]
            : ["malformed_inner", "truncated"];
        foreach (string reason in expected)
        {
            Assert.Matches($@"\b{reason} [1-9]", drops);
        }
    }

    /// <summary>
    /// A pod floods destinations no node owns from sixteen flows, which the TUN spreads over both
    /// queues: every packet is refused, and each queue's outbound loop answers from its own token
    /// bucket. Per queue (dataplane_queue_icmp_errors_total): at most rate x seconds + burst sent,
    /// at least half the rate, the rest held back; both together more than one bucket could give;
    /// and the pod's own kernel (/proc/net/snmp) received what the queues say they sent.
    /// </summary>
    [Fact]
    public void Icmp_errors_under_a_flood_of_unroutable_packets_stay_within_each_queues_rate_limit()
    {
        using var c = new Cluster();
        const int Rate = 100, Burst = 20, Queues = 2;
        c.StartTwoNodes("vxlan", "--icmp-rate", Rate.ToString(CultureInfo.InvariantCulture), "--icmp-burst", Burst.ToString(CultureInfo.InvariantCulture),
            "--queues", Queues.ToString(CultureInfo.InvariantCulture));
        long before = DestinationUnreachables(c);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        // Sixteen flows: the chance that the TUN's flow hash puts all on one queue is 2^-15.
        NodeProcess flood = c.Topology.Start(c.Topology.Pod(1), [.. SelfCommand.Prefix(), "flood", "--from", Topology.PodIp(1),
            "--to", "10.244.9.9:9", "--count", "200000", "--seconds", "5", "--flows", "16"], "flood");
        Assert.True(flood.WaitForExit(TimeSpan.FromSeconds(30)), flood.Output);
        Thread.Sleep(500); // the last errors in flight
        double seconds = clock.Elapsed.TotalSeconds;
        long received = DestinationUnreachables(c) - before;
        string floodLine = flood.Lines.Single(l => l.StartsWith("flood ", StringComparison.Ordinal));
        Dictionary<string, double> m = Metrics.StatsCommand.Parse(Metrics.StatsCommand.Read(c.ControlSocket(1)));
        double Icmp(int q, string result) => m[$"dataplane_queue_icmp_errors_total{{queue=\"{q}\",result=\"{result}\"}}"];
        double[] sent = [.. Enumerable.Range(0, Queues).Select(q => Icmp(q, "sent"))];
        double[] held = [.. Enumerable.Range(0, Queues).Select(q => Icmp(q, "rate_limited"))];
        output.WriteLine($"{floodLine}; per queue sent {string.Join(", ", sent)}, held back {string.Join(", ", held)}; received by the pod: {received} in {seconds:F1} s");
        Assert.Matches(@"flood sent=\d{5,}", floodLine);
        double flooded = double.Parse(Regex.Match(floodLine, @"seconds=([\d.]+)").Groups[1].Value, CultureInfo.InvariantCulture);
        for (int q = 0; q < Queues; q++)
        {
            Assert.InRange(sent[q], Rate * flooded * 0.5, (Rate * seconds) + Burst);
            Assert.True(held[q] > sent[q], $"queue {q}: {held[q]} held back, {sent[q]} sent: the flood did not reach its limit");
        }
        Assert.True(sent.Sum() > (Rate * seconds) + Burst, $"{sent.Sum()} sent in all: not more than one bucket gives");
        // The pod's kernel counts every destination unreachable it gets (one may come from elsewhere): within the buckets still.
        Assert.InRange(received, (long)(sent.Sum() * 0.95), (long)(Queues * ((Rate * seconds) + Burst)));
        Assert.Equal(m["dataplane_icmp_errors_total{result=\"sent\"}"], sent.Sum());
    }

    /// <summary>
    /// The paths two loops of one queue share, under load at once: node 1's inbound loop answers a
    /// flood of ARP requests through the socket's send vector while its outbound loop sends a
    /// transfer through it; its outbound loop writes ICMP errors (a pod floods unroutable
    /// destinations) to the device while its inbound loop writes the other transfer's coalesced
    /// segments there. Both transfers stay intact, and node 2 receives nothing malformed from us.
    /// </summary>
    [Fact]
    public void Shared_send_and_write_paths_stay_sound_under_arp_and_icmp_load_in_both_directions()
    {
        using var c = new Cluster();
        (NodeProcess n1, NodeProcess n2) = c.StartTwoNodes("vxlan", "--queues", "1", "--icmp-rate", "100000", "--icmp-burst", "1000");
        Transfer out1 = c.StartTimedTransfer(1, 2, seconds: 6);
        Transfer in1 = c.StartTimedTransfer(2, 1, seconds: 6, port: 5202);
        NodeProcess arp = c.Topology.Start(c.Topology.Node(2), [.. SelfCommand.Prefix(), "flood", "--from", Topology.UnderlayIp(2), "--to", $"{Topology.UnderlayIp(1)}:8472",
            "--arp-request", $"10.244.2.0,{ClusterFileBuilder.VtepMac(2)},10.244.1.0", "--count", "200000", "--seconds", "5"], "arp-flood");
        NodeProcess icmp = c.Topology.Start(c.Topology.Pod(1), [.. SelfCommand.Prefix(), "flood", "--from", Topology.PodIp(1), "--to", "10.244.9.9:9",
            "--count", "200000", "--seconds", "5"], "icmp-flood");
        Assert.True(arp.WaitForExit(TimeSpan.FromSeconds(30)) && icmp.WaitForExit(TimeSpan.FromSeconds(30)));
        Assert.False(out1.Sender.HasExited || in1.Sender.HasExited, "a transfer ended before the floods did: make it longer so the test proves something");
        out1.AssertIntact(TimeSpan.FromSeconds(60));
        in1.AssertIntact(TimeSpan.FromSeconds(60));
        Assert.False(n1.HasExited || n2.HasExited);

        string Stats(int i) => ProcessRunner.Run(SelfCommand.Prefix()[0], [.. SelfCommand.Prefix().Skip(1), "stats", "--control-socket", c.ControlSocket(i), "--once"]).Stdout;
        string one = Stats(1), two = Stats(2);
        output.WriteLine($"node 1:\n{one}\nnode 2:\n{two}");
        Assert.Matches(@"ARP replies [1-9]\d{3,}", one);
        Assert.Matches(@"ICMP sent [1-9]\d{2,}", one);
        string drops2 = two.Split('\n').Single(l => l.TrimStart().StartsWith("drops:", StringComparison.Ordinal));
        foreach (string reason in new[] { "truncated", "too_short", "bad_vxlan_flags", "wrong_vni", "not_our_mac", "bad_ether_type", "malformed_inner", "bad_inner_checksum", "inner_source_not_peer_subnet", "inner_destination_not_our_subnet", "unknown_peer" })
        {
            Assert.DoesNotMatch($@"\b{reason} [1-9]", drops2);
        }
    }

    private static long DestinationUnreachables(Cluster c)
    {
        string[] lines = [.. c.Topology.Exec(c.Topology.Pod(1), ["cat", "/proc/net/snmp"]).Stdout.Split('\n').Where(l => l.StartsWith("Icmp:", StringComparison.Ordinal))];
        string[] names = lines[0].Split(' ', StringSplitOptions.RemoveEmptyEntries), values = lines[1].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return long.Parse(values[Array.IndexOf(names, "InDestUnreachs")], CultureInfo.InvariantCulture);
    }

    [Fact]
    public void Lease_changes_at_a_high_rate_during_a_transfer_to_an_unchanged_peer()
    {
        using var c = new Cluster();
        for (int i = 1; i <= 2; i++)
        {
            c.Topology.AddNode(i);
        }
        new ClusterFileBuilder().Node(1).Node(2).WriteTo(c.LeasesPath);
        NodeProcess n1 = c.StartNode(1, "vxlan");
        c.StartNode(2, "vxlan");
        Transfer transfer = c.StartTimedTransfer(1, 2, seconds: 6);
        Intervals intervals = c.StartIntervals(2, 1, seconds: 6);
        // Every edit changes the third peer (10.244.3-9.0/24), at jittered intervals, so each time
        // the watcher reads the file it finds a new state to apply.
        var rng = new Random(4);
        int edits = 0;
        var until = DateTime.UtcNow.AddSeconds(5);
        while (DateTime.UtcNow < until && edits < 300)
        {
            new ClusterFileBuilder().Node(1).Node(2).Node(3 + edits % 7).WriteTo(c.LeasesPath);
            edits++;
            Thread.Sleep(rng.Next(5, 40));
        }
        Assert.False(transfer.Sender.HasExited, "the transfer ended before the edits did: make it longer so the test proves something");
        string sent = transfer.AssertIntact(TimeSpan.FromSeconds(60));
        intervals.AssertEverySecondCarried(1_000_000); // no second without traffic to the unchanged peer while the table churned
        int applied = n1.Lines.Count(l => Regex.IsMatch(l, @"Subnet added: 10\.244\.[3-9]\.0/24"));
        output.WriteLine($"{edits} edits written in 5 s, {applied} applied (the watcher reads at most every 150 ms); transfer: {sent}");
        Assert.True(edits >= 100 && applied >= 15, $"{edits} edits, {applied} applied");
        Assert.DoesNotContain(n1.Lines, l => l.Contains("Subnet removed: 10.244.2.0/24", StringComparison.Ordinal));
    }

    [Fact]
    public void Send_errors_are_counted_and_never_fatal()
    {
        using var c = new Cluster();
        c.Topology.AddNode(1);
        c.Topology.AddNode(2);
        // Peer 3 sits at an address node 1 has no route to: every datagram to it fails with ENETUNREACH.
        new ClusterFileBuilder().Node(1).Node(2).Node(3, publicIp: "198.51.100.9").WriteTo(c.LeasesPath);
        NodeProcess n1 = c.StartNode(1, "vxlan");
        c.StartNode(2, "vxlan");
        ProcessRunner.Result lost = c.Ping(c.Topology.Pod(1), Topology.PodIp(3), count: 3);
        Assert.NotEqual(0, lost.ExitCode);
        ProcessRunner.Result ok = c.Ping(c.Topology.Pod(1), Topology.PodIp(2), count: 3);
        Assert.True(ok.ExitCode == 0, ok.Stdout);
        Assert.False(n1.HasExited);
        ProcessRunner.Result stats = ProcessRunner.Run(SelfCommand.Prefix()[0], [.. SelfCommand.Prefix().Skip(1), "stats", "--control-socket", c.ControlSocket(1), "--once"]);
        Assert.Matches(@"socket send errors: ENETUNREACH [3-9]", stats.Stdout);
        Assert.Matches(@"udp_send_failed [3-9]", stats.Stdout);
    }
}
