using System.Text.Json;
using Dataplane.Lab;
using Dataplane.Node;

namespace Dataplane.Integration.Tests.Kube;

/// <summary>
/// <c>--kube-subnet-mgr</c>: leases from Node objects, as flanneld keeps them, against the
/// stand-in API server (contract tests: the stand-in is checked with kubectl in
/// <see cref="KubeStandInTests"/>; admission, real RBAC and a real cluster's TLS are not shown).
/// The RBAC is kube-flannel's in every test: a PATCH of the main <c>nodes</c> resource gets 403.
/// </summary>
public class KubeLeaseTests
{
    [Fact]
    public void A_node_as_flanneld_left_it_is_a_peer_and_ours_is_published_as_flanneld_publishes_it()
    {
        using var k = new KubeCluster("vxlan");
        const string kernelMac = "0e:22:22:22:22:22";
        k.Register(1);
        k.Register(2, annotations: KubeCluster.FlanneldVxlan(2, kernelMac));
        NodeProcess n1 = k.StartNode(1);
        Assert.Contains("Subnet added: 10.244.2.0/24 via 192.0.2.2", n1.Output);

        // Our node's annotations, read back by kubectl: flanneld's keys and values, byte for byte.
        using JsonDocument node = JsonDocument.Parse(k.KubectlOk("get", "node", "node1", "-o", "json"));
        JsonElement ann = node.RootElement.GetProperty("metadata").GetProperty("annotations");
        string ourMac = File.ReadAllText(k.C.Path_("node1.vtepmac")).Trim();
        Assert.Equal($$"""{"VNI":1,"VtepMAC":"{{ourMac}}"}""", ann.GetProperty(KubeCluster.Prefix + "backend-data").GetString());
        Assert.Equal("vxlan", ann.GetProperty(KubeCluster.Prefix + "backend-type").GetString());
        Assert.Equal("true", ann.GetProperty(KubeCluster.Prefix + "kube-subnet-manager").GetString());
        Assert.Equal("192.0.2.1", ann.GetProperty(KubeCluster.Prefix + "public-ip").GetString());
        Assert.Equal(4, ann.EnumerateObject().Count());
        Assert.True(WaitFor(() => k.Api.Node("node1")!["status"]!["conditions"]!.AsArray()
                .Any(c => c!["type"]!.GetValue<string>() == "NetworkUnavailable" && c["status"]!.GetValue<string>() == "False"), TimeSpan.FromSeconds(10)),
            k.Api.Node("node1")!.ToJsonString());
        Assert.Equal("FlannelIsUp", k.KubectlOk("get", "node", "node1", "-o", "jsonpath={.status.conditions[?(@.type==\"NetworkUnavailable\")].reason}"));
        // Only the status subresource was written, with flanneld's patch type; the 403 main resource never.
        IReadOnlyList<string> patches = [.. k.Api.Requests.Where(r => r.StartsWith("PATCH", StringComparison.Ordinal))];
        Assert.Equal(2, patches.Count);
        Assert.All(patches, p => Assert.Equal("PATCH /api/v1/nodes/node1/status application/strategic-merge-patch+json", p));

        // The flanneld node's data plane: a kernel flannel.1 with the VtepMAC it announces, and ours as its peer.
        k.C.ProgramKernelVxlanNode(2, kernelMac, [(1, ourMac)]);
        ProcessRunner.Result ping = k.C.Ping(k.C.Topology.Pod(1), Topology.PodIp(2));
        Assert.True(ping.ExitCode == 0, ping.Stdout + n1.Output);
        k.C.StartTransfer(1, 2, 16L << 20).AssertIntact(TimeSpan.FromSeconds(60));
        k.C.StartTransfer(2, 1, 16L << 20, port: 5202).AssertIntact(TimeSpan.FromSeconds(60));

        // Restarted, our node finds its lease already announced: nothing is patched but the condition.
        Assert.Equal(0, n1.Stop(TimeSpan.FromSeconds(20)));
        NodeProcess again = k.StartNode(1);
        Assert.Contains("already announces our lease", again.Output);
        Assert.Equal(ourMac, File.ReadAllText(k.C.Path_("node1.vtepmac")).Trim());
    }

