using System.Text.RegularExpressions;
using Dataplane.Lab;
using Dataplane.Node;
using Dataplane.TestSupport;

namespace Dataplane.Integration.Tests;

/// <summary>
/// Dual-stack clusters as flannel keeps them (EnableIPv6, keys <c>10.244.i.0-24&amp;2001:db8:244:i::-64</c>,
/// PublicIPv6, BackendV6Data): two nodes of ours, and ours beside a kernel node programmed as
/// flanneld programs flannel.1 and flannel-v6.1. Documentation prefixes only: underlay
/// 2001:db8:2::/64, overlay 2001:db8:244::/48.
/// </summary>
public class DualStackTests
{
    private const long TransferBytes = 30L << 20;

    [Theory]
    [InlineData("vxlan", "flannel.1", 1450, 1430, "on")]
    [InlineData("vxlan", "flannel.1", 1450, 1430, "off")]
    [InlineData("udp", "flannel0", 1472, 1452, "on")]
    public void Two_of_our_nodes_carry_both_families_between_pods(string backend, string device, int mtu, int mtu6, string offload)
    {
        using var c = new Cluster();
        c.DualStackPair(backend);
        NodeProcess n1 = c.StartNode(1, backend, null, "--offload", offload);
        NodeProcess n2 = c.StartNode(2, backend, null, "--offload", offload);

        // The device as flanneld sets up flannel-v6.1 (address, route), with the IPv6 underlay's MTU on the route.
        string node1 = c.Topology.Node(1);
        Assert.Contains("2001:db8:244:1::/128", c.Topology.Ip(node1, "-6", "addr", "show", "dev", device));
        Assert.Matches($@"2001:db8:244::/48 dev {Regex.Escape(device)} .*mtu {mtu6}", c.Topology.Ip(node1, "-6", "route", "show"));
        Assert.Contains($"mtu {mtu}", c.Topology.Ip(node1, "link", "show", device));
        Assert.Equal($"FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_IPV6_NETWORK=2001:db8:244::/48\n" +
            $"FLANNEL_IPV6_SUBNET=2001:db8:244:1::1/64\nFLANNEL_MTU={mtu}\nFLANNEL_IPMASQ=false\n", File.ReadAllText(c.Path_("node1-subnet.env")));
        Assert.Contains("Subnet added: 10.244.2.0/24 and 2001:db8:244:2::/64 via 192.0.2.2 and 2001:db8:2::2", n1.Output);
        Assert.Contains("listening on 192.0.2.1:", n1.Output);
        Assert.Contains("and [2001:db8:2::1]:", n1.Output);

        foreach (string target in new[] { Topology.PodIpv6(2), Topology.PodIp(2) })
        {
            ProcessRunner.Result ping = c.Ping(c.Topology.Pod(1), target);
            Assert.True(ping.ExitCode == 0, target + ": " + ping.Stdout + ping.Stderr);
        }
        c.StartTransfer(1, 2, TransferBytes, ipv6: true).AssertIntact(TimeSpan.FromSeconds(90));
        c.StartTransfer(2, 1, TransferBytes, port: 5202, ipv6: true).AssertIntact(TimeSpan.FromSeconds(90));
        c.StartTransfer(1, 2, TransferBytes, port: 5203).AssertIntact(TimeSpan.FromSeconds(90));

        Assert.Equal(0, n1.Stop(TimeSpan.FromSeconds(10)));
        Assert.Equal(0, n2.Stop(TimeSpan.FromSeconds(10)));
        Assert.DoesNotContain("2001:db8:244::/48", c.Topology.Ip(node1, "-6", "route", "show"));
        foreach (NodeProcess n in new[] { n1, n2 })
        {
            string counters = Assert.Single(n.Lines, l => l.Contains("Counters:", StringComparison.Ordinal));
            string drops = counters[counters.IndexOf("drops:", StringComparison.Ordinal)..];
            foreach (string reason in new[] { "UnknownPeer", "NotOurMac", "MalformedInner", "InnerSource", "InnerDestination", "WrongUnderlayFamily", "NoRoute" })
            {
                Assert.DoesNotContain(reason, drops);
            }
        }
    }

