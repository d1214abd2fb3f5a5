using System.Globalization;
using System.Text.RegularExpressions;
using Dataplane.Lab;
using Dataplane.Node;
using Dataplane.TestSupport;

namespace Dataplane.Integration.Tests;

/// <summary>
/// The packet source (<c>run --source packet</c>, and <c>auto</c> without /dev/net/tun): the device
/// is a veth pair whose host end carries flannel's name, address and route, and the data plane
/// reads and writes the other end with an AF_PACKET socket. The same transfers as with the TUN,
/// both backends, offloads on and off, a kernel flannel.1 peer, a leftover after SIGKILL.
/// </summary>
public class PacketSourceTests
{
    private const long TransferBytes = 50L << 20;

    [Theory]
    [InlineData("udp", "flannel0", "1472", "on", 2)]
    [InlineData("vxlan", "flannel.1", "1450", "on", 1)]
    [InlineData("vxlan", "flannel.1", "1450", "on", 2)]
    [InlineData("udp", "flannel0", "1472", "off", 1)]
    [InlineData("vxlan", "flannel.1", "1450", "off", 2)]
    public void Two_nodes_with_the_packet_source_carry_50_MB_each_way_intact(string backend, string device, string mtu, string offload, int queues)
    {
        using var c = new Cluster();
        var (n1, n2) = c.StartTwoNodes(backend, "--source", "packet", "--offload", offload,
            "--queues", queues.ToString(CultureInfo.InvariantCulture));

        // The host end is what a TUN would be: flannel's name, MTU, address and route; NOARP.
        Thread.Sleep(500);
        Assert.False(n1.HasExited, n1.Output);
        string link = c.Topology.Ip(c.Topology.Node(1), "-d", "link", "show", device);
        Assert.Contains($"mtu {mtu}", link);
        Assert.Contains("NOARP", link);
        Assert.Contains("veth", link);
        Assert.Contains("10.244.1.0/32", c.Topology.Ip(c.Topology.Node(1), "addr", "show", "dev", device));
        Assert.Contains($"10.244.0.0/16 dev {device}", c.Topology.Ip(c.Topology.Node(1), "route", "show"));
        Assert.Contains("Source: packet (--source packet)", n1.Output);
        // Our end has no address at all, IPv6 link-local included: it sends nothing of its own.
        string ours = c.Topology.Ip(c.Topology.Node(1), "addr", "show", "dev", NodeDevice.VethPeerName(device));
        Assert.DoesNotContain("inet", ours);

        ProcessRunner.Result ping = c.Ping(c.Topology.Pod(1), Topology.PodIp(2));
        Assert.True(ping.ExitCode == 0, ping.Stdout + ping.Stderr);
        c.StartTransfer(1, 2, TransferBytes).AssertIntact(TimeSpan.FromSeconds(90));
        c.StartTransfer(2, 1, TransferBytes, port: 5202).AssertIntact(TimeSpan.FromSeconds(90));

        // Counters as with the TUN: dataplane stats over the control socket.
        ProcessRunner.Result stats = ProcessRunner.Run(SelfCommand.Prefix()[0], [.. SelfCommand.Prefix().Skip(1), "stats", "--control-socket", c.ControlSocket(1), "--once"]);
        Assert.True(stats.ExitCode == 0, stats.Stderr);
        Assert.Matches(@"peer 192\.0\.2\.2 10\.244\.2\.0/24\s+out\s+\d{4,}", stats.Stdout);
        Assert.Contains(offload == "on" ? "offloads: device vnet header" : "offloads: device off", stats.Stdout);

        // The kernel never also routed what we read: everything the host end received is what we
        // wrote, frame for frame: each packet delivered, less those merged into another's superpacket
        // (none without offloads), and each ICMP error. A frame our end's stack routed back would
        // arrive there too.
        long hostEndReceived = LinkCounter(c.Topology.Ip(c.Topology.Node(1), "-s", "link", "show", device), "RX");
        Assert.Equal(0, n1.Stop(TimeSpan.FromSeconds(10)));
        Assert.Equal(0, n2.Stop(TimeSpan.FromSeconds(10)));
        string stopped = n1.Lines.Single(l => l.Contains("Counters:", StringComparison.Ordinal));
        string offloaded = n1.Lines.Single(l => l.Contains("Offload counters:", StringComparison.Ordinal));
        long merged = Counter(offloaded, @"\(merging (\d+) packets\)");
        Assert.True(offload == "on" || merged == 0, offloaded);
        Assert.True(Counter(stopped, @"in (\d+) packets") - merged + Counter(stopped, @"ICMP sent (\d+)") == hostEndReceived,
            $"host end received {hostEndReceived}; {stopped}; {offloaded}");
        string links = c.Topology.Ip(c.Topology.Node(1), "link", "show");
        Assert.DoesNotContain(device, links);
        Assert.DoesNotContain(NodeDevice.VethPeerName(device), links);
        Assert.Contains("Removed device", n1.Output);

        foreach (NodeProcess n in new[] { n1, n2 })
        {
            string o = n.Lines.Single(l => l.Contains("Offload counters:", StringComparison.Ordinal));
            long superIn = Counter(o, @"superpackets in (\d+)"), superOut = Counter(o, @"out (\d+) \(merging");
            if (offload == "on")
            {
                Assert.True(superIn > 100 && superOut > 100, o);
            }
            else
            {
                Assert.True(superIn + superOut == 0, o);
            }
            // Every frame our end read was an IP packet that fit (the host end sends nothing else).
            Assert.Equal(0, Counter(o, @"frames skipped \(not IP, or cut short\) (\d+)"));
            string counters = n.Lines.Single(l => l.Contains("Counters:", StringComparison.Ordinal));
            Assert.DoesNotContain("Malformed", counters);
        }
    }