    /// <summary>
    /// flanneld's GetStoredPublicIP and --kube-annotation-prefix, end to end: each node's
    /// <c>PREFIX-node-public-ip</c> annotation (an operator's) wins over its --public-ip, the lease is
    /// published under the prefix only, and the two nodes reach each other's pods over those
    /// addresses (a second underlay subnet, 198.51.100.0/24, on the same link).
    /// </summary>
    [Fact]
    public void Node_public_ip_annotations_under_a_custom_prefix_choose_the_address_peers_use()
    {
        using var k = new KubeCluster("vxlan");
        const string prefix = "example.com/net-";
        foreach (int i in new[] { 1, 2 })
        {
            string address = string.Create(System.Globalization.CultureInfo.InvariantCulture, $"198.51.100.{i}");
            k.Register(i, annotations: new Dictionary<string, string> { [prefix + "node-public-ip"] = address });
            k.C.Topology.Ip(k.C.Topology.Node(i), "addr", "add", address + "/24", "dev", "eth0");
        }
        NodeProcess n1 = k.StartNode(1, "--kube-annotation-prefix", "example.com/net");
        NodeProcess n2 = k.StartNode(2, "--kube-annotation-prefix", "example.com/net");
        Assert.Contains("Public IP 198.51.100.1 from node node1's annotation example.com/net-node-public-ip (instead of --public-ip 192.0.2.1)", n1.Output);
        Assert.NotNull(n2.WaitForLine("Subnet added: 10.244.1.0/24 via 198.51.100.1", TimeSpan.FromSeconds(10)));

        IReadOnlyDictionary<string, string> published = k.Api.Annotations("node1");
        Assert.Equal("198.51.100.1", published[prefix + "public-ip"]);
        Assert.Equal("vxlan", published[prefix + "backend-type"]);
        Assert.DoesNotContain(published.Keys, a => a.StartsWith(KubeCluster.Prefix, StringComparison.Ordinal));
        ProcessRunner.Result ping = k.C.Ping(k.C.Topology.Pod(1), Topology.PodIp(2));
        Assert.True(ping.ExitCode == 0, ping.Stdout + n1.Output + n2.Output);
    }

    /// <summary>
    /// A dual-stack kube-flannel cluster: the flanneld node (annotations with public-ipv6 and
    /// backend-v6-data, a kernel flannel.1 and flannel-v6.1 behind them) is a peer in both families;
    /// ours takes its IPv6 subnet from its second podCIDR and publishes both annotations as
    /// flanneld does; IPv6 crosses both ways.
    /// </summary>
    [Fact]
    public void A_dual_stack_cluster_carries_ipv6_with_flanneld_nodes()
    {
        using var k = new KubeCluster("vxlan");
        k.DualStack();
        const string kernelMac = "0e:22:22:22:22:22", kernelMac6 = "0e:22:22:22:22:66";
        k.Register(1, ipv6: true);
        k.Register(2, annotations: KubeCluster.FlanneldDualStackVxlan(2, kernelMac, kernelMac6), ipv6: true);
        NodeProcess n1 = k.StartNode(1);
        Assert.Contains("Subnet added: 10.244.2.0/24 and 2001:db8:244:2::/64 via 192.0.2.2 and 2001:db8:2::2", n1.Output);

        using JsonDocument node = JsonDocument.Parse(k.KubectlOk("get", "node", "node1", "-o", "json"));
        JsonElement ann = node.RootElement.GetProperty("metadata").GetProperty("annotations");
        string ourMac = File.ReadAllText(k.C.Path_("node1.vtepmac")).Trim();
        Assert.Equal("2001:db8:2::1", ann.GetProperty(KubeCluster.Prefix + "public-ipv6").GetString());
        Assert.Equal($$"""{"VNI":1,"VtepMAC":"{{ourMac}}"}""", ann.GetProperty(KubeCluster.Prefix + "backend-v6-data").GetString());
        Assert.Equal(6, ann.EnumerateObject().Count());
        Assert.Contains("FLANNEL_IPV6_SUBNET=2001:db8:244:1::1/64\n", File.ReadAllText(k.C.Path_("node1-subnet.env")));

        k.C.ProgramKernelVxlanNode(2, kernelMac, [(1, ourMac)]);
        k.C.Topology.AddKernelVxlanV6(2, kernelMac6, [(1, ourMac)]);
        foreach ((int from, string target) in new[] { (1, Topology.PodIpv6(2)), (2, Topology.PodIpv6(1)), (1, Topology.PodIp(2)) })
        {
            ProcessRunner.Result ping = k.C.Ping(k.C.Topology.Pod(from), target);
            Assert.True(ping.ExitCode == 0, target + ": " + ping.Stdout + n1.Output);
        }
        k.C.StartTransfer(1, 2, 16L << 20, ipv6: true).AssertIntact(TimeSpan.FromSeconds(60));
        k.C.StartTransfer(2, 1, 16L << 20, port: 5202, ipv6: true).AssertIntact(TimeSpan.FromSeconds(60));
    }

