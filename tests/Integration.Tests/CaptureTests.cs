using System.Globalization;
using Dataplane.Lab;
using Dataplane.Node;
using Dataplane.TestSupport;
using Xunit.Abstractions;

namespace Dataplane.Integration.Tests;

/// <summary>
/// <c>dataplane capture</c> from a running node, read back by tshark (the independent reader):
/// inner packets on the overlay interface, outer datagrams on the underlay interface that tshark
/// decodes as VXLAN, directions, and drops with their reasons as packet comments.
/// </summary>
public class CaptureTests(ITestOutputHelper output)
{
    private static string[] Tshark(Cluster c, string file, params string[] fields)
    {
        string tshark = Require.Tool("tshark", "tshark");
        ProcessRunner.Result r = ProcessRunner.Run(tshark, ["-r", file, "-d", "udp.port==8472,vxlan", "-T", "fields", "-E", "separator=|",
            .. fields.SelectMany(f => new[] { "-e", f })]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        return r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }

    private static NodeProcess StartCapture(Cluster c, string file, params string[] extra)
    {
        // With SIGINT's default disposition, as from a terminal (a test run started in the
        // background inherits SIGINT ignored, and .NET keeps an inherited ignore).
        string env = Require.Tool("env", "coreutils");
        NodeProcess p = c.Topology.Start(c.Topology.Node(1), [env, "--default-signal=INT", .. SelfCommand.Prefix(), "capture", "--control-socket", c.ControlSocket(1), "-w", file, .. extra], "capture");
        Thread.Sleep(500); // the node has taken the request
        return p;
    }

    [Fact]
    public void Inner_and_outer_packets_and_drops_with_their_reasons_open_in_tshark()
    {
        using var c = new Cluster();
        var (node, _) = c.StartTwoNodes("vxlan");
        c.Ping(c.Topology.Pod(1), Topology.PodIp(2), count: 1); // neighbours resolved before the capture

        string file = c.Path_("all.pcapng");
        NodeProcess capture = StartCapture(c, file, "--duration", "4");
        Assert.Equal(0, c.Ping(c.Topology.Pod(1), Topology.PodIp(2), count: 3).ExitCode);
        c.Ping(c.Topology.Pod(1), "10.244.9.9", count: 1); // no peer owns it: no_route
        Assert.True(capture.WaitForExit(TimeSpan.FromSeconds(15)), capture.Output);
        Assert.Equal(0, capture.ExitCode);

        // As an operator reads it (the README quotes this):
        output.WriteLine(ProcessRunner.Run(Require.Tool("tshark", "tshark"), ["-r", file, "-d", "udp.port==8472,vxlan",
            "-T", "fields", "-e", "frame.number", "-e", "frame.interface_name", "-e", "frame.packet_flags_direction", "-e", "_ws.col.Info", "-e", "frame.comment"]).Stdout);
        string[] rows = Tshark(c, file, "frame.interface_id", "frame.packet_flags_direction", "vxlan.vni", "ip.src", "ip.dst", "icmp.type", "frame.comment");
        output.WriteLine(string.Join('\n', rows));
        // Overlay (interface 0): the echo requests as read from the device (direction 2, outbound), the replies as delivered (1, inbound).
        Assert.Equal(3, rows.Count(r => r.StartsWith("0|0x00000002||10.244.1.2|10.244.2.2|8|", StringComparison.Ordinal)));
        Assert.Equal(3, rows.Count(r => r.StartsWith("0|0x00000001||10.244.2.2|10.244.1.2|0|", StringComparison.Ordinal)));
        // Underlay (interface 1): the same as VXLAN datagrams, VNI 1, outer then inner addresses.
        Assert.Equal(3, rows.Count(r => r.StartsWith("1|0x00000002|1|192.0.2.1,10.244.1.2|192.0.2.2,10.244.2.2|8|", StringComparison.Ordinal)));
        Assert.Equal(3, rows.Count(r => r.StartsWith("1|0x00000001|1|192.0.2.2,10.244.2.2|192.0.2.1,10.244.1.2|0|", StringComparison.Ordinal)));
        // The unroutable echo: dropped, with its reason.
        Assert.Single(rows, r => r.StartsWith("0|0x00000002||10.244.1.2|10.244.9.9|8|no_route", StringComparison.Ordinal));
        Assert.Contains(node.Lines, l => l.Contains("Capture started", StringComparison.Ordinal));
        Assert.True(SpinUntil(() => node.Lines.Any(l => l.Contains("Capture ended: ", StringComparison.Ordinal))), node.Output);
    }

    /// <summary>On a dual-stack node the IPv6 underlay's datagrams are captured with IPv6 outer headers, our IPv6 address and port on our side.</summary>
    [Fact]
    public void Ipv6_outer_datagrams_open_in_tshark_with_ipv6_headers()
    {
        using var c = new Cluster();
        c.DualStackPair();
        c.StartNode(1, "vxlan");
        c.StartNode(2, "vxlan");
        c.Ping(c.Topology.Pod(1), Topology.PodIpv6(2), count: 1);

        string file = c.Path_("v6.pcapng");
        NodeProcess capture = StartCapture(c, file, "--duration", "4");
        Assert.Equal(0, c.Ping(c.Topology.Pod(1), Topology.PodIpv6(2), count: 2).ExitCode);
        Assert.True(capture.WaitForExit(TimeSpan.FromSeconds(15)), capture.Output);
        string[] rows = Tshark(c, file, "frame.interface_id", "frame.packet_flags_direction", "vxlan.vni", "ipv6.src", "ipv6.dst", "udp.dstport", "icmpv6.type");
        output.WriteLine(string.Join('\n', rows));
        Assert.Equal(2, rows.Count(r => r.StartsWith("1|0x00000002|1|2001:db8:2::1,2001:db8:244:1::2|2001:db8:2::2,2001:db8:244:2::2|8472|128", StringComparison.Ordinal)));
        Assert.Equal(2, rows.Count(r => r.StartsWith("1|0x00000001|1|2001:db8:2::2,2001:db8:244:2::2|2001:db8:2::1,2001:db8:244:1::2|8472|129", StringComparison.Ordinal)));
    }

    /// <summary>
    /// <c>--peer</c> by public address and by subnet, and <c>--snaplen</c>: two captures at once on a
    /// node with two peers, each keeping only its peer's packets (inner and outer), each cut to 64
    /// bytes while tshark still reads the packet's whole length.
    /// </summary>
    [Fact]
    public void Peer_and_snaplen_keep_one_peers_packets_cut_short()
    {
        using var c = new Cluster();
        c.Topology.AddNode(1);
        c.Topology.AddNode(2);
        c.Topology.AddNode(3);
        new ClusterFileBuilder().Node(1).Node(2).Node(3).WriteTo(c.LeasesPath);
        c.StartNode(1, "vxlan");
        c.StartNode(2, "vxlan");
        c.StartNode(3, "vxlan");
        c.Ping(c.Topology.Pod(1), Topology.PodIp(2), count: 1); // neighbours resolved before the captures
        c.Ping(c.Topology.Pod(1), Topology.PodIp(3), count: 1);

        string byAddress = c.Path_("peer2.pcapng"), bySubnet = c.Path_("peer3.pcapng");
        NodeProcess two = StartCapture(c, byAddress, "--peer", "192.0.2.2", "--snaplen", "64", "--duration", "4");
        NodeProcess three = StartCapture(c, bySubnet, "--peer", "10.244.3.0/24", "--snaplen", "64", "--duration", "4");
        Assert.Equal(0, c.Ping(c.Topology.Pod(1), Topology.PodIp(2), count: 3).ExitCode);
        Assert.Equal(0, c.Ping(c.Topology.Pod(1), Topology.PodIp(3), count: 3).ExitCode);
        Assert.True(two.WaitForExit(TimeSpan.FromSeconds(15)), two.Output);
        Assert.True(three.WaitForExit(TimeSpan.FromSeconds(15)), three.Output);
        Assert.True(File.Exists(byAddress) && File.Exists(bySubnet), two.Output + three.Output);

        foreach ((string file, int peer) in new[] { (byAddress, 2), (bySubnet, 3) })
        {
            // Overlay frames are 84-byte echo packets, underlay ones 134-byte datagrams: all cut to 64.
            string[] rows = Tshark(c, file, "frame.interface_id", "frame.cap_len", "frame.len", "ip.src", "ip.dst");
            output.WriteLine($"--peer {(peer == 2 ? "192.0.2.2" : "10.244.3.0/24")}:\n{string.Join('\n', rows)}");
            Assert.True(rows.Length == 12, string.Join('\n', rows)); // 3 requests and 3 replies, each as read or written on both sides (a subnet matches the datagrams' inner packets too)
            foreach (string row in rows)
            {
                string[] f = row.Split('|');
                Assert.Equal("64", f[1]);
                Assert.True(int.Parse(f[2], CultureInfo.InvariantCulture) > 80, row);
                // The overlay's inner addresses are the peer's pod; the underlay's outer ones its node (64 bytes end inside the inner header).
                Assert.Contains(f[0] == "0" ? $"10.244.{peer}.2" : $"192.0.2.{peer}", row, StringComparison.Ordinal);
            }
            Assert.Equal(6, rows.Count(r => r.StartsWith("1|", StringComparison.Ordinal)));
        }
    }

    [Fact]
    public void Drops_only_to_stdout_and_two_captures_at_once_each_end_at_their_count()
    {
        using var c = new Cluster();
        c.StartTwoNodes("udp");
        string drops = c.Path_("drops.pcapng"), counted = c.Path_("counted.pcapng");
        // stdout piped into a file, as `| tshark -r -` would read it.
        NodeProcess onlyDrops = c.Topology.Start(c.Topology.Node(1), ["/bin/sh", "-c",
            $"exec {string.Join(' ', SelfCommand.Prefix())} capture --control-socket {c.ControlSocket(1)} -w - --drops-only --count 2 > {drops}"], "drops");
        NodeProcess two = StartCapture(c, counted, "--count", "4");
        c.Ping(c.Topology.Pod(1), Topology.PodIp(2), count: 3);
        c.Ping(c.Topology.Pod(1), "10.244.9.9", count: 3);
        Assert.True(onlyDrops.WaitForExit(TimeSpan.FromSeconds(15)), onlyDrops.Output);
        Assert.True(two.WaitForExit(TimeSpan.FromSeconds(15)), two.Output);
        string[] dropRows = Tshark(c, drops, "ip.dst", "frame.comment");
        Assert.Equal(["10.244.9.9|no_route", "10.244.9.9|no_route"], dropRows);
        Assert.Equal(4, Tshark(c, counted, "frame.number").Length);
    }

    [Fact]
    public void A_capture_ends_cleanly_on_ctrl_c_and_when_the_node_stops()
    {
        using var c = new Cluster();
        var (node, _) = c.StartTwoNodes("udp");
        string first = c.Path_("interrupted.pcapng"), second = c.Path_("node-stopped.pcapng");
        NodeProcess interrupted = StartCapture(c, first);
        c.Ping(c.Topology.Pod(1), Topology.PodIp(2), count: 2);
        Assert.True(SpinUntil(() => new FileInfo(first).Length > 100), "the capture did not start writing"); // the client is copying now
        ProcessRunner.Run("/bin/sh", ["-c", $"kill -INT {interrupted.Pid}"]);
        Assert.True(interrupted.WaitForExit(TimeSpan.FromSeconds(10)), "Ctrl-C did not end the capture");
        Assert.Equal(0, interrupted.ExitCode);
        Assert.True(Tshark(c, first, "frame.number").Length >= 4, "what was captured before Ctrl-C is in the file");
        Assert.True(SpinUntil(() => node.Lines.Any(l => l.Contains("Capture ended: ", StringComparison.Ordinal))), "the node did not end the capture: " + node.Output);

        NodeProcess stopped = StartCapture(c, second);
        c.Ping(c.Topology.Pod(1), Topology.PodIp(2), count: 2);
        Assert.Equal(0, node.Stop(TimeSpan.FromSeconds(10)));
        Assert.True(stopped.WaitForExit(TimeSpan.FromSeconds(10)), "the capture outlived its node");
        Assert.Equal(0, stopped.ExitCode);
        Assert.True(Tshark(c, second, "frame.number").Length >= 4);
    }

    [Fact]
    public void A_capture_that_nobody_reads_loses_capture_records_never_traffic()
    {
        using var c = new Cluster();
        c.StartTwoNodes("vxlan");
        // A client that asks for everything and never reads: its writer stalls, its queue fills.
        using var stalled = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        stalled.Connect(new System.Net.Sockets.UnixDomainSocketEndPoint(c.ControlSocket(1)));
        stalled.Send("CAPTURE count=0 duration=0\n"u8);
        Thread.Sleep(300);
        c.StartTransfer(1, 2, 32L << 20).AssertIntact(TimeSpan.FromSeconds(60)); // the data path does not wait for the capture
        string metrics = Metrics.StatsCommand.Read(c.ControlSocket(1));
        Assert.Contains("dataplane_captures 1", metrics);
        long dropped = long.Parse(metrics.Split('\n').Single(l => l.StartsWith("dataplane_capture_dropped_total ", StringComparison.Ordinal)).Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(dropped > 1000, $"only {dropped} capture records left out");
        stalled.Close();
        Assert.True(SpinUntil(() => Metrics.StatsCommand.Read(c.ControlSocket(1)).Contains("dataplane_captures 0", StringComparison.Ordinal)), "the capture outlived its client");
    }

    [Fact]
    public void Only_root_may_capture_or_read_stats()
    {
        using var c = new Cluster();
        c.Topology.AddNode(1);
        c.Topology.AddNode(2);
        new ClusterFileBuilder().Node(1).Node(2).WriteTo(c.LeasesPath);
        // A control socket where anyone could reach the file: the mode (0600) refuses others,
        // and when even that is opened up, the node checks who is asking (SO_PEERCRED).
        string socket = $"/tmp/dataplane-{c.Topology.Id}.sock";
        NodeProcess n = c.Topology.Start(c.Topology.Node(1), [.. SelfCommand.Prefix(), "run", "--leases", c.LeasesPath, "--public-ip", Topology.UnderlayIp(1),
            "--backend", "udp", "--subnet-file", c.Path_("node1-subnet.env"), "--control-socket", socket], "node1");
        Assert.True(n.WaitForLine("Ready:", TimeSpan.FromSeconds(30)) is not null, n.Output);
        try
        {
            string setpriv = Require.Tool("setpriv", "util-linux");
            string[] nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--", "env", "HOME=/tmp", "DOTNET_CLI_HOME=/tmp"];
            ProcessRunner.Result refused = c.Topology.Exec(c.Topology.Node(1), [.. nobody, .. SelfCommand.Prefix(), "capture", "--control-socket", socket, "-w", "-", "--count", "1"]);
            BadInputTests.AssertOneLine(refused.ExitCode, refused.Stderr, "permission denied: only root may capture");
            File.SetUnixFileMode(socket, (UnixFileMode)0b110_110_110);
            ProcessRunner.Result checkedUid = c.Topology.Exec(c.Topology.Node(1), [.. nobody, .. SelfCommand.Prefix(), "capture", "--control-socket", socket, "-w", "-", "--count", "1"]);
            BadInputTests.AssertOneLine(checkedUid.ExitCode, checkedUid.Stderr, "only root may use a node's control socket (you are uid 65534)");
            ProcessRunner.Result stats = c.Topology.Exec(c.Topology.Node(1), [.. nobody, .. SelfCommand.Prefix(), "stats", "--control-socket", socket, "--once"]);
            Assert.NotEqual(0, stats.ExitCode);
            Assert.Contains("only root", stats.Stdout + stats.Stderr);
        }
        finally
        {
            File.Delete(socket);
        }
    }

    private static bool SpinUntil(Func<bool> condition)
    {
        var until = DateTime.UtcNow.AddSeconds(10);
        while (!condition() && DateTime.UtcNow < until)
        {
            Thread.Sleep(100);
        }
        return condition();
    }
}
