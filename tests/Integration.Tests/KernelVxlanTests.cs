using Dataplane.Lab;
using Dataplane.Node;

using Dataplane.TestSupport;

namespace Dataplane.Integration.Tests;

/// <summary>
/// One node of ours in vxlan mode beside a kernel flannel.1 node programmed as flanneld programs
/// it: the kernel is the independent reader of what we put on the wire, and we of what it puts there.
/// </summary>
public class KernelVxlanTests
{
    [Theory]
    [InlineData("on")]
    [InlineData("off")]
    public void Kernel_flannel_1_and_our_node_interoperate_in_both_directions(string offload)
    {
        using var c = new Cluster();
        c.OursBesideAKernelPeer();
        NodeProcess ours = c.StartNode(1, "vxlan", null, "--offload", offload);

        ProcessRunner.Result ping = c.Ping(c.Topology.Pod(1), Topology.PodIp(2));
        Assert.True(ping.ExitCode == 0, ping.Stdout + ping.Stderr);
        ProcessRunner.Result back = c.Ping(c.Topology.Pod(2), Topology.PodIp(1));
        Assert.True(back.ExitCode == 0, back.Stdout + back.Stderr);

        c.StartTransfer(1, 2, 64L << 20).AssertIntact(TimeSpan.FromSeconds(90));
        c.StartTransfer(2, 1, 64L << 20, port: 5202).AssertIntact(TimeSpan.FromSeconds(90));

        Assert.Equal(0, ours.Stop(TimeSpan.FromSeconds(10)));
        // Nothing the kernel sent us was refused.
        string counters = Assert.Single(ours.Lines, l => l.Contains("Counters:", StringComparison.Ordinal));
        string drops = counters[counters.IndexOf("drops:", StringComparison.Ordinal)..];
        foreach (string inboundReason in new[] { "UnknownPeer", "BadVxlanFlags", "WrongVni", "NotOurMac", "BadEtherType", "MalformedInner", "BadInnerChecksum", "InnerSource", "InnerDestination", "Truncated", "TooShort" })
        {
            Assert.DoesNotContain(inboundReason, drops);
        }
    }

    [Theory]
    [InlineData("on")]
    [InlineData("off")]
    public void A_kernel_peer_with_default_veth_offloads_works_without_any_ethtool_step(string offload)
    {
        using var c = new Cluster();
        // No ethtool: the kernel node sends inner TCP checksums it never finished.
        c.OursBesideAKernelPeer(finishChecksums: false);
        NodeProcess ours = c.StartNode(1, "vxlan", null, "--offload", offload);

        c.StartTransfer(1, 2, 50L << 20).AssertIntact(TimeSpan.FromSeconds(90));
        c.StartTransfer(2, 1, 50L << 20, port: 5202).AssertIntact(TimeSpan.FromSeconds(90));

        Assert.Equal(0, ours.Stop(TimeSpan.FromSeconds(10)));
        string counters = Assert.Single(ours.Lines, l => l.Contains("Counters:", StringComparison.Ordinal));
        // What the kernel sent: small packets with unfinished checksums (completed, counted) and,
        // since its veth never segments, tunnel superpackets (split into ordinary datagrams here).
        static long Figure(string line, string pattern)
        {
            var m = System.Text.RegularExpressions.Regex.Match(line, pattern);
            Assert.True(m.Success, line);
            return long.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        }
        Assert.True(Figure(counters, @"checksums completed (\d+)") > 0, counters);
        string offloads = Assert.Single(ours.Lines, l => l.Contains("Offload counters:", StringComparison.Ordinal));
        Assert.True(Figure(offloads, @"tunnel superpackets (\d+)") > 0, offloads);
        Assert.DoesNotContain("BadInnerChecksum", counters);
    }

    [Fact]
    public void Tshark_reads_vni_1_and_the_inner_packet_on_the_underlay()
    {
        string tshark = Require.Tool("tshark", "tshark");
        using var c = new Cluster();
        c.Topology.AddNode(1);
        c.Topology.AddNode(2);
        new ClusterFileBuilder().Node(1).Node(2).WriteTo(c.LeasesPath);
        NodeProcess one = c.StartNode(1, "vxlan", null, "--queues", "2");
        c.StartNode(2, "vxlan", null, "--queues", "2");
        // Each queue sends from a port of its own (as kernel VXLAN varies the source port by flow).
        var sendPorts = System.Text.RegularExpressions.Regex.Match(one.Output, @"each sends from its own port \(192\.0\.2\.1 (\d+)-(\d+)\)");
        Assert.True(sendPorts.Success, one.Output);

        string pcap = c.Path_("underlay.pcap");
        NodeProcess capture = c.Topology.Start(c.Topology.Node(1), [tshark, "-i", "eth0", "-f", "udp port 8472", "-c", "4", "-a", "duration:20", "-w", pcap], "tshark");
        Assert.NotNull(capture.WaitForLine("Capturing on", TimeSpan.FromSeconds(20)));
        Thread.Sleep(300);
        ProcessRunner.Result ping = c.Ping(c.Topology.Pod(1), Topology.PodIp(2), count: 2);
        Assert.True(ping.ExitCode == 0, ping.Stdout);
        Assert.True(capture.WaitForExit(TimeSpan.FromSeconds(25)), capture.Output);

        ProcessRunner.Result read = ProcessRunner.Run(tshark, ["-r", pcap, "-d", "udp.port==8472,vxlan", "-T", "fields", "-E", "separator=|",
            "-e", "udp.dstport", "-e", "vxlan.flags", "-e", "vxlan.vni", "-e", "eth.dst", "-e", "eth.src", "-e", "ip.src", "-e", "ip.dst", "-e", "icmp.type", "-e", "udp.srcport"]);
        Assert.True(read.ExitCode == 0, read.Stderr);
        string[] lines = read.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length >= 4, read.Stdout);
        // Fields of the outer and the inner frame come comma-separated: outer first, inner last.
        string request = lines.First(l => l.Contains("|192.0.2.1,10.244.1.2|192.0.2.2,10.244.2.2|8", StringComparison.Ordinal));
        string[] f = request.Split('|');
        Assert.Equal("8472", f[0]);
        Assert.InRange(int.Parse(f[8], System.Globalization.CultureInfo.InvariantCulture),
            int.Parse(sendPorts.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), int.Parse(sendPorts.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal("0x0800", f[1]); // the I flag, nothing else
        Assert.Equal("1", f[2]);
        Assert.Equal(ClusterFileBuilder.VtepMac(2), f[3].Split(',')[^1]); // inner destination MAC: the peer's VtepMAC
        Assert.Equal(ClusterFileBuilder.VtepMac(1), f[4].Split(',')[^1]); // inner source MAC: ours
        Assert.Contains(lines, l => l.Contains("|192.0.2.2,10.244.2.2|192.0.2.1,10.244.1.2|0", StringComparison.Ordinal));
    }
}
