using System.Globalization;
using System.Net.Sockets;
using Dataplane.Lab;
using Dataplane.Node;
using Xunit.Abstractions;

namespace Dataplane.Integration.Tests;

/// <summary>
/// A planned hand-over (<c>dataplane run</c> started beside a running node of the same device): the
/// running node passes its TUN queues or packet sockets and its UDP sockets, stops queue by queue
/// as the new one starts, and exits 0 removing nothing. Numbered datagrams sent pod to pod every
/// millisecond, both ways, through two hand-overs in a row (old to new, and new to a third), arrive
/// all and in order. A start that differs from the running node is refused in one line, and the
/// running node keeps forwarding.
/// </summary>
public class HandoverTests(ITestOutputHelper output)
{
    private const int Datagrams = 4000; // 4 s at 1 ms: two hand-overs in the middle

    [Theory]
    [InlineData("vxlan", "tun")]
    [InlineData("udp", "tun")]
    [InlineData("vxlan", "packet")]
    [InlineData("udp", "packet")]
    public void Two_handovers_in_a_row_lose_and_reorder_no_datagram_either_way(string backend, string source)
    {
        using Cluster c = Cluster.WithTwoNodes();
        NodeProcess first = c.StartNode(1, backend, null, "--source", source);
        c.StartNode(2, backend, null, "--source", source);
        ProcessRunner.Result warm = c.Ping(c.Topology.Pod(2), Topology.PodIp(1));
        Assert.True(warm.ExitCode == 0, warm.Stdout);

        DatagramStream toOne = DatagramStream.Start(c, from: 2, to: 1, Datagrams), toTwo = DatagramStream.Start(c, from: 1, to: 2, Datagrams);
        Thread.Sleep(1000);
        NodeProcess second = HandOver(c, first, backend, source);
        Thread.Sleep(700);
        NodeProcess third = HandOver(c, second, backend, source);
        toOne.AssertAllArrived(output, $"{backend}/{source}, pod 2 to pod 1");
        toTwo.AssertAllArrived(output, $"{backend}/{source}, pod 1 to pod 2");
        Assert.Equal(third.Pid, ExistingDevice.RunningNode(c.ControlSocket(1))); // the control socket is the last node's now
        Assert.Equal(0, third.Stop(TimeSpan.FromSeconds(10)));
        Assert.DoesNotContain(backend == "vxlan" ? "flannel.1" : "flannel0", c.Topology.Ip(c.Topology.Node(1), "link", "show")); // --on-exit remove, as the first said
    }

    /// <summary>Starts a node beside <paramref name="running"/>; the running one exits 0 saying to whom it handed over.</summary>
    private static NodeProcess HandOver(Cluster c, NodeProcess running, string backend, string source)
    {
        NodeProcess next = c.StartNode(1, backend, null, "--source", source);
        Assert.True(next.Output.Contains($"Took over from pid {running.Pid}", StringComparison.Ordinal), next.Output + "\n--- running:\n" + running.Output);
        Assert.True(running.WaitForExit(TimeSpan.FromSeconds(10)), running.Output);
        Assert.True(running.ExitCode == 0, running.Output);
        Assert.Contains($"Handed over to pid {next.Pid}", running.Output);
        Assert.Contains("Left device", running.Output);
        Assert.DoesNotContain("Removed device", running.Output);
        return next;
    }