    [Fact]
    public void Auto_takes_the_packet_source_when_dev_net_tun_is_missing()
    {
        using var c = new Cluster();
        // What a container without the device sees: /dev/net is an empty tmpfs in the node's mount namespace.
        c.Program = [Require.Tool("unshare", "util-linux"), "--mount", "--propagation", "private", "/bin/sh", "-c",
            "mount -t tmpfs tmpfs /dev/net && exec \"$@\"", "sh", .. SelfCommand.Prefix()];
        var (n1, n2) = c.StartTwoNodes("vxlan");
        foreach (NodeProcess n in new[] { n1, n2 })
        {
            Assert.True(n.Output.Contains("Source: packet, a veth pair read with AF_PACKET (open /dev/net/tun: ENOENT (No such file or directory))", StringComparison.Ordinal), n.Output);
        }
        c.StartTransfer(1, 2, TransferBytes).AssertIntact(TimeSpan.FromSeconds(90));
        c.StartTransfer(2, 1, TransferBytes, port: 5202).AssertIntact(TimeSpan.FromSeconds(90));
        Assert.Equal(0, n1.Stop(TimeSpan.FromSeconds(10)));
        Assert.DoesNotContain("flannel.1", c.Topology.Ip(c.Topology.Node(1), "link", "show"));
    }

    [Theory]
    [InlineData("on")]
    [InlineData("off")]
    public void A_kernel_flannel_1_peer_and_the_packet_source_interoperate_both_ways(string offload)
    {
        using var c = new Cluster();
        // The kernel peer's veth keeps its default offloads: it sends inner checksums it never finished.
        c.OursBesideAKernelPeer(finishChecksums: false);
        NodeProcess ours = c.StartNode(1, "vxlan", null, "--source", "packet", "--offload", offload);

        ProcessRunner.Result ping = c.Ping(c.Topology.Pod(2), Topology.PodIp(1));
        Assert.True(ping.ExitCode == 0, ping.Stdout + ping.Stderr);
        c.StartTransfer(1, 2, TransferBytes).AssertIntact(TimeSpan.FromSeconds(90));
        c.StartTransfer(2, 1, TransferBytes, port: 5202).AssertIntact(TimeSpan.FromSeconds(90));
        Assert.Equal(0, ours.Stop(TimeSpan.FromSeconds(10)));
        string counters = Assert.Single(ours.Lines, l => l.Contains("Counters:", StringComparison.Ordinal));
        Assert.True(Counter(counters, @"checksums completed (\d+)") > 0, counters);
        Assert.DoesNotContain("BadInnerChecksum", counters);
    }

    [Fact]
    public void A_veth_pair_left_by_a_killed_node_is_taken_over_at_the_next_start()
    {
        using var c = new Cluster();
        var (n1, _) = c.StartTwoNodes("udp", "--source", "packet");
        n1.Kill();
        Assert.True(n1.WaitForExit(TimeSpan.FromSeconds(10)));
        // SIGKILL leaves the pair (a TUN would vanish with its descriptor), with its address and route.
        Assert.Contains(NodeDevice.VethPeerName("flannel0"), c.Topology.Ip(c.Topology.Node(1), "link", "show"));
        Assert.Contains("10.244.0.0/16 dev flannel0", c.Topology.Ip(c.Topology.Node(1), "route", "show"));

        NodeProcess again = c.StartNode(1, "udp", null, "--source", "packet");
        Assert.Contains("Taking over flannel0: ours, kept by an earlier run", again.Output);
        ProcessRunner.Result ping = c.Ping(c.Topology.Pod(1), Topology.PodIp(2));
        Assert.True(ping.ExitCode == 0, ping.Stdout + ping.Stderr);
        Assert.Equal(0, again.Stop(TimeSpan.FromSeconds(10)));
        Assert.DoesNotContain("flannel0", c.Topology.Ip(c.Topology.Node(1), "link", "show"));
    }

    [Fact]
    public void A_device_name_taken_by_something_else_is_refused_in_one_line()
    {
        using var c = new Cluster();
        c.Topology.AddNode(1);
        c.Topology.AddNode(2);
        new ClusterFileBuilder().Node(1).Node(2).WriteTo(c.LeasesPath);
        c.Topology.Ip(c.Topology.Node(1), "link", "add", "flannel0", "type", "bridge");
        NodeProcess n = c.Topology.Start(c.Topology.Node(1), [.. c.Program, "run", "--leases", c.LeasesPath, "--public-ip", Topology.UnderlayIp(1),
            "--backend", "udp", "--source", "packet", "--subnet-file", c.Path_("s.env")], "node1");
        Assert.True(n.WaitForExit(TimeSpan.FromSeconds(20)));
        Assert.Equal(1, n.ExitCode);
        Assert.Contains("a bridge device named flannel0 exists and is not ours", n.Output);
        Assert.Contains("bridge", c.Topology.Ip(c.Topology.Node(1), "-d", "link", "show", "flannel0"));
    }

    /// <summary>The packets figure under "RX:" or "TX:" of <c>ip -s link show</c>.</summary>
    private static long LinkCounter(string ipStats, string direction)
    {
        string[] lines = ipStats.Split('\n');
        int at = Array.FindIndex(lines, l => l.TrimStart().StartsWith(direction + ":", StringComparison.Ordinal));
        return long.Parse(lines[at + 1].Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
    }

    private static long Counter(string line, string pattern) =>
        long.Parse(Regex.Match(line, pattern).Groups[1].Value, CultureInfo.InvariantCulture);
}
