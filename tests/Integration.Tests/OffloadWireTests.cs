using System.Globalization;
using Dataplane.Lab;
using Dataplane.Node;
using Dataplane.TestSupport;

namespace Dataplane.Integration.Tests;

/// <summary>
/// Offloads really used, seen from outside the node: tshark on the sending node's underlay sees
/// UDP GSO superpackets (datagrams larger than the link's 1500-byte MTU, which only a
/// UDP_SEGMENT send makes there), and tshark on the receiving node's device sees the coalesced
/// TCP superpackets we write to it (larger than its MTU). With --offload off, neither exists.
/// </summary>
public class OffloadWireTests
{
    [Theory]
    [InlineData("vxlan", "on")]
    [InlineData("udp", "on")]
    [InlineData("vxlan", "off")]
    public void Superpackets_are_seen_on_the_wire_and_on_the_device_only_with_offloads(string backend, string offload)
    {
        string tshark = Require.Tool("tshark", "tshark");
        using var c = new Cluster();
        c.StartTwoNodes(backend, "--offload", offload);
        string port = backend == "vxlan" ? "8472" : "8285";
        string device = (backend == "vxlan" ? Engine.BackendProfile.Vxlan : Engine.BackendProfile.Udp).DefaultDevice;
        int deviceMtu = backend == "vxlan" ? 1450 : 1472;

        string wire = c.Path_("wire.pcap"), overlay = c.Path_("overlay.pcap");
        NodeProcess onWire = c.Topology.Start(c.Topology.Node(1), [tshark, "-i", "eth0", "-f", $"udp dst port {port}", "-s", "96", "-a", "duration:6", "-w", wire], "tshark-wire");
        NodeProcess onDevice = c.Topology.Start(c.Topology.Node(2), [tshark, "-i", device, "-f", "tcp", "-s", "96", "-a", "duration:6", "-w", overlay], "tshark-device");
        Assert.NotNull(onWire.WaitForLine("Capturing on", TimeSpan.FromSeconds(20)));
        Assert.NotNull(onDevice.WaitForLine("Capturing on", TimeSpan.FromSeconds(20)));
        c.StartTimedTransfer(1, 2, seconds: 3).AssertIntact(TimeSpan.FromSeconds(60));
        Assert.True(onWire.WaitForExit(TimeSpan.FromSeconds(20)) && onDevice.WaitForExit(TimeSpan.FromSeconds(20)));

        int[] wireLengths = Lengths(tshark, wire);
        int[] deviceLengths = Lengths(tshark, overlay);
        Assert.True(wireLengths.Length > 100 && deviceLengths.Length > 100, $"{wireLengths.Length} datagrams on the wire, {deviceLengths.Length} packets on the device");
        int wireSuper = wireLengths.Count(l => l > 1514), deviceSuper = deviceLengths.Count(l => l > deviceMtu);
        if (offload == "on")
        {
            Assert.True(wireSuper > 0 && wireLengths.Max() > 10_000, $"no UDP GSO superpacket on the wire (largest {wireLengths.Max()} bytes)");
            Assert.True(deviceSuper > 0 && deviceLengths.Max() > 10_000, $"no coalesced superpacket written to {device} (largest {deviceLengths.Max()} bytes)");
        }
        else
        {
            Assert.Equal(0, wireSuper);
            Assert.Equal(0, deviceSuper);
        }
    }