    /// <summary>
    /// What a node finds on its Node is kept: the VtepMAC a flanneld that ran here announced (no MAC
    /// file of ours yet), the operator's <c>public-ip-overwrite</c> (published as the public IP, as
    /// flanneld does for a node behind a NAT); and with <c>--set-node-network-unavailable=false</c>
    /// the NetworkUnavailable condition is left alone.
    /// </summary>
    [Fact]
    public void An_announced_vtep_mac_and_public_ip_overwrite_are_kept_and_the_condition_left_when_asked()
    {
        using var k = new KubeCluster("vxlan");
        var found = new Dictionary<string, string>(KubeCluster.FlanneldVxlan(1, "0e:11:11:11:11:11")) { [KubeCluster.Prefix + "public-ip-overwrite"] = "198.51.100.7" };
        k.Register(1, annotations: found);
        NodeProcess n1 = k.StartNode(1, "--set-node-network-unavailable=false");
        Assert.Equal("0e:11:11:11:11:11", File.ReadAllText(k.C.Path_("node1.vtepmac")).Trim());
        IReadOnlyDictionary<string, string> published = k.Api.Annotations("node1");
        Assert.Equal("""{"VNI":1,"VtepMAC":"0e:11:11:11:11:11"}""", published[KubeCluster.Prefix + "backend-data"]);
        Assert.Equal("198.51.100.7", published[KubeCluster.Prefix + "public-ip"]);
        Assert.Equal("198.51.100.7", published[KubeCluster.Prefix + "public-ip-overwrite"]);
        Assert.Contains("Public IP 198.51.100.7 from the node's", n1.Output, StringComparison.Ordinal);
        Thread.Sleep(1500); // time for a condition patch, were one coming
        Assert.DoesNotContain("NetworkUnavailable", k.Api.Node("node1")!.ToJsonString(), StringComparison.Ordinal);
        Assert.DoesNotContain("condition NetworkUnavailable", n1.Output, StringComparison.Ordinal);
    }

    [Fact]
    public void A_kubeconfig_file_gives_the_server_and_the_token_and_pod_variables_give_the_node()
    {
        using var k = new KubeCluster("vxlan");
        k.Register(1);
        k.Api.PutPod("kube-flannel", "kube-dataplane-x7k2p", "node1");
        string kubeconfig = k.C.Path_("kubeconfig");
        File.WriteAllText(kubeconfig, $"""
            apiVersion: v1
            kind: Config
            clusters:
            - name: standin
              cluster:
                server: {k.Api.Url}
            users:
            - name: flannel
              user:
                token: t0ken-of-the-service-account
            contexts:
            - name: flannel@standin
              context:
                cluster: standin
                user: flannel
            current-context: flannel@standin
            """);
        string[] command = [.. k.Command(1).Where(a => a != $"NODE_NAME={KubeCluster.NodeName(1)}")];
        int url = Array.IndexOf(command, "--kube-api-url");
        command = [.. command[..url], "--kubeconfig-file", kubeconfig, .. command[(url + 2)..]];
        command = [.. command[..1], "POD_NAME=kube-dataplane-x7k2p", "POD_NAMESPACE=kube-flannel", .. command[1..]];
        NodeProcess n1 = k.C.Topology.Start(k.C.Topology.Node(1), command, "node1");
        Assert.True(n1.WaitForLine("Ready:", TimeSpan.FromSeconds(30)) is not null, n1.Output);
        Assert.Contains("GET /api/v1/namespaces/kube-flannel/pods/kube-dataplane-x7k2p", k.Api.Requests);
        Assert.Equal("true", k.Api.Annotations("node1")[KubeCluster.Prefix + "kube-subnet-manager"]);
        Assert.All(k.Api.Authorizations, a => Assert.Equal("Bearer t0ken-of-the-service-account", a));
    }

