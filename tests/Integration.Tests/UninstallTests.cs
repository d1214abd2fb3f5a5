using Dataplane.Lab;
using Dataplane.Node;
using Dataplane.TestSupport;

namespace Dataplane.Integration.Tests;

/// <summary>
/// <c>dataplane uninstall</c> removes what a node of ours left (a kept device, a killed node's
/// rules and files), says each thing in one line, finds nothing the second time, and never pulls a
/// device out from under a running node unless told <c>--force</c>. Every path is given explicitly:
/// the test never touches the host's own /run/flannel, /etc/cni or /opt/cni.
/// </summary>
public class UninstallTests
{
    private static ProcessRunner.Result Uninstall(Cluster c, params string[] extra) =>
        c.Topology.Exec(c.Topology.Node(1), [.. c.Program, "uninstall", "--control-socket", c.ControlSocket(1),
            "--subnet-file", c.Path_("node1-subnet.env"), "--vtep-mac-file", c.Path_("node1.vtepmac"),
            "--cni-conf", c.Path_("10-flannel.conflist"), "--cni-plugin", c.Path_("flannel"), .. extra], 60_000);

    [Theory]
    [InlineData("tun")]
    [InlineData("packet")]
    public void A_kept_node_is_removed_line_by_line_and_a_second_run_finds_nothing(string source)
    {
        using Cluster c = Cluster.WithTwoNodes();
        string iptables = Require.Tool("iptables", "iptables");
        string node1 = c.Topology.Node(1);
        File.WriteAllText(c.Path_("node1.vtepmac"), "0e:00:00:00:00:01\n"); // as an etcd or Kubernetes node keeps it
        NodeProcess n1 = c.StartNode(1, "vxlan", null, "--source", source, "--on-exit", "keep", "--ip-masq");
        Assert.Equal(0, n1.Stop(TimeSpan.FromSeconds(10)));
        Assert.Contains("flannel.1", c.Topology.Ip(node1, "link", "show"));

        ProcessRunner.Result r = Uninstall(c);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        string[] lines = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Contains(lines, l => l.StartsWith("removed device flannel.1 (", StringComparison.Ordinal));
        Assert.Contains($"removed VTEP MAC file {c.Path_("node1.vtepmac")}", lines);
        Assert.Contains("removed iptables chain nat FLANNEL-POSTRTG and the jump into it", lines);
        Assert.Contains("removed iptables chain filter FLANNEL-FWD and the jump into it", lines);
        Assert.Contains($"removed subnet.env {c.Path_("node1-subnet.env")}", lines);
        Assert.All(lines, l => Assert.StartsWith("removed ", l));
        Assert.DoesNotContain("flannel", c.Topology.Ip(node1, "link", "show"));
        Assert.DoesNotContain("10.244.0.0/16", c.Topology.Ip(node1, "route", "show"));
        Assert.DoesNotContain("FLANNEL", c.Topology.Exec(node1, [iptables, "-S"]).Stdout + c.Topology.Exec(node1, [iptables, "-t", "nat", "-S"]).Stdout);
        Assert.False(File.Exists(c.Path_("node1-subnet.env")) || File.Exists(c.Path_("node1.vtepmac")));

        ProcessRunner.Result again = Uninstall(c);
        Assert.Equal(0, again.ExitCode);
        Assert.Equal("nothing of dataplane is left on this host", again.Stdout.Trim());
    }

    [Fact]
    public void What_a_killed_node_left_its_rules_control_socket_and_subnet_env_is_removed()
    {
        using Cluster c = Cluster.WithTwoNodes();
        string iptables = Require.Tool("iptables", "iptables");
        NodeProcess n1 = c.StartNode(1, "udp", null, "--ip-masq");
        n1.Kill();
        Assert.True(n1.WaitForExit(TimeSpan.FromSeconds(10)));
        Assert.True(File.Exists(c.ControlSocket(1)));

        ProcessRunner.Result r = Uninstall(c);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        Assert.Contains($"removed control socket {c.ControlSocket(1)}", r.Stdout);
        Assert.Contains("removed iptables chain nat FLANNEL-POSTRTG and the jump into it", r.Stdout);
        Assert.Contains($"removed subnet.env {c.Path_("node1-subnet.env")}", r.Stdout);
        Assert.DoesNotContain("FLANNEL", c.Topology.Exec(c.Topology.Node(1), [iptables, "-t", "nat", "-S"]).Stdout);
        Assert.False(File.Exists(c.ControlSocket(1)));
    }

    [Fact]
    public void A_running_node_is_refused_with_its_pid_and_force_stops_it_first()
    {
        using Cluster c = Cluster.WithTwoNodes();
        NodeProcess n1 = c.StartNode(1, "vxlan");
        ProcessRunner.Result refused = Uninstall(c);
        BadInputTests.AssertOneLine(refused.ExitCode, refused.Stderr, "a node is running on flannel.1 (pid ");
        Assert.Contains("uninstall --force", refused.Stderr);
        Assert.False(n1.HasExited, "the node was stopped without --force");

        ProcessRunner.Result forced = Uninstall(c, "--force");
        Assert.True(forced.ExitCode == 0, forced.Stdout + forced.Stderr);
        Assert.Contains("stopping the node on flannel.1 (pid ", forced.Stdout);
        Assert.True(n1.WaitForExit(TimeSpan.FromSeconds(15)));
        Assert.Equal(0, n1.ExitCode);
        Assert.DoesNotContain("flannel", c.Topology.Ip(c.Topology.Node(1), "link", "show"));
    }

    [Fact]
    public void With_cni_the_cni_config_plugin_and_bridge_go_too()
    {
        using Cluster c = Cluster.WithTwoNodes();
        File.WriteAllText(c.Path_("10-flannel.conflist"), "{}");
        File.WriteAllText(c.Path_("flannel"), "");
        c.Topology.Ip(c.Topology.Node(1), "link", "add", "cni0", "type", "bridge");
        ProcessRunner.Result without = Uninstall(c);
        Assert.True(File.Exists(c.Path_("10-flannel.conflist")), "the CNI config went without --cni");

        ProcessRunner.Result r = Uninstall(c, "--cni");
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        Assert.Contains($"removed CNI config {c.Path_("10-flannel.conflist")}", r.Stdout);
        Assert.Contains($"removed CNI plugin {c.Path_("flannel")}", r.Stdout);
        Assert.Contains("removed bridge cni0", r.Stdout);
        Assert.DoesNotContain("cni0", c.Topology.Ip(c.Topology.Node(1), "link", "show"));
        Assert.Equal(0, without.ExitCode);
    }
}
