using Dataplane.Lab;
using Dataplane.Node;
using Dataplane.TestSupport;

namespace Dataplane.Integration.Tests;

/// <summary>Two nodes of ours, each backend: ping, a 64 MB TCP transfer with matching SHA-256, subnet.env, a clean stop.</summary>
public class TwoNodeTests
{
    private const long TransferBytes = 64L << 20;

    [Theory]
    [InlineData("udp", "flannel0", "1472", "on", 64, 2)]
    [InlineData("vxlan", "flannel.1", "1450", "on", 64, 2)]
    [InlineData("vxlan", "flannel.1", "1450", "on", 64, 1)]
    [InlineData("udp", "flannel0", "1472", "off", 64, 2)]
    [InlineData("vxlan", "flannel.1", "1450", "off", 64, 1)]
    [InlineData("udp", "flannel0", "1472", "off", 1, 1)] // the naive mode: one packet per system call
    public void Pods_on_two_nodes_ping_and_transfer_intact(string backend, string device, string mtu, string offload, int batch, int queues)
    {
        using var c = new Cluster();
        c.Topology.AddNode(1);
        c.Topology.AddNode(2);
        new ClusterFileBuilder().Node(1).Node(2).WriteTo(c.LeasesPath);
        string[] flags = ["--offload", offload, "--batch", batch.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--queues", queues.ToString(System.Globalization.CultureInfo.InvariantCulture)];
        NodeProcess n1 = c.StartNode(1, backend, null, flags);
        NodeProcess n2 = c.StartNode(2, backend, null, flags);

        // The node is set up as flannel sets it up.
        string link = c.Topology.Ip(c.Topology.Node(1), "link", "show", device);
        Assert.Contains($"mtu {mtu}", link);
        Assert.Contains("10.244.1.0/32", c.Topology.Ip(c.Topology.Node(1), "addr", "show", "dev", device));
        Assert.Contains($"10.244.0.0/16 dev {device}", c.Topology.Ip(c.Topology.Node(1), "route", "show"));
        Assert.Equal($"FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU={mtu}\nFLANNEL_IPMASQ=false\n",
            File.ReadAllText(c.Path_("node1-subnet.env")));
        Assert.Contains("Subnet added: 10.244.2.0/24 via 192.0.2.2", n1.Output);
        Assert.Contains($"queues {queues}", n1.Output);

        ProcessRunner.Result ping = c.Ping(c.Topology.Pod(1), Topology.PodIp(2));
        Assert.True(ping.ExitCode == 0, ping.Stdout + ping.Stderr);
        Assert.Contains("3 received", ping.Stdout);

        c.StartTransfer(1, 2, TransferBytes).AssertIntact(TimeSpan.FromSeconds(90));
        c.StartTransfer(2, 1, TransferBytes, port: 5202).AssertIntact(TimeSpan.FromSeconds(90));

        // SIGTERM: exit 0, device and route gone.
        Assert.Equal(0, n1.Stop(TimeSpan.FromSeconds(10)));
        Assert.Equal(0, n2.Stop(TimeSpan.FromSeconds(10)));
        Assert.DoesNotContain(device, c.Topology.Ip(c.Topology.Node(1), "link", "show"));
        Assert.DoesNotContain("10.244.0.0/16", c.Topology.Ip(c.Topology.Node(1), "route", "show"));
        Assert.Contains("Removed device", n1.Output);

        // With offloads the transfers went through 64 KiB superpackets at both devices and GSO/GRO
        // on the sockets; without them, through none.
        foreach (NodeProcess n in new[] { n1, n2 })
        {
            string o = n.Lines.Single(l => l.Contains("Offload counters:", StringComparison.Ordinal));
            long superIn = Counter(o, @"superpackets in (\d+)"), superOut = Counter(o, @"out (\d+) \(merging");
            long gso = Counter(o, @"GSO sends (\d+)"), gro = Counter(o, @"GRO receives (\d+)");
            if (offload == "on")
            {
                Assert.True(superIn > 100 && superOut > 100 && gso > 100 && gro > 100, o);
            }
            else
            {
                Assert.True(superIn + superOut + gso + gro == 0, o);
            }
        }
    }

    private static long Counter(string line, string pattern) =>
        long.Parse(System.Text.RegularExpressions.Regex.Match(line, pattern).Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>
    /// The udp backend on the wire as tshark reads it: UDP to port 8285 whose payload is the pod's IP
    /// packet itself (decoded as IP from the datagram's first byte: no header of ours before it, the
    /// datagram exactly 8 bytes longer than the packet), as flannel's udp backend and its C proxy send it.
    /// </summary>
    [Fact]
    public void Tshark_reads_the_udp_backends_raw_ip_packet_on_port_8285()
    {
        string tshark = Require.Tool("tshark", "tshark");
        using var c = new Cluster();
        c.StartTwoNodes("udp");
        string pcap = c.Path_("underlay.pcap");
        NodeProcess capture = c.Topology.Start(c.Topology.Node(1), [tshark, "-i", "eth0", "-f", "udp", "-c", "4", "-a", "duration:20", "-w", pcap], "tshark");
        Assert.NotNull(capture.WaitForLine("Capturing on", TimeSpan.FromSeconds(20)));
        Thread.Sleep(300);
        Assert.Equal(0, c.Ping(c.Topology.Pod(1), Topology.PodIp(2), count: 2).ExitCode);
        Assert.True(capture.WaitForExit(TimeSpan.FromSeconds(25)), capture.Output);

        ProcessRunner.Result read = ProcessRunner.Run(tshark, ["-r", pcap, "-d", "udp.port==8285,ip", "-T", "fields", "-E", "separator=|",
            "-e", "udp.srcport", "-e", "udp.dstport", "-e", "udp.length", "-e", "ip.src", "-e", "ip.dst", "-e", "ip.len", "-e", "icmp.type"]);
        Assert.True(read.ExitCode == 0, read.Stderr);
        string[] rows = read.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(4, rows.Length);
        // Fields of the outer and the inner header come comma-separated: outer first, inner last.
        Assert.Equal(2, rows.Count(r => r.EndsWith("|8285|92|192.0.2.1,10.244.1.2|192.0.2.2,10.244.2.2|112,84|8", StringComparison.Ordinal)));
        Assert.Equal(2, rows.Count(r => r.EndsWith("|8285|92|192.0.2.2,10.244.2.2|192.0.2.1,10.244.1.2|112,84|0", StringComparison.Ordinal)));
    }

    [Fact]
    public void No_route_reaches_the_sender_as_icmp_net_unreachable()
    {
        using var c = new Cluster();
        c.Topology.AddNode(1);
        c.Topology.AddNode(2);
        new ClusterFileBuilder().Node(1).Node(2).WriteTo(c.LeasesPath);
        NodeProcess n1 = c.StartNode(1, "udp");

        // From a pod behind the node (forwarded by the node) and from the node itself.
        foreach (string ns in new[] { c.Topology.Pod(1), c.Topology.Node(1) })
        {
            ProcessRunner.Result ping = c.Ping(ns, "10.244.9.9", count: 1);
            Assert.NotEqual(0, ping.ExitCode);
            Assert.Contains("From 10.244.9.0", ping.Stdout);
            Assert.Contains("Destination Net Unreachable", ping.Stdout);
        }
        Assert.Equal(0, n1.Stop(TimeSpan.FromSeconds(10)));
        Assert.Matches(@"ICMP sent [1-9]", n1.Output);
        Assert.Matches(@"NoRoute [1-9]", n1.Output);
    }

    [Fact]
    public void Public_ip_defaults_to_the_address_of_the_default_route_interface()
    {
        using var c = new Cluster();
        c.Topology.AddNode(1);
        c.Topology.AddNode(2);
        c.Topology.Ip(c.Topology.Node(1), "route", "add", "default", "via", "192.0.2.254");
        new ClusterFileBuilder().Node(1).Node(2).WriteTo(c.LeasesPath);
        NodeProcess n = c.Topology.Start(c.Topology.Node(1), [.. SelfCommand.Prefix(), "run", "--leases", c.LeasesPath,
            "--subnet-file", c.Path_("node1-subnet.env"), "--control-socket", c.ControlSocket(1)], "node1");
        Assert.NotNull(n.WaitForLine("Ready:", TimeSpan.FromSeconds(30)));
        Assert.Contains("Lease acquired: 10.244.1.0/24 (public IP 192.0.2.1 on eth0)", n.Output);
        Assert.Contains("listening on 192.0.2.1:8472", n.Output); // the file's config says vxlan
    }
}
