using Dataplane.Lab;
using Dataplane.Node;

using Dataplane.TestSupport;

namespace Dataplane.Integration.Tests;

/// <summary>
/// Every user error of <c>dataplane run</c>: one line on stderr naming what is wrong and where, a
/// non-zero exit, and nothing created (each runs in a node namespace whose links are checked after).
/// </summary>
public class BadInputTests
{
    private static (int Code, string Stderr, string Links) RunNode(Cluster c, string[] args, string[]? wrapper = null)
    {
        ProcessRunner.Result r = c.Topology.Exec(c.Topology.Node(1), [.. wrapper ?? [], .. SelfCommand.Prefix(), "run", .. args,
            "--subnet-file", c.Path_("subnet.env"), "--control-socket", c.ControlSocket(1)], 60_000);
        return (r.ExitCode, r.Stderr.Trim(), c.Topology.Ip(c.Topology.Node(1), "-o", "link", "show"));
    }

    private static void AssertOneLineError(Cluster c, (int Code, string Stderr, string Links) r, string expected)
    {
        AssertOneLine(r.Code, r.Stderr, expected);
        Assert.DoesNotContain("flannel", r.Links);
        Assert.False(File.Exists(c.Path_("subnet.env")), "subnet.env was written although the node did not start");
        Assert.False(File.Exists(c.ControlSocket(1)), "the control socket was created although the node did not start");
    }