    /// <summary>The kernel is the independent reader: our node beside flannel.1 and flannel-v6.1 programmed as flanneld programs them.</summary>
    [Theory]
    [InlineData("on")]
    [InlineData("off")]
    public void Kernel_flannel_v6_1_and_our_node_interoperate_in_both_families_and_directions(string offload)
    {
        using var c = new Cluster();
        c.DualStackPair();
        c.ProgramKernelVxlanNode(2, ClusterFileBuilder.VtepMac(2), [(1, ClusterFileBuilder.VtepMac(1))]);
        c.Topology.AddKernelVxlanV6(2, ClusterFileBuilder.VtepMacV6(2), [(1, ClusterFileBuilder.VtepMacV6(1))]);
        NodeProcess ours = c.StartNode(1, "vxlan", null, "--offload", offload);

        foreach ((int from, string target) in new[] { (1, Topology.PodIpv6(2)), (2, Topology.PodIpv6(1)), (1, Topology.PodIp(2)), (2, Topology.PodIp(1)) })
        {
            ProcessRunner.Result ping = c.Ping(c.Topology.Pod(from), target);
            Assert.True(ping.ExitCode == 0, target + ": " + ping.Stdout + ping.Stderr);
        }
        c.StartTransfer(1, 2, TransferBytes, ipv6: true).AssertIntact(TimeSpan.FromSeconds(90));
        c.StartTransfer(2, 1, TransferBytes, port: 5202, ipv6: true).AssertIntact(TimeSpan.FromSeconds(90));
        c.StartTransfer(1, 2, TransferBytes, port: 5203).AssertIntact(TimeSpan.FromSeconds(90));
        c.StartTransfer(2, 1, TransferBytes, port: 5204).AssertIntact(TimeSpan.FromSeconds(90));

        Assert.Equal(0, ours.Stop(TimeSpan.FromSeconds(10)));
        string counters = Assert.Single(ours.Lines, l => l.Contains("Counters:", StringComparison.Ordinal));
        string drops = counters[counters.IndexOf("drops:", StringComparison.Ordinal)..];
        foreach (string reason in new[] { "UnknownPeer", "BadVxlanFlags", "WrongVni", "NotOurMac", "BadEtherType", "MalformedInner", "InnerSource", "InnerDestination", "WrongUnderlayFamily" })
        {
            Assert.DoesNotContain(reason, drops);
        }
    }

    /// <summary>
    /// A kernel dual-stack node with default offloads (no ethtool step: it leaves inner checksums
    /// unfinished and sends tunnel GSO superpackets) and ours carry 30 MB each way intact, IPv4 and
    /// IPv6, over the switch's bridge and over a direct veth pair (nothing between the nodes: the
    /// kernel's superpackets reach our socket as they left flannel.1 and flannel-v6.1).
    /// </summary>
    [Theory]
    [InlineData("bridge", false)]
    [InlineData("bridge", true)]
    [InlineData("direct veth", false)]
    [InlineData("direct veth", true)]
    public void A_kernel_dual_stack_peer_with_default_offloads_carries_30_MB_each_way(string underlay, bool ipv6)
    {
        using var c = new Cluster();
        c.DualStackPair();
        if (underlay == "direct veth")
        {
            c.Topology.ConnectDirectly(1, 2);
        }
        c.ProgramKernelVxlanNode(2, ClusterFileBuilder.VtepMac(2), [(1, ClusterFileBuilder.VtepMac(1))], finishChecksums: false);
        c.Topology.AddKernelVxlanV6(2, ClusterFileBuilder.VtepMacV6(2), [(1, ClusterFileBuilder.VtepMacV6(1))]);
        NodeProcess ours = c.StartNode(1, "vxlan");

        c.StartTransfer(2, 1, TransferBytes, ipv6: ipv6).AssertIntact(TimeSpan.FromSeconds(90));
        c.StartTransfer(1, 2, TransferBytes, port: 5202, ipv6: ipv6).AssertIntact(TimeSpan.FromSeconds(90));

        Assert.Equal(0, ours.Stop(TimeSpan.FromSeconds(10)));
        string counters = Assert.Single(ours.Lines, l => l.Contains("Counters:", StringComparison.Ordinal));
        string drops = counters[counters.IndexOf("drops:", StringComparison.Ordinal)..];
        foreach (string reason in new[] { "UnknownPeer", "BadVxlanFlags", "WrongVni", "NotOurMac", "BadEtherType", "MalformedInner", "InnerSource", "InnerDestination", "BadInnerChecksum" })
        {
            Assert.DoesNotContain(reason, drops);
        }
    }