    [Fact]
    public void Nodes_that_join_and_leave_apply_live_while_a_transfer_to_an_unchanged_peer_runs()
    {
        using var k = new KubeCluster("udp");
        for (int i = 1; i <= 3; i++)
        {
            k.Register(i);
        }
        k.Api.DeleteNode("node3"); // node 3 joins later
        NodeProcess n1 = k.StartNode(1);
        k.StartNode(2);
        // As flanneld's udp backend publishes its lease (pkg/subnet/kube: string(attrs.BackendType) of an empty type).
        Assert.Equal("", k.Api.Annotations("node1")[KubeCluster.Prefix + "backend-type"]);
        Assert.Equal("null", k.Api.Annotations("node1")[KubeCluster.Prefix + "backend-data"]);
        Assert.NotNull(n1.WaitForLine("Subnet added: 10.244.2.0/24 via 192.0.2.2", TimeSpan.FromSeconds(10)));
        k.Api.PutNode("flanneld-udp", "10.244.9.0/24", new Dictionary<string, string>
        {
            [KubeCluster.Prefix + "backend-data"] = "null",
            [KubeCluster.Prefix + "backend-type"] = "",
            [KubeCluster.Prefix + "kube-subnet-manager"] = "true",
            [KubeCluster.Prefix + "public-ip"] = "192.0.2.9",
        });
        Assert.NotNull(n1.WaitForLine("Subnet added: 10.244.9.0/24 via 192.0.2.9", TimeSpan.FromSeconds(10)));

        Transfer transfer = k.C.StartTimedTransfer(1, 2, seconds: 10);
        Thread.Sleep(300);
        k.Api.PutNode("node3", KubeCluster.PodCidr(3));
        k.StartNode(3);
        Assert.NotNull(n1.WaitForLine("Subnet added: 10.244.3.0/24 via 192.0.2.3", TimeSpan.FromSeconds(10)));
        ProcessRunner.Result added = k.C.Ping(k.C.Topology.Pod(1), Topology.PodIp(3));
        Assert.True(added.ExitCode == 0, added.Stdout);

        k.Api.DeleteNode("node3");
        Assert.NotNull(n1.WaitForLine("Subnet removed: 10.244.3.0/24", TimeSpan.FromSeconds(10)));
        ProcessRunner.Result removed = k.C.Ping(k.C.Topology.Pod(1), Topology.PodIp(3));
        Assert.Contains("Destination Net Unreachable", removed.Stdout);

        Assert.False(transfer.Sender.HasExited, "the transfer ended before the changes: make it longer so the test proves something");
        transfer.AssertIntact(TimeSpan.FromSeconds(120));
    }

    [Fact]
    public void Forwarding_goes_on_with_no_second_without_traffic_while_the_api_server_is_down_for_30_s()
    {
        using var k = new KubeCluster("vxlan");
        k.Register(1);
        k.Register(2);
        NodeProcess n1 = k.StartNode(1, "--kube-resync", "5");
        k.StartNode(2, "--kube-resync", "5");

        // Continuity, second by second: iperf3 reports every interval; none may be (nearly) empty.
        Intervals intervals = k.C.StartIntervals(1, 2, seconds: 40);
        Thread.Sleep(3000);
        k.Api.Stop();
        Assert.True(n1.WaitForLine("forwarding on the last known subnets", TimeSpan.FromSeconds(20)) is not null, n1.Output);
        Thread.Sleep(30_000 - 3000);
        Assert.False(intervals.Client.HasExited, "the transfer ended while the API server was down");
        k.Api.Start();
        Assert.NotNull(n1.WaitForLine("reachable again", TimeSpan.FromSeconds(40)));
        intervals.AssertEverySecondCarried(1_000_000);

        // Back, changes apply again.
        k.Register(3, withPod: false);
        k.Api.PutNode("node3", KubeCluster.PodCidr(3), KubeCluster.FlanneldVxlan(3, "0e:33:33:33:33:33"));
        Assert.NotNull(n1.WaitForLine("Subnet added: 10.244.3.0/24 via 192.0.2.3", TimeSpan.FromSeconds(20)));
    }