    /// <summary>Exit status 1 and exactly one line on stderr, "dataplane: ...", that says <paramref name="expected"/>.</summary>
    internal static void AssertOneLine(int code, string stderr, string expected)
    {
        Assert.Equal(1, code);
        string[] lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, $"expected one line, got {lines.Length}:\n{stderr}");
        Assert.StartsWith("dataplane: ", lines[0]);
        Assert.Contains(expected, lines[0]);
    }

    public static TheoryData<string, string, string> FileCases => new()
    {
        { "missing", "", "no such file" },
        { "directory", "", "cannot read" },
        { "invalid-json", "{\n \"config\": {\"Network\": \"10.244.0.0/16\"},\n \"subnets\": {,}\n}", "invalid JSON at line 3, column" },
        { "no-lease", Leases("\"10.244.2.0-24\": {\"PublicIP\": \"192.0.2.2\"}"), "no lease has PublicIP 192.0.2.1 (this node)" },
        { "overlap", Leases("\"10.244.1.0-24\": {\"PublicIP\": \"192.0.2.1\"}, \"10.244.1.0-24\": {\"PublicIP\": \"192.0.2.2\"}"), "subnets 10.244.1.0/24 and 10.244.1.0/24 overlap" },
        { "outside", Leases("\"10.244.1.0-24\": {\"PublicIP\": \"192.0.2.1\"}, \"10.99.2.0-24\": {\"PublicIP\": \"192.0.2.2\"}"), "subnet 10.99.2.0/24 is outside the network 10.244.0.0/16" },
        { "unknown-backend", "{\"config\": {\"Network\": \"10.244.0.0/16\", \"Backend\": {\"Type\": \"ipsec\"}}, \"subnets\": {\"10.244.1.0-24\": {\"PublicIP\": \"192.0.2.1\"}}}", "unknown backend 'ipsec'" },
        { "vxlan-without-mac", "{\"config\": {\"Network\": \"10.244.0.0/16\", \"Backend\": {\"Type\": \"vxlan\"}}, \"subnets\": {\"10.244.1.0-24\": {\"PublicIP\": \"192.0.2.1\"}}}", "has no BackendData.VtepMAC, which vxlan needs" },
        { "ipv6-only-with-an-ipv4-lease", Ipv6Only("\"10.244.1.0-24\": {\"PublicIP\": \"192.0.2.1\"}"), "lease 10.244.1.0-24 has no IPv6 subnet, and the network is IPv6-only" },
        { "dual-stack-ipv6-subnet-outside", "{\"config\": {\"Network\": \"10.244.0.0/16\", \"EnableIPv6\": true, \"IPv6Network\": \"2001:db8:244::/48\"}, \"subnets\": " +
            "{\"10.244.1.0-24&2001:db8:999:1::-64\": {\"PublicIP\": \"192.0.2.1\", \"PublicIPv6\": \"2001:db8:2::1\"}}}", "IPv6 subnet 2001:db8:999:1::/64 is not a /64 inside the IPv6Network 2001:db8:244::/48" },
    };

    private static string Ipv6Only(string subnets) =>
        $"{{\"config\": {{\"EnableIPv4\": false, \"EnableIPv6\": true, \"IPv6Network\": \"2001:db8:244::/48\"}}, \"subnets\": {{{subnets}}}}}";

    private static string Leases(string subnets) => $"{{\"config\": {{\"Network\": \"10.244.0.0/16\"}}, \"subnets\": {{{subnets}}}}}";

    [Theory]
    [MemberData(nameof(FileCases))]
    public void Lease_file_errors(string kind, string content, string expected)
    {
        using var c = new Cluster();
        c.Topology.AddNode(1, withPod: false);
        string path = c.Path_($"{kind}.json");
        if (kind == "directory")
        {
            Directory.CreateDirectory(path);
        }
        else if (kind != "missing")
        {
            File.WriteAllText(path, content);
        }
        var r = RunNode(c, ["--leases", path, "--public-ip", "192.0.2.1"]);
        AssertOneLineError(c, r, expected);
        Assert.Contains($"lease file {path}", r.Stderr); // where
    }

    [Theory]
    [InlineData("--backend", "geneve", "--backend geneve: unknown backend (supported: udp, vxlan)")]
    [InlineData("--public-ip", "192.0.2.77", "public IP 192.0.2.77 is not an address of this host")]
    [InlineData("--public-ip", "192.0.2", "--public-ip 192.0.2: not an IPv4 address")]
    [InlineData("--iface", "nosuch0", "no interface matches --iface nosuch0")]
    [InlineData("--public-ipv6", "192.0.2.1", "--public-ipv6 192.0.2.1: not a global IPv6 address")]
    [InlineData("--public-ipv6", "fe80::1", "--public-ipv6 fe80::1: not a global IPv6 address")]
    [InlineData("--device", "a/b", "--device a/b: not a valid interface name")]
    [InlineData("--port", "0", "--port 0: not a UDP port")]
    [InlineData("--metrics", "localhost", "--metrics localhost: not ADDR:PORT")]
    [InlineData("--metrics", "192.0.2.77:9100", "--metrics 192.0.2.77:9100: cannot listen: AddressNotAvailable")]
    [InlineData("--icmp-rate", "-1", "the rate must be 0 or more")]
    [InlineData("--queues", "0", "--queues 0: must be 1 to 64")]
    [InlineData("--batch", "0", "--batch 0: must be 1 to 256")]
    public void Flag_errors(string flag, string value, string expected)
    {
        using var c = new Cluster();
        c.Topology.AddNode(1, withPod: false);
        new ClusterFileBuilder().Node(1).Node(2).WriteTo(c.LeasesPath);
        string[] args = flag == "--public-ip" ? ["--leases", c.LeasesPath, flag, value] : ["--leases", c.LeasesPath, "--public-ip", "192.0.2.1", flag, value];
        AssertOneLineError(c, RunNode(c, args), expected);
    }

    [Fact]
    public void An_ipv6_only_network_on_a_node_without_an_ipv6_address()
    {
        using var c = new Cluster();
        c.Topology.AddNode(1, withPod: false);
        File.WriteAllText(c.LeasesPath, Ipv6Only("\"0.0.0.0-0&2001:db8:244:1::-64\": {\"PublicIP\": \"0.0.0.0\", \"PublicIPv6\": \"2001:db8:2::1\"}"));
        AssertOneLineError(c, RunNode(c, ["--leases", c.LeasesPath, "--iface", "eth0"]),
            "the network is IPv6-only (EnableIPv4 false) and this node has no IPv6 underlay address: give --public-ipv6, or an --iface with a global IPv6 address");
    }

    [Fact]
    public void Ip_masq_on_an_ipv6_only_network_is_refused()
    {
        using var c = new Cluster();
        c.Topology.AddNode(1, withPod: false, ipv6: true);
        File.WriteAllText(c.LeasesPath, Ipv6Only("\"0.0.0.0-0&2001:db8:244:1::-64\": {\"PublicIP\": \"0.0.0.0\", \"PublicIPv6\": \"2001:db8:2::1\"}"));
        AssertOneLineError(c, RunNode(c, ["--leases", c.LeasesPath, "--public-ipv6", "2001:db8:2::1", "--ip-masq"]),
            "--ip-masq on an IPv6-only network: not supported (flanneld's IPv6 masquerade rules are ip6tables; this node installs IPv4 rules only)");
    }

    [Fact]
    public void No_lease_source_at_all()
    {
        using var c = new Cluster();
        c.Topology.AddNode(1, withPod: false);
        AssertOneLineError(c, RunNode(c, ["--public-ip", "192.0.2.1"]), "no lease source: give --leases FILE");
    }

    [Fact]
    public void Missing_dev_net_tun_with_source_tun()
    {
        using var c = new Cluster();
        c.Topology.AddNode(1, withPod: false);
        new ClusterFileBuilder().Node(1).Node(2).WriteTo(c.LeasesPath);
        string unshare = Require.Tool("unshare", "util-linux");
        // A private mount namespace where /dev/net is an empty tmpfs: the container without the device.
        // (--source auto, the default, takes the packet source there: PacketSourceTests.)
        var r = RunNode(c, ["--leases", c.LeasesPath, "--public-ip", "192.0.2.1", "--source", "tun"],
            [unshare, "--mount", "--propagation", "private", "/bin/sh", "-c", "mount -t tmpfs none /dev/net && exec \"$0\" \"$@\""]);
        AssertOneLineError(c, r, "--source tun: open /dev/net/tun: ENOENT (No such file or directory): load the tun module (modprobe tun), give the container the device, or use --source packet");
    }

    [Fact]
    public void No_cap_net_admin()
    {
        using var c = new Cluster();
        c.Topology.AddNode(1, withPod: false);
        new ClusterFileBuilder().Node(1).Node(2).WriteTo(c.LeasesPath);
        string setpriv = Require.Tool("setpriv", "util-linux");
        var r = RunNode(c, ["--leases", c.LeasesPath, "--public-ip", "192.0.2.1"],
            [setpriv, "--bounding-set", "-net_admin", "--inh-caps", "-net_admin", "--"]);
        AssertOneLineError(c, r, "needs CAP_NET_ADMIN");
    }

    [Fact]
    public void A_kernel_device_of_the_same_name_is_not_taken_over()
    {
        using var c = new Cluster();
        c.Topology.AddNode(1, withPod: false);
        new ClusterFileBuilder().Node(1).Node(2).WriteTo(c.LeasesPath);
        c.Topology.Ip(c.Topology.Node(1), "link", "add", "flannel.1", "type", "vxlan", "id", "1", "dstport", "8472");
        ProcessRunner.Result r = c.Topology.Exec(c.Topology.Node(1), [.. SelfCommand.Prefix(), "run", "--leases", c.LeasesPath,
            "--public-ip", "192.0.2.1", "--backend", "vxlan", "--subnet-file", c.Path_("subnet.env"), "--control-socket", c.ControlSocket(1)]);
        AssertOneLine(r.ExitCode, r.Stderr, "flannel.1 is a kernel VXLAN device (flanneld's?), not ours: stop flanneld, then delete it (ip link del flannel.1)");
        Assert.Contains("vxlan", c.Topology.Ip(c.Topology.Node(1), "-d", "link", "show", "flannel.1")); // left as it was
        Assert.Single(c.Topology.Ip(c.Topology.Node(1), "-o", "link", "show").Split('\n', StringSplitOptions.RemoveEmptyEntries),
            l => l.Contains("flannel", StringComparison.Ordinal)); // and nothing of ours beside it
        Assert.False(File.Exists(c.Path_("subnet.env")));
    }
}
