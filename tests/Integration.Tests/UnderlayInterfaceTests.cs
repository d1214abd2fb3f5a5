using Dataplane.Lab;
using Dataplane.Node;

namespace Dataplane.Integration.Tests;

/// <summary>
/// flanneld's choice of the underlay interface with no --public-ip: each --iface in order (a name or
/// an address), then each --iface-regex (addresses first, then names), then --iface-can-reach; the
/// first found gives the lease its public IP. Node 1 has eth0 (192.0.2.1) and a second interface
/// uplink1 (198.51.100.1/24); the start-up lines say which was chosen and by which flag.
/// </summary>
public class UnderlayInterfaceTests
{
    [Theory]
    [InlineData("eth0 (--iface 192.0.2.1)", "192.0.2.1", "--iface", "nosuch", "--iface", "192.0.2.1")]
    [InlineData("uplink1 (--iface uplink1)", "198.51.100.1", "--iface", "uplink1", "--iface", "eth0")]
    [InlineData("uplink1 (--iface-regex ^198\\.51\\.)", "198.51.100.1", "--iface-regex", "^10\\.99\\.", "--iface-regex", "^198\\.51\\.")]
    [InlineData("eth0 (--iface-regex ^eth)", "192.0.2.1", "--iface-regex", "^eth")]
    [InlineData("uplink1 (--iface-can-reach 198.51.100.77)", "198.51.100.1", "--iface", "nosuch", "--iface-can-reach", "198.51.100.77")]
    public void The_first_interface_found_in_flanneld_s_order_gives_the_public_ip(string chosen, string publicIp, params string[] flags)
    {
        using var c = new Cluster();
        c.Topology.AddNode(1);
        c.Topology.AddNode(2);
        string node1 = c.Topology.Node(1);
        c.Topology.Ip(node1, "link", "add", "uplink1", "type", "veth", "peer", "name", "uplink1p"); // no dummy module here
        c.Topology.Ip(node1, "addr", "add", "198.51.100.1/24", "dev", "uplink1");
        c.Topology.Ip(node1, "link", "set", "uplink1p", "up");
        c.Topology.Ip(node1, "link", "set", "uplink1", "up");
        new ClusterFileBuilder().Node(1, publicIp: publicIp).Node(2).WriteTo(c.LeasesPath);
        NodeProcess p = c.Topology.Start(node1, [.. c.Program, "run", "--leases", c.LeasesPath, "--subnet-file", c.Path_("node1-subnet.env"),
            "--control-socket", c.ControlSocket(1), .. flags], "node1");
        Assert.True(p.WaitForLine("Ready:", TimeSpan.FromSeconds(30)) is not null, p.Output);
        Assert.Contains($"Underlay interface {chosen}", p.Output);
        Assert.Contains($"(public IP {publicIp} on {chosen.Split(' ')[0]})", p.Output);
        Assert.Equal(0, p.Stop(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public void Nothing_matching_is_one_line_naming_what_was_tried()
    {
        using var c = new Cluster();
        c.Topology.AddNode(1);
        new ClusterFileBuilder().Node(1).WriteTo(c.LeasesPath);
        ProcessRunner.Result r = c.Topology.Exec(c.Topology.Node(1), [.. c.Program, "run", "--leases", c.LeasesPath, "--subnet-file", c.Path_("s.env"),
            "--iface", "nosuch", "--iface-regex", "^wlan", "--iface-can-reach", "203.0.113.9"]);
        Assert.Equal(1, r.ExitCode);
        Assert.Equal("dataplane: no interface matches --iface nosuch, --iface-regex ^wlan, --iface-can-reach 203.0.113.9 (no route from an address of this host)",
            r.Stderr.Trim().Split('\n')[^1]);
    }
}