    /// <summary>
    /// Small UDP datagrams of one flow reach the receiving node in batches; it merges them into USO
    /// superpackets (one write of many datagrams: tshark on its device sees UDP frames larger than
    /// the MTU), and the kernel cuts them back before the pod's socket: every datagram arrives once
    /// and as sent, boundaries and bytes (paced bursts: no queue may overflow, so no loss is allowed
    /// and a duplicate fails too).
    /// </summary>
    [Fact]
    public void Small_udp_datagrams_are_written_as_uso_superpackets_and_arrive_as_sent()
    {
        string tshark = Require.Tool("tshark", "tshark");
        using var c = new Cluster();
        c.StartTwoNodes("vxlan", "--queues", "1");
        // tshark prints each frame as it captures it: marker datagrams (7 bytes, UDP length 15) sent
        // before and after the burst show that the capture ran over all of it.
        NodeProcess onDevice = c.Topology.Start(c.Topology.Node(2), [tshark, "-i", "flannel.1", "-f", "udp dst port 7000", "-s", "96", "-l", "-T", "fields", "-e", "udp.length", "-e", "frame.len", "-a", "duration:120"], "tshark-device");
        Assert.NotNull(onDevice.WaitForLine("Capturing on", TimeSpan.FromSeconds(20)));
        Assert.True(MarkerCaptured(c, onDevice), "tshark on flannel.1 never saw a marker datagram sent before the burst");
        const int Count = 4000, Size = 100;
        using System.Net.Sockets.Socket receiver = TunTap.NetworkNamespace.Run(c.Topology.Pod(2), () =>
        {
            var s = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Dgram, System.Net.Sockets.ProtocolType.Udp)
            {
                ReceiveBufferSize = 8 << 20,
            };
            s.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Parse(Topology.PodIp(2)), 7000));
            return s;
        });
        static byte[] Datagram(int seq)
        {
            byte[] d = new byte[Size];
            BitConverter.TryWriteBytes(d, seq);
            for (int i = 4; i < Size; i++)
            {
                d[i] = (byte)((seq * 7) + i);
            }
            return d;
        }
        TunTap.NetworkNamespace.Run(c.Topology.Pod(1), () =>
        {
            using var s = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Dgram, System.Net.Sockets.ProtocolType.Udp);
            var to = new System.Net.IPEndPoint(System.Net.IPAddress.Parse(Topology.PodIp(2)), 7000);
            // Bursts of 50 (several datagrams in each batch the nodes read, so USO has runs to merge),
            // paced so that no queue on the way may overflow: then every datagram must arrive.
            for (int seq = 0; seq < Count; seq++)
            {
                s.SendTo(Datagram(seq), to);
                if (seq % 50 == 49)
                {
                    Thread.Sleep(2);
                }
            }
            return 0;
        });
        var seen = new HashSet<int>();
        int duplicates = 0;
        byte[] buf = new byte[2048];
        receiver.ReceiveTimeout = 5000;
        while (seen.Count < Count)
        {
            int n;
            try
            {
                n = receiver.Receive(buf);
            }
            catch (System.Net.Sockets.SocketException e) when (e.SocketErrorCode == System.Net.Sockets.SocketError.TimedOut)
            {
                Assert.Fail($"{seen.Count} of {Count} datagrams arrived (then nothing for 5 s); {duplicates} duplicates; node 2: {Metrics.StatsCommand.Read(c.ControlSocket(2))}");
                return;
            }
            if (n == MarkerUdpLength - 8)
            {
                continue;
            }
            Assert.Equal(Size, n);
            int seq = BitConverter.ToInt32(buf, 0);
            Assert.Equal(Datagram(seq), buf[..n]);
            duplicates += seen.Add(seq) ? 0 : 1;
        }
        receiver.ReceiveTimeout = 300; // and nothing more after the last one: a late copy is a duplicate too
        try
        {
            while (true)
            {
                duplicates += receiver.Receive(buf) == MarkerUdpLength - 8 ? 0 : 1;
            }
        }
        catch (System.Net.Sockets.SocketException e) when (e.SocketErrorCode == System.Net.Sockets.SocketError.TimedOut)
        {
        }
        Assert.Equal(0, duplicates);
        Assert.True(MarkerCaptured(c, onDevice), "tshark on flannel.1 never saw a marker datagram sent after the burst");
        onDevice.Stop(TimeSpan.FromSeconds(10));
        int[] lengths = [.. CapturedFrames(onDevice).Where(f => f.UdpLength != MarkerUdpLength).Select(f => f.FrameLength)];
        Assert.True(lengths.Length > 0, "tshark on flannel.1 saw none of the burst between the markers");
        Assert.True(lengths.Any(l => l > 1450), $"no USO superpacket written to flannel.1 (largest {lengths.Max()} bytes of {lengths.Length} frames)");
        Dictionary<string, double> m = Metrics.StatsCommand.Parse(Metrics.StatsCommand.Read(c.ControlSocket(2)));
        Assert.True(m["dataplane_offload_total{kind=\"device_packets_merged\"}"] > 0);
    }

    private const int MarkerUdpLength = 15;

    /// <summary>
    /// Sends 7-byte marker datagrams from pod 1 to pod 2's port 7000, one every 100 ms, until tshark
    /// prints a new marker frame (at most 10 s).
    /// </summary>
    private static bool MarkerCaptured(Cluster c, NodeProcess capture)
    {
        int before = CapturedFrames(capture).Count(f => f.UdpLength == MarkerUdpLength);
        return TunTap.NetworkNamespace.Run(c.Topology.Pod(1), () =>
        {
            using var s = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Dgram, System.Net.Sockets.ProtocolType.Udp);
            var to = new System.Net.IPEndPoint(System.Net.IPAddress.Parse(Topology.PodIp(2)), 7000);
            for (int i = 0; i < 100; i++)
            {
                s.SendTo(new byte[MarkerUdpLength - 8], to);
                Thread.Sleep(100);
                if (CapturedFrames(capture).Count(f => f.UdpLength == MarkerUdpLength) > before)
                {
                    return true;
                }
            }
            return false;
        });
    }

    /// <summary>The frames tshark printed so far as (UDP length, frame length); its other lines are skipped.</summary>
    private static IEnumerable<(int UdpLength, int FrameLength)> CapturedFrames(NodeProcess capture)
    {
        foreach (string line in capture.Lines)
        {
            string[] f = line.Split('\t');
            if (f.Length == 2 && int.TryParse(f[0], CultureInfo.InvariantCulture, out int udp) && int.TryParse(f[1], CultureInfo.InvariantCulture, out int frame))
            {
                yield return (udp, frame);
            }
        }
    }

    /// <summary>The original length of every frame in a capture (snapped captures keep it).</summary>
    private static int[] Lengths(string tshark, string pcap)
    {
        ProcessRunner.Result r = ProcessRunner.Run(tshark, ["-r", pcap, "-T", "fields", "-e", "frame.len"], 60_000);
        Assert.True(r.ExitCode == 0, r.Stderr);
        return [.. r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => int.Parse(l, CultureInfo.InvariantCulture))];
    }
}