    /// <summary>
    /// A dual-stack node hands over its sockets of both families (an IPv4 and an IPv6 underlay socket
    /// per queue): numbered datagrams between IPv4 pods and between IPv6 pods, through a hand-over
    /// of node 1, none lost or reordered.
    /// </summary>
    [Fact]
    public void A_dual_stack_node_hands_over_both_families_sockets_losing_nothing()
    {
        using var c = new Cluster();
        c.DualStackPair();
        NodeProcess node = c.StartNode(1, "vxlan");
        c.StartNode(2, "vxlan");
        ProcessRunner.Result warm = c.Ping(c.Topology.Pod(2), Topology.PodIpv6(1));
        Assert.True(warm.ExitCode == 0, warm.Stdout);
        DatagramStream ipv4 = DatagramStream.Start(c, from: 2, to: 1, Datagrams), ipv6 = DatagramStream.Start(c, from: 2, to: 1, Datagrams, ipv6: true);
        Thread.Sleep(1500);
        NodeProcess next = HandOver(c, node, "vxlan", "tun");
        ipv4.AssertAllArrived(output, "IPv4 pods");
        ipv6.AssertAllArrived(output, "IPv6 pods");
        Assert.Contains("listening on 192.0.2.1:8472 and [2001:db8:2::1]:8472", next.Output); // both families' sockets, adopted
        Assert.Equal(0, next.Stop(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public void A_start_that_differs_from_the_running_node_is_refused_in_one_line_and_it_keeps_forwarding()
    {
        using Cluster c = Cluster.WithTwoNodes();
        NodeProcess running = c.StartNode(1, "vxlan", null, "--queues", "2");
        c.StartNode(2, "vxlan");
        ProcessRunner.Result r = c.Topology.Exec(c.Topology.Node(1), [.. c.Program, "run", "--leases", c.LeasesPath, "--public-ip", Topology.UnderlayIp(1),
            "--backend", "vxlan", "--subnet-file", c.Path_("node1-subnet.env"), "--control-socket", c.ControlSocket(1), "--queues", "1"]);
        BadInputTests.AssertOneLine(r.ExitCode, r.Stderr, $"a node is already running on flannel.1 (pid {running.Pid}) and differs from this start (--queues 2 there, 1 here)");
        // The running node logs the successor's ABORT as it reads it, which may be just after the successor exited.
        Assert.True(running.WaitForLine("abandoned by it", TimeSpan.FromSeconds(5)) is string abandoned && abandoned.Contains("Hand-over to pid", StringComparison.Ordinal),
            running.Output);
        Assert.False(running.HasExited);
        ProcessRunner.Result ping = c.Ping(c.Topology.Pod(1), Topology.PodIp(2));
        Assert.True(ping.ExitCode == 0, ping.Stdout + ping.Stderr);
    }

    /// <summary>
    /// The protocol from an independent client (this test): a successor that stops a queue and
    /// goes away before DONE. The running node starts the queue again and keeps forwarding; a
    /// request in versions it does not speak is refused, naming both ranges.
    /// </summary>
    [Fact]
    public void A_successor_that_goes_away_half_way_leaves_the_running_node_forwarding()
    {
        using Cluster c = Cluster.WithTwoNodes();
        NodeProcess running = c.StartNode(1, "vxlan", null, "--queues", "1");
        c.StartNode(2, "vxlan", null, "--queues", "1");
        using (HandoverChannel later = Connect(c))
        {
            later.Send("HANDOVER 2 3");
            Assert.Equal("REFUSED no protocol version in common: the successor speaks 2-3, this node 1-1", later.Receive().Line);
        }
        using (HandoverChannel channel = Connect(c))
        {
            channel.Send("HANDOVER 1 1");
            HandoverOffer offer = HandoverOffer.Parse(channel.Receive().Line);
            Assert.Equal((1, running.Pid, "flannel.1", "tun", "vxlan", 8472, 1, "10.244.1.0/24", Topology.UnderlayIp(1)),
                (offer.Version, offer.Pid, offer.Device, offer.Source, offer.Backend, offer.Port, offer.Queues, offer.Subnet, offer.PublicIp));
            channel.Send("SEND 0");
            (string queue, int[] descriptors) = channel.Receive();
            HandoverChannel.CloseAll(descriptors);
            Assert.Equal("QUEUE 0 roles=device,receive4", queue);
            Assert.Equal(2, descriptors.Length);
            channel.Send("STOP 0");
            channel.Expect("STOPPED", 0);
        } // gone before DONE
        Assert.NotNull(running.WaitForLine("queues 0 resume here", TimeSpan.FromSeconds(5)));
        ProcessRunner.Result ping = c.Ping(c.Topology.Pod(1), Topology.PodIp(2));
        Assert.True(ping.ExitCode == 0, ping.Stdout + ping.Stderr + running.Output);
        Assert.False(running.HasExited);
    }

    private static HandoverChannel Connect(Cluster c)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Connect(new UnixDomainSocketEndPoint(c.ControlSocket(1)));
        return new HandoverChannel(socket);
    }

    /// <summary>
    /// Twenty hand-overs in a row under a TCP transfer: the transfer arrives whole (SHA-256), and the
    /// last node has as many descriptors open as the first had (none leaked by a hand-over), stops
    /// with everything removed (--on-exit remove), and leaves no process behind.
    /// </summary>
    [Fact]
    public void Twenty_handovers_under_a_transfer_leak_no_descriptor_and_lose_no_byte()
    {
        using Cluster c = Cluster.WithTwoNodes();
        NodeProcess node = c.StartNode(1, "vxlan");
        c.StartNode(2, "vxlan");
        Thread.Sleep(300); // the runtime's own threads and descriptors settle
        int before = Descriptors(node.Pid);
        var pids = new List<int> { node.Pid };
        Transfer transfer = c.StartTimedTransfer(2, 1, seconds: 8);
        for (int i = 0; i < 20; i++)
        {
            node = HandOver(c, node, "vxlan", "tun");
            pids.Add(node.Pid);
        }
        Thread.Sleep(300);
        int after = Descriptors(node.Pid);
        output.WriteLine($"descriptors: first node {before}, after 20 hand-overs {after}; {transfer.AssertIntact(TimeSpan.FromSeconds(60))}");
        Assert.Equal(before, after);
        Assert.Equal(0, node.Stop(TimeSpan.FromSeconds(10)));
        Assert.DoesNotContain("flannel.1", c.Topology.Ip(c.Topology.Node(1), "link", "show"));
        Assert.All(pids, pid => Assert.False(Directory.Exists($"/proc/{pid}"), $"pid {pid} is still running"));
    }

    private static int Descriptors(int pid) => Directory.GetFileSystemEntries($"/proc/{pid}/fd").Length;

    /// <summary>
    /// A DaemonSet's old pod: with --after-handover wait the old process, once it handed over,
    /// holds no descriptor of the device or the underlay, waits for its SIGTERM and then exits 0
    /// leaving the device to the new one; each process's --ready-file exists exactly while it forwards.
    /// </summary>
    [Fact]
    public void After_a_handover_the_old_process_can_wait_for_its_sigterm_holding_nothing()
    {
        using Cluster c = Cluster.WithTwoNodes();
        string oldReady = c.Path_("old-pod/ready"), newReady = c.Path_("new-pod/ready");
        NodeProcess old = c.StartNode(1, "vxlan", null, "--after-handover", "wait", "--ready-file", oldReady);
        c.StartNode(2, "vxlan");
        Assert.Equal($"pid {old.Pid}\n", File.ReadAllText(oldReady));

        NodeProcess next = c.StartNode(1, "vxlan", null, "--after-handover", "wait", "--ready-file", newReady);
        Assert.NotNull(old.WaitForLine("Waiting for SIGTERM (--after-handover wait)", TimeSpan.FromSeconds(10)));
        Assert.False(old.HasExited);
        Assert.False(File.Exists(oldReady), "the old process's ready file outlived its forwarding");
        Assert.Equal($"pid {next.Pid}\n", File.ReadAllText(newReady));
        string[] held = [.. Directory.GetFileSystemEntries($"/proc/{old.Pid}/fd").Select(fd => new FileInfo(fd).LinkTarget ?? "")];
        Assert.DoesNotContain(held, target => target == "/dev/net/tun");
        Assert.True(held.Count(target => target.StartsWith("socket:", StringComparison.Ordinal)) <= 1, string.Join(", ", held)); // the runtime's own, at most

        Assert.Equal(0, old.Stop(TimeSpan.FromSeconds(10)));
        Assert.Contains("flannel.1", c.Topology.Ip(c.Topology.Node(1), "link", "show"));
        ProcessRunner.Result ping = c.Ping(c.Topology.Pod(1), Topology.PodIp(2));
        Assert.True(ping.ExitCode == 0, ping.Stdout + ping.Stderr);
        Assert.Equal(0, next.Stop(TimeSpan.FromSeconds(10)));
        Assert.False(File.Exists(newReady));
    }

    /// <summary>
    /// Our node beside a kernel flannel.1 node (programmed as flanneld programs it): numbered
    /// datagrams both ways through a hand-over of our node, none lost or reordered: the kernel
    /// peer sees nothing of it.
    /// </summary>
    [Fact]
    public void A_kernel_flannel_1_peer_and_our_node_exchange_every_datagram_across_a_handover()
    {
        using var c = new Cluster();
        c.OursBesideAKernelPeer();
        NodeProcess ours = c.StartNode(1, "vxlan");
        ProcessRunner.Result warm = c.Ping(c.Topology.Pod(2), Topology.PodIp(1));
        Assert.True(warm.ExitCode == 0, warm.Stdout);
        DatagramStream toOurs = DatagramStream.Start(c, from: 2, to: 1, Datagrams), toKernel = DatagramStream.Start(c, from: 1, to: 2, Datagrams);
        Thread.Sleep(1500);
        NodeProcess next = HandOver(c, ours, "vxlan", "tun");
        toOurs.AssertAllArrived(output, "kernel peer to ours");
        toKernel.AssertAllArrived(output, "ours to kernel peer");
        Assert.Equal(0, next.Stop(TimeSpan.FromSeconds(10)));
    }

    /// <summary>
    /// TCP (iperf3, one report a second) through two hand-overs: no one-second interval falls below
    /// half the transfer's median rate.
    /// </summary>
    [Theory]
    [InlineData("vxlan")]
    [InlineData("udp")]
    public void Tcp_keeps_at_least_half_its_rate_in_every_second_across_handovers(string backend)
    {
        using Cluster c = Cluster.WithTwoNodes();
        NodeProcess node = c.StartNode(1, backend);
        c.StartNode(2, backend);
        Intervals intervals = c.StartIntervals(2, 1, seconds: 8);
        Thread.Sleep(2500);
        node = HandOver(c, node, backend, "tun");
        Thread.Sleep(2500);
        HandOver(c, node, backend, "tun");
        double[] bytes = intervals.AssertEverySecondCarried(0);
        double median = bytes.Order().ElementAt(bytes.Length / 2);
        string shown = string.Join(", ", bytes.Select(b => (b * 8 / 1e9).ToString("0.00", CultureInfo.InvariantCulture)));
        output.WriteLine($"{backend}: Gbit/s per second: {shown}");
        Assert.True(bytes.All(b => b >= median / 2), $"an interval below half the median: {shown}");
    }
}