    /// <summary>tshark, the independent reader: VNI 1 in IPv6 outer packets, flannel-v6.1's MACs inside, IPv6 pods' packets within.</summary>
    [Fact]
    public void Tshark_reads_vni_1_and_the_v6_vtep_macs_in_ipv6_outer_packets()
    {
        string tshark = Require.Tool("tshark", "tshark");
        using var c = new Cluster();
        c.DualStackPair();
        c.StartNode(1, "vxlan");
        c.StartNode(2, "vxlan");

        string pcap = c.Path_("underlay6.pcap");
        NodeProcess capture = c.Topology.Start(c.Topology.Node(1), [tshark, "-i", "eth0", "-f", "ip6 and udp port 8472", "-c", "4", "-a", "duration:20", "-w", pcap], "tshark");
        Assert.NotNull(capture.WaitForLine("Capturing on", TimeSpan.FromSeconds(20)));
        Thread.Sleep(300);
        ProcessRunner.Result ping = c.Ping(c.Topology.Pod(1), Topology.PodIpv6(2), count: 2);
        Assert.True(ping.ExitCode == 0, ping.Stdout);
        Assert.True(capture.WaitForExit(TimeSpan.FromSeconds(25)), capture.Output);

        ProcessRunner.Result read = ProcessRunner.Run(tshark, ["-r", pcap, "-d", "udp.port==8472,vxlan", "-T", "fields", "-E", "separator=|",
            "-e", "udp.dstport", "-e", "vxlan.flags", "-e", "vxlan.vni", "-e", "eth.dst", "-e", "eth.src", "-e", "ipv6.src", "-e", "ipv6.dst", "-e", "icmpv6.type"]);
        Assert.True(read.ExitCode == 0, read.Stderr);
        string[] lines = read.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length >= 4, read.Stdout);
        // Outer and inner fields come comma-separated, outer first: IPv6 underlay, IPv6 pods, echo request (128).
        string request = lines.First(l => l.Contains("|2001:db8:2::1,2001:db8:244:1::2|2001:db8:2::2,2001:db8:244:2::2|128", StringComparison.Ordinal));
        string[] f = request.Split('|');
        Assert.Equal("8472", f[0]);
        Assert.Equal("0x0800", f[1]);
        Assert.Equal("1", f[2]);
        Assert.Equal(ClusterFileBuilder.VtepMacV6(2), f[3].Split(',')[^1]);
        Assert.Equal(ClusterFileBuilder.VtepMacV6(1), f[4].Split(',')[^1]);
        Assert.Contains(lines, l => l.Contains("|2001:db8:2::2,2001:db8:244:2::2|2001:db8:2::1,2001:db8:244:1::2|129", StringComparison.Ordinal));
    }

    /// <summary>A kernel flannel-v6.1 without the permanent neighbour asks for our IPv6 VTEP address; our advertisement answers it.</summary>
    [Fact]
    public void A_kernel_peer_that_solicits_our_ipv6_vtep_address_gets_an_advertisement()
    {
        using var c = new Cluster();
        c.DualStackPair();
        c.ProgramKernelVxlanNode(2, ClusterFileBuilder.VtepMac(2), [(1, ClusterFileBuilder.VtepMac(1))]);
        c.Topology.AddKernelVxlanV6(2, ClusterFileBuilder.VtepMacV6(2), [(1, ClusterFileBuilder.VtepMacV6(1))]);
        string n2 = c.Topology.Node(2);
        // Take away the permanent neighbour and let multicast reach us: the kernel must solicit 2001:db8:244:1::.
        c.Topology.Ip(n2, "-6", "neigh", "del", "2001:db8:244:1::", "dev", "flannel-v6.1");
        ProcessRunner.Check(Require.Tool("bridge", "iproute2"), "-n", n2, "fdb", "append", "00:00:00:00:00:00", "dev", "flannel-v6.1", "dst", Topology.UnderlayIpv6(1));
        c.StartNode(1, "vxlan");

        ProcessRunner.Result ping = c.Ping(c.Topology.Pod(2), Topology.PodIpv6(1));
        Assert.True(ping.ExitCode == 0, ping.Stdout + ping.Stderr);
        string neighbour = c.Topology.Ip(n2, "-6", "neigh", "show", "2001:db8:244:1::", "dev", "flannel-v6.1");
        Assert.Contains($"lladdr {ClusterFileBuilder.VtepMacV6(1)}", neighbour); // learned from our advertisement
        ProcessRunner.Result stats = ProcessRunner.Run(SelfCommand.Prefix()[0], [.. SelfCommand.Prefix().Skip(1), "stats", "--control-socket", c.ControlSocket(1), "--once"]);
        Assert.True(long.Parse(Regex.Match(stats.Stdout, @"ND replies (\d+)").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) >= 1, stats.Stdout);
    }

    /// <summary>
    /// The udp backend (ours alone: flannel's is IPv4-only) carries IPv6 between our nodes over the
    /// IPv4 underlay when a node has no IPv6 address; ICMPv6 no-route reaches a pod that asks for a
    /// subnet nobody holds.
    /// </summary>
    [Fact]
    public void The_udp_backend_carries_ipv6_over_ipv4_when_a_node_has_no_ipv6_underlay()
    {
        using var c = new Cluster();
        c.Topology.AddNode(1, ipv6: true);
        c.Topology.AddNode(2, ipv6: true);
        c.Topology.Ip(c.Topology.Node(2), "addr", "del", $"{Topology.UnderlayIpv6(2)}/64", "dev", "eth0");
        new ClusterFileBuilder("udp").DualStack().Node(1).Node(2, publicIpv6: "").WriteTo(c.LeasesPath);
        NodeProcess n1 = c.StartNode(1, "udp");
        NodeProcess n2 = c.StartNode(2, "udp");
        Assert.Contains("Subnet added: 10.244.2.0/24 and 2001:db8:244:2::/64 via 192.0.2.2", n1.Output);
        Assert.Contains("IPv4 (no IPv6 address", n2.Output);

        ProcessRunner.Result ping = c.Ping(c.Topology.Pod(1), Topology.PodIpv6(2));
        Assert.True(ping.ExitCode == 0, ping.Stdout + ping.Stderr);
        c.StartTransfer(2, 1, TransferBytes, ipv6: true).AssertIntact(TimeSpan.FromSeconds(90));

        ProcessRunner.Result unreachable = c.Ping(c.Topology.Pod(1), "2001:db8:244:9::2", count: 1);
        Assert.NotEqual(0, unreachable.ExitCode);
        Assert.Contains("No route", unreachable.Stdout + unreachable.Stderr, StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>An IPv6-only network (EnableIPv4 false): no IPv4 on the device, IPv6 sockets only, subnet.env's IPv6 lines only.</summary>
    [Theory]
    [InlineData("vxlan", "flannel.1", 1430)]
    [InlineData("udp", "flannel0", 1452)]
    public void An_ipv6_only_network_is_carried_between_two_of_our_nodes(string backend, string device, int mtu)
    {
        using var c = new Cluster();
        c.Topology.AddNode(1, ipv6: true);
        c.Topology.AddNode(2, ipv6: true);
        new ClusterFileBuilder(backend).Ipv6Only().Node(1).Node(2).WriteTo(c.LeasesPath);
        NodeProcess n1 = c.StartNode(1, backend);
        NodeProcess n2 = c.StartNode(2, backend);

        string node1 = c.Topology.Node(1);
        Assert.Contains($"mtu {mtu}", c.Topology.Ip(node1, "link", "show", device));
        Assert.DoesNotContain("inet ", c.Topology.Ip(node1, "addr", "show", "dev", device));
        Assert.Contains("2001:db8:244:1::/128", c.Topology.Ip(node1, "-6", "addr", "show", "dev", device));
        Assert.DoesNotContain(device, c.Topology.Ip(node1, "route", "show"));
        Assert.Equal($"FLANNEL_IPV6_NETWORK=2001:db8:244::/48\nFLANNEL_IPV6_SUBNET=2001:db8:244:1::1/64\nFLANNEL_MTU={mtu}\nFLANNEL_IPMASQ=false\n",
            File.ReadAllText(c.Path_("node1-subnet.env")));
        Assert.Contains("Subnet added: 2001:db8:244:2::/64 via 2001:db8:2::2", n1.Output);
        Assert.Contains("listening on [2001:db8:2::1]:", n1.Output);

        ProcessRunner.Result ping = c.Ping(c.Topology.Pod(1), Topology.PodIpv6(2));
        Assert.True(ping.ExitCode == 0, ping.Stdout + ping.Stderr);
        c.StartTransfer(1, 2, TransferBytes, ipv6: true).AssertIntact(TimeSpan.FromSeconds(90));
        c.StartTransfer(2, 1, TransferBytes, port: 5202, ipv6: true).AssertIntact(TimeSpan.FromSeconds(90));

        Assert.Equal(0, n1.Stop(TimeSpan.FromSeconds(10)));
        Assert.Equal(0, n2.Stop(TimeSpan.FromSeconds(10)));
        Assert.DoesNotContain(device, c.Topology.Ip(node1, "link", "show"));
        Assert.Contains("default", c.Topology.Ip(c.Topology.Pod(1), "route", "show")); // nothing of anyone's IPv4 routing touched
        // Only IPv6 crossed: the receiving devices took coalesced IPv6 superpackets (GSO_TCPV6), as they take IPv4 ones.
        foreach (NodeProcess n in new[] { n1, n2 })
        {
            string offloads = Assert.Single(n.Lines, l => l.Contains("Offload counters:", StringComparison.Ordinal));
            Match merged = Regex.Match(offloads, @"\(merging (\d+) packets\)");
            Assert.True(merged.Success && long.Parse(merged.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) > 1000, offloads);
        }
    }

    /// <summary>An IPv6-only network beside a kernel node with flannel-v6.1 alone, programmed as flanneld programs it.</summary>
    [Fact]
    public void Kernel_flannel_v6_1_and_our_node_share_an_ipv6_only_network()
    {
        using var c = new Cluster();
        c.Topology.AddNode(1, ipv6: true);
        c.Topology.AddNode(2, ipv6: true);
        new ClusterFileBuilder().Ipv6Only().Node(1).Node(2).WriteTo(c.LeasesPath);
        c.Topology.AddKernelVxlanV6(2, ClusterFileBuilder.VtepMacV6(2), [(1, ClusterFileBuilder.VtepMacV6(1))]);
        NodeProcess ours = c.StartNode(1, "vxlan");

        foreach ((int from, string target) in new[] { (1, Topology.PodIpv6(2)), (2, Topology.PodIpv6(1)) })
        {
            ProcessRunner.Result ping = c.Ping(c.Topology.Pod(from), target);
            Assert.True(ping.ExitCode == 0, target + ": " + ping.Stdout + ping.Stderr);
        }
        c.StartTransfer(1, 2, TransferBytes, ipv6: true).AssertIntact(TimeSpan.FromSeconds(90));
        c.StartTransfer(2, 1, TransferBytes, port: 5202, ipv6: true).AssertIntact(TimeSpan.FromSeconds(90));
        Assert.Equal(0, ours.Stop(TimeSpan.FromSeconds(10)));
        string counters = Assert.Single(ours.Lines, l => l.Contains("Counters:", StringComparison.Ordinal));
        Assert.DoesNotContain("NotOurMac", counters);
        Assert.DoesNotContain("WrongUnderlayFamily", counters);
    }
}