    /// <summary>
    /// net-conf.json edited under a running node, as a ConfigMap update lands (the kubelet swaps the
    /// mount's <c>..data</c> link): said once; the node keeps its config, and a Node valid under it
    /// still becomes a peer. Rewritten to the original, that is said too.
    /// </summary>
    [Fact]
    public void A_changed_net_conf_json_is_said_once_and_leases_keep_applying()
    {
        using var k = new KubeCluster("vxlan");
        k.Register(1, withPod: false);
        NodeProcess n1 = k.StartNode(1);
        string original = File.ReadAllText(k.NetConf);
        string data = k.C.Path_("..data_2");
        Directory.CreateDirectory(data);
        File.WriteAllText(Path.Combine(data, "net-conf.json"), """{"Network":"10.245.0.0/16","Backend":{"Type":"vxlan"} }""");
        File.Move(Path.Combine(data, "net-conf.json"), k.NetConf, overwrite: true); // one atomic replace, as the kubelet's rename
        Assert.True(n1.WaitForLine("changed (Network 10.245.0.0/16, was 10.244.0.0/16)", TimeSpan.FromSeconds(5)) is not null, n1.Output);
        k.Api.PutNode("node3", KubeCluster.PodCidr(3), KubeCluster.FlanneldVxlan(3, "0e:33:33:33:33:33"));
        Assert.True(n1.WaitForLine("Subnet added: 10.244.3.0/24 via 192.0.2.3", TimeSpan.FromSeconds(5)) is not null, n1.Output);
        File.WriteAllText(k.NetConf, original);
        Assert.True(n1.WaitForLine("is again the network config this node runs with", TimeSpan.FromSeconds(5)) is not null, n1.Output);
        Assert.Single(n1.Output.Split('\n'), l => l.Contains("changed (Network 10.245.0.0/16", StringComparison.Ordinal));
    }

    [Fact]
    public void A_node_without_a_pod_cidr_waits_for_one_and_starts_when_it_is_assigned()
    {
        using var k = new KubeCluster("vxlan");
        k.Register(1, podCidr: null);
        NodeProcess n1 = k.Launch(1);
        Assert.True(n1.WaitForLine("has no IPv4 podCIDR yet", TimeSpan.FromSeconds(30)) is not null, n1.Output);
        Thread.Sleep(1000);
        Assert.False(n1.HasExited, n1.Output);
        Assert.False(File.Exists(k.C.Path_("node1-subnet.env")));
        k.Api.PutNode("node1", KubeCluster.PodCidr(1));
        Assert.True(n1.WaitForLine("Ready:", TimeSpan.FromSeconds(20)) is not null, n1.Output);
        Assert.Contains("FLANNEL_SUBNET=10.244.1.1/24", File.ReadAllText(k.C.Path_("node1-subnet.env")));
    }

    [Theory]
    [InlineData("podcidr-outside", "node node1: podCIDR 10.245.1.0/24 is not inside the Network 10.244.0.0/16")]
    [InlineData("no-such-node", "node node1: no such node in Kubernetes API http://192.0.2.100:6443 (is NODE_NAME right?)")]
    [InlineData("api-down", "Kubernetes API http://192.0.2.100:6443: connection refused")]
    [InlineData("no-net-conf", "--net-config-path")]
    [InlineData("ipv6-only", "an IPv6-only network (EnableIPv4 false) with --kube-subnet-mgr is not supported yet")]
    public void Bad_cluster_state_exits_1_with_one_line_and_creates_nothing(string fault, string expected)
    {
        using var k = new KubeCluster("vxlan");
        k.Register(1, podCidr: fault == "podcidr-outside" ? "10.245.1.0/24" : "");
        switch (fault)
        {
            case "no-such-node":
                k.Api.DeleteNode("node1");
                break;
            case "api-down":
                k.Api.Stop();
                break;
            case "no-net-conf":
                File.Delete(k.NetConf);
                break;
            case "ipv6-only":
                File.WriteAllText(k.NetConf, """{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"2001:db8:244::/48","Backend":{"Type":"vxlan"}}""");
                break;
        }
        ProcessRunner.Result r = k.C.Topology.Exec(k.C.Topology.Node(1), k.Command(1), 60_000);
        Assert.Equal(1, r.ExitCode);
        string[] errors = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(errors.Length == 1, r.Stderr);
        Console.WriteLine(errors[0]);
        Assert.Contains(expected, errors[0]);
        Assert.DoesNotContain("flannel.1", k.C.Topology.Ip(k.C.Topology.Node(1), "-o", "link", "show"));
        Assert.False(File.Exists(k.C.Path_("node1-subnet.env")));
        Assert.DoesNotContain(k.Api.Requests, q => q.StartsWith("PATCH", StringComparison.Ordinal));
    }

    private static bool WaitFor(Func<bool> condition, TimeSpan timeout)
    {
        DateTime until = DateTime.UtcNow + timeout;
        while (!condition())
        {
            if (DateTime.UtcNow > until)
            {
                return false;
            }
            Thread.Sleep(100);
        }
        return true;
    }
}
