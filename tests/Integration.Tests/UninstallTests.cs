using System.Text.RegularExpressions;
using Dataplane.Integration.Tests.Kube;
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
public partial class UninstallTests
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

    /// <summary>
    /// The README's uninstall, as a node of etcd meets it: a node of each backend and source runs with
    /// <c>--ip-masq</c> (and for two, <c>--on-exit keep</c>: the kept TUN device), carries traffic, and is
    /// killed (SIGKILL); the CNI files and cni0 are put there as the DaemonSet's init container and the
    /// bridge plugin would. Then <c>uninstall --cni --release-lease</c> with the node's etcd flags leaves
    /// node 1 as it was before the node started (<see cref="HostState"/>) and etcd as it was (node 2's
    /// lease and its etcd lease, nothing of ours); a second run finds nothing.
    /// </summary>
    [Theory]
    [InlineData("vxlan", "tun", false)]
    [InlineData("vxlan", "packet", false)]
    [InlineData("udp", "tun", false)]
    [InlineData("vxlan", "tun", true)]
    [InlineData("udp", "packet", true)]
    public void After_a_sigkill_uninstall_with_release_lease_leaves_host_and_etcd_as_before(string backend, string source, bool keep)
    {
        using var c = new Cluster();
        EtcdTests.StartEtcd(c);
        c.Topology.AddNode(1);
        c.Topology.AddNode(2);
        // Node 2 reuses the lease a flanneld left; node 1 is given the only other subnet, where its pod sits.
        EtcdTests.Etcdctl(c, "put", "/coreos.com/network/config",
            $$$"""{"Network":"10.244.0.0/16","SubnetLen":24,"SubnetMin":"10.244.1.0","SubnetMax":"10.244.2.0","Backend":{"Type":"{{{backend}}}"}}""");
        string backendData = backend == "vxlan" ? """{"VNI":1,"VtepMAC":"0e:22:22:22:22:22"}""" : "null";
        EtcdTests.Etcdctl(c, "put", "/coreos.com/network/subnets/10.244.2.0-24", $$"""{"PublicIP":"192.0.2.2","BackendType":"{{backend}}","BackendData":{{backendData}}}""");
        string[] etcd = ["--etcd-endpoints", EtcdTests.Endpoint];
        EtcdTests.StartNode(c, 2, "--backend", backend);
        string before = HostState(c);
        string storeBefore = EtcdState(c);

        NodeProcess n1 = EtcdTests.StartNode(c, 1, ["--backend", backend, "--source", source, "--ip-masq", .. (keep ? new[] { "--on-exit", "keep" } : [])]);
        Assert.True(c.Ping(c.Topology.Pod(1), Topology.PodIp(2)).ExitCode == 0, "no traffic before the kill");
        InstallCni(c);
        n1.Kill();
        Assert.True(n1.WaitForExit(TimeSpan.FromSeconds(10)));
        Assert.NotEqual(before, HostState(c));

        ProcessRunner.Result r = Uninstall(c, ["--cni", "--release-lease", .. etcd]);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        Assert.Contains("removed lease /coreos.com/network/subnets/10.244.1.0-24 from etcd (PublicIP 192.0.2.1; its etcd lease revoked)", r.Stdout);
        Assert.All(r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries), l => Assert.StartsWith("removed ", l));
        Assert.Equal(before, HostState(c));
        Assert.Equal(storeBefore, EtcdState(c));

        ProcessRunner.Result again = Uninstall(c, ["--cni", "--release-lease", .. etcd]);
        Assert.True(again.ExitCode == 0, again.Stdout + again.Stderr);
        Assert.Equal("nothing of dataplane is left on this host", again.Stdout.Trim());
    }

    /// <summary>
    /// The same for a node of the Kubernetes API: after its SIGKILL, <c>--release-lease --kube-subnet-mgr</c>
    /// (NODE_NAME from the environment, as the uninstall DaemonSet gives it) removes the lease annotations
    /// it published, leaving the Node's other annotations (the operator's public-ip-overwrite) and podCIDR.
    /// </summary>
    [Fact]
    public void A_kubernetes_node_s_lease_annotations_are_released_and_the_rest_of_the_node_stays()
    {
        using var k = new KubeCluster("vxlan");
        var operatorSet = new Dictionary<string, string> { [KubeCluster.Prefix + "public-ip-overwrite"] = "192.0.2.1" };
        k.Register(1, annotations: operatorSet);
        k.Register(2);
        k.StartNode(2);
        string before = HostState(k.C);
        NodeProcess n1 = k.StartNode(1, "--ip-masq");
        Assert.Contains(KubeCluster.Prefix + "backend-data", k.Api.Annotations("node1").Keys);
        n1.Kill();
        Assert.True(n1.WaitForExit(TimeSpan.FromSeconds(10)));

        string[] kube = ["--release-lease", "--kube-subnet-mgr", "--kube-api-url", k.Api.Url];
        ProcessRunner.Result r = Uninstall(k.C, [.. kube], "NODE_NAME=node1");
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        Assert.True(r.Stdout.Contains("removed lease of Node node1 from the Kubernetes API (annotations " + KubeCluster.Prefix + "backend-data, ", StringComparison.Ordinal), r.Stdout);
        Assert.Equal(operatorSet, k.Api.Annotations("node1"));
        Assert.Equal(KubeCluster.PodCidr(1), k.Api.Node("node1")!["spec"]!["podCIDR"]!.GetValue<string>());
        Assert.Equal(before, HostState(k.C));

        ProcessRunner.Result again = Uninstall(k.C, [.. kube], "NODE_NAME=node1");
        Assert.Equal("nothing of dataplane is left on this host", again.Stdout.Trim());
    }

    [Fact]
    public void Release_lease_without_a_store_is_one_line_and_removes_nothing()
    {
        using Cluster c = Cluster.WithTwoNodes();
        File.WriteAllText(c.Path_("node1-subnet.env"), "FLANNEL_NETWORK=10.244.0.0/16\n");
        ProcessRunner.Result r = Uninstall(c, "--release-lease");
        BadInputTests.AssertOneLine(r.ExitCode, r.Stderr, "--release-lease: name the store our lease is in, as the node was run: --etcd-endpoints URL, or --kube-subnet-mgr");
        Assert.True(File.Exists(c.Path_("node1-subnet.env")));
    }

    private static ProcessRunner.Result Uninstall(Cluster c, string[] extra, string environment) =>
        c.Topology.Exec(c.Topology.Node(1), ["env", environment, .. c.Program, "uninstall", "--control-socket", c.ControlSocket(1),
            "--subnet-file", c.Path_("node1-subnet.env"), "--vtep-mac-file", c.Path_("node1.vtepmac"),
            "--cni-conf", c.Path_("10-flannel.conflist"), "--cni-plugin", c.Path_("flannel"), .. extra], 60_000);

    /// <summary>What the DaemonSet's init container and the bridge plugin put on a node.</summary>
    private static void InstallCni(Cluster c)
    {
        File.WriteAllText(c.Path_("10-flannel.conflist"), "{}");
        File.WriteAllText(c.Path_("flannel"), "");
        c.Topology.Ip(c.Topology.Node(1), "link", "add", "cni0", "type", "bridge");
    }

    /// <summary>
    /// Node 1 as an operator compares it: <c>ip -d link</c>, both route tables, the neighbours a program
    /// set (permanent: not the kernel's ARP cache, which traffic fills), the iptables and ip6tables rules and
    /// chains (<c>iptables-save</c> without counters and comments; a table's built-in chains with their
    /// ACCEPT policy and no rule are what an absent table does), and which of the node's files exist.
    /// </summary>
    private static string HostState(Cluster c)
    {
        string node = c.Topology.Node(1);
        string iptables = Require.Tool("iptables-save", "iptables");
        string Run(params string[] args) => c.Topology.Exec(node, args).Stdout;
        IEnumerable<string> Rules(string tool) => Run(tool).Split('\n')
            .Where(l => l.Length > 0 && !l.StartsWith('#') && !l.StartsWith('*') && l != "COMMIT" && !BuiltinAccept().IsMatch(l))
            .Select(l => Regex.Replace(l, @"\[\d+:\d+\]", ""));
        string[] files = ["node1-subnet.env", "node1.vtepmac", "node1.sock", "10-flannel.conflist", "flannel"];
        return string.Join('\n', [
            Run("ip", "-d", "link", "show"), Run("ip", "route", "show"), Run("ip", "-6", "route", "show"),
            .. Run("ip", "neigh", "show", "nud", "permanent"),
            .. Rules(iptables), .. Rules(Path.Combine(Path.GetDirectoryName(iptables)!, "ip6tables-save")),
            .. files.Select(f => $"{f}: {(File.Exists(c.Path_(f)) ? "present" : "absent")}"),
        ]);
    }

    /// <summary>Every key under flannel's prefix with its value, and the etcd leases that exist.</summary>
    private static string EtcdState(Cluster c) =>
        EtcdTests.Etcdctl(c, "get", "--prefix", "/coreos.com/network/") + EtcdTests.Etcdctl(c, "lease", "list");

    [GeneratedRegex(@"^:(INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) ACCEPT ")]
    private static partial Regex BuiltinAccept();
}
