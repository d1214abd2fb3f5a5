using Dataplane.Lab;
using Xunit.Abstractions;

namespace Dataplane.Integration.Tests;

/// <summary>
/// No allocation per packet, in the product: the NativeAOT node over real edges (TUN and the
/// packet source, UDP sockets, offloads on and off, a capture running) reports what its packet
/// loops' threads allocated (<c>dataplane_loop_allocated_bytes_total</c>, the GC's own per-thread
/// count, read over the control socket). After a warm-up that takes every path once, a steady
/// transfer each way (TCP, datagrams, pings, about 40,000 packets) must not grow it at all: 0 bytes,
/// a capture started in the middle included (its records go through lock-free rings: a lock
/// allocates on the thread that first contends for it, the likely source of the 64 B seen once in
/// CI23, when the capture used bounded channels). The engine-level
/// allocation tests (Dataplane.Tests, isolated) stay: they name the method; this proves the binary.
/// </summary>
public class LoopAllocationTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("vxlan", "tun", "on", true)]
    [InlineData("udp", "tun", "off", false)]
    [InlineData("vxlan", "packet", "on", false)]
    public void The_packet_loops_allocate_nothing_per_packet(string backend, string source, string offload, bool capture)
    {
        using var c = new Cluster();
        var (n1, _) = c.StartTwoNodes(backend, "--source", source, "--offload", offload);
        Traffic(c, 4L << 20, 200); // the warm-up: every path taken once

        (long Out, long In, long Packets)[] before = [Allocated(c, 1), Allocated(c, 2)];
        NodeProcess? capturing = null;
        if (capture)
        {
            string file = c.Path_("steady.pcap");
            capturing = c.Topology.Start(c.Topology.Node(1), [.. SelfCommand.Prefix(), "capture", "--control-socket", c.ControlSocket(1), "-w", file, "--duration", "60"], "capture");
            Assert.True(n1.WaitForLine("Capture started", TimeSpan.FromSeconds(10)) is not null, n1.Output + capturing.Output);
        }
        Traffic(c, 24L << 20, 2000);
        (long Out, long In, long Packets)[] after = [Allocated(c, 1), Allocated(c, 2)];
        capturing?.Dispose();

        for (int n = 0; n < 2; n++)
        {
            output.WriteLine($"node {n + 1}: {after[n].Packets - before[n].Packets} packets; loop threads allocated out {after[n].Out - before[n].Out} B, "
                + $"in {after[n].In - before[n].In} B (since start: out {after[n].Out} B, in {after[n].In} B)");
            Assert.True(after[n].Packets - before[n].Packets > 20_000, $"node {n + 1}: only {after[n].Packets - before[n].Packets} packets");
            Assert.True(after[n].Out > 0 && after[n].In > 0, "the count is read (the loops allocate while they start)");
            long grown = after[n].Out - before[n].Out + (after[n].In - before[n].In);
            Assert.True(grown == 0, $"node {n + 1}: the loop threads allocated {grown} B over {after[n].Packets - before[n].Packets} packets");
        }
    }

    /// <summary>TCP each way, datagrams each way, pings: the paths a pod's traffic takes.</summary>
    private static void Traffic(Cluster c, long bytes, int datagrams)
    {
        Transfer there = c.StartTransfer(1, 2, bytes), back = c.StartTransfer(2, 1, bytes, port: 5202);
        there.AssertIntact(TimeSpan.FromSeconds(60));
        back.AssertIntact(TimeSpan.FromSeconds(60));
        DatagramStream toTwo = DatagramStream.Start(c, 1, 2, datagrams), toOne = DatagramStream.Start(c, 2, 1, datagrams);
        toTwo.AssertAllArrived(new NullOutput(), "1 to 2");
        toOne.AssertAllArrived(new NullOutput(), "2 to 1");
        Assert.Equal(0, c.Ping(c.Topology.Pod(1), Topology.PodIp(2), count: 5).ExitCode);
    }

    /// <summary>The loops' allocated bytes (out, in) and the packets they handled, from the node's control socket (what <c>dataplane stats</c> reads).</summary>
    private static (long Out, long In, long Packets) Allocated(Cluster c, int node)
    {
        Dictionary<string, double> m = Metrics.StatsCommand.Parse(Metrics.StatsCommand.Read(c.ControlSocket(node)));
        long Value(string key) => m.TryGetValue(key, out double v) ? (long)v : throw new Xunit.Sdk.XunitException($"no {key} from node {node}'s control socket");
        return (Value("dataplane_loop_allocated_bytes_total{direction=\"out\"}"), Value("dataplane_loop_allocated_bytes_total{direction=\"in\"}"),
            Value("dataplane_packets_total{direction=\"out\"}") + Value("dataplane_packets_total{direction=\"in\"}"));
    }

    private sealed class NullOutput : ITestOutputHelper
    {
        public void WriteLine(string message)
        {
        }

        public void WriteLine(string format, params object[] args)
        {
        }
    }
}
