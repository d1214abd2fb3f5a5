using System.Diagnostics;
using System.Text.RegularExpressions;
using Dataplane.Integration.Tests.Kube;
using Dataplane.Lab;
using Dataplane.Node;
using Xunit.Abstractions;

namespace Dataplane.Integration.Tests;

/// <summary>
/// The lease store is input: with bad leases of many kinds written into a real etcd (and into Node
/// objects of the Kubernetes stand-in) beside good ones, while a transfer runs, the node refuses
/// each bad one by name once, keeps forwarding, applies a good lease written afterwards within 2 s,
/// lists the refused ones in <c>dataplane stats</c> and the gauge, and writes nothing to the store
/// because of them (etcd's revision counts every write).
/// </summary>
public partial class BadLeaseTests(ITestOutputHelper output)
{
    private const string Subnets = "/coreos.com/network/subnets/";

    /// <summary>Key, value, reason: one lease of each kind etcd can hold that must not become a peer.</summary>
    private static readonly (string Key, string Value, string Reason)[] EtcdBadLeases =
    [
        ("0.0.0.0-1", Vxlan("192.0.2.9", "0e:00:00:00:00:09"), "subnet_outside_network"),
        ("192.0.2.0-24", Vxlan("192.0.2.9", "0e:00:00:00:00:09"), "subnet_outside_network"),
        ("10.9.0.0-16", Vxlan("192.0.2.9", "0e:00:00:00:00:09"), "subnet_outside_network"),
        ("10.244.7.0-24", Vxlan("192.0.2.1", "0e:00:00:00:00:07"), "our_stale_lease"),
        ("10.244.6.0-24", Vxlan("10.244.3.3", "0e:00:00:00:00:06"), "public_ip_in_overlay"),
        ("10.244.5.0-24", """{"PublicIP":"192.0.2.5","BackendType":"vxlan","BackendData":{"VNI":7,"VtepMAC":"0e:00:00:00:00:05"}}""", "vni_mismatch"),
        ("10.244.4.0-24", """{"PublicIP":"192.0.2.4"}""", "vtep_mac_invalid"),
        ("10.244.8.0-24", "{not json", "unreadable"),
        ("10.244.9.0-24", """{"PublicIP":"192.0.2.19","BackendType":"host-gw"}""", "backend_mismatch"),
    ];

    private static string Vxlan(string publicIp, string mac) =>
        $$$"""{"PublicIP":"{{{publicIp}}}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"{{{mac}}}"}}""";

    [Fact]
    public void Etcd_bad_leases_are_refused_one_by_one_while_good_ones_apply_and_the_node_writes_nothing()
    {
        using var c = new Cluster();
        EtcdTests.StartEtcd(c);
        c.Topology.AddNode(1);
        c.Topology.AddNode(2);
        EtcdTests.Etcdctl(c, "put", "/coreos.com/network/config", """{"Network":"10.244.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan","VNI":1}}""");
        EtcdTests.Etcdctl(c, "put", Subnets + "10.244.1.0-24", Vxlan("192.0.2.1", "0e:11:11:11:11:11"));
        EtcdTests.Etcdctl(c, "put", Subnets + "10.244.2.0-24", Vxlan("192.0.2.2", "0e:22:22:22:22:22"));
        foreach ((string key, string value, _) in EtcdBadLeases.Take(4))
        {
            EtcdTests.Etcdctl(c, "put", Subnets + key, value);
        }
        NodeProcess n1 = StartNode(c, 1);
        StartNode(c, 2);
        Transfer transfer = c.StartTransfer(1, 2, 48L << 20);
        foreach ((string key, string value, _) in EtcdBadLeases.Skip(4))
        {
            EtcdTests.Etcdctl(c, "put", Subnets + key, value); // the rest while the transfer runs
        }

        long revision = Revision(c);
        var applied = Stopwatch.StartNew();
        EtcdTests.Etcdctl(c, "put", Subnets + "10.244.3.0-24", Vxlan("192.0.2.3", "0e:33:33:33:33:33"));
        Assert.True(n1.WaitForLine("Subnet added: 10.244.3.0/24 via 192.0.2.3", TimeSpan.FromSeconds(2)) is not null, $"not applied within 2 s:\n{n1.Output}");
        output.WriteLine($"a good lease beside {EtcdBadLeases.Length} bad ones applied {applied.ElapsedMilliseconds} ms after its put");
        transfer.AssertIntact(TimeSpan.FromSeconds(60));
        Thread.Sleep(TimeSpan.FromSeconds(5)); // time for a storm of writes to show, if there were one
        Assert.Equal(1, Revision(c) - revision); // our put; neither node wrote anything

        AssertEachRefusedOnce(n1, EtcdBadLeases.Select(b => (b.Key, b.Reason)));
        string stats = Stats(c);
        Assert.Contains($"leases refused: {EtcdBadLeases.Length}: ", stats);
        foreach ((string key, _, string reason) in EtcdBadLeases)
        {
            Assert.Contains($"{key} ({reason})", stats);
        }

        string metrics = c.Topology.Exec(c.Topology.Node(1), ["curl", "-s", $"http://{Topology.UnderlayIp(1)}:9100/metrics"]).Stdout;
        foreach (IGrouping<string, string> reason in EtcdBadLeases.Select(b => b.Reason).GroupBy(r => r))
        {
            Assert.Contains($"dataplane_leases_rejected{{reason=\"{reason.Key}\"}} {reason.Count()}\n", metrics);
        }
        Assert.Contains("dataplane_leases_rejected{reason=\"overlaps_lease\"} 0\n", metrics);
        Assert.Contains("dataplane_lease_rejected_info{lease=\"10.9.0.0-16\",reason=\"subnet_outside_network\"} 1\n", metrics);

        EtcdTests.Etcdctl(c, "del", Subnets + "10.9.0.0-16");
        Assert.True(n1.WaitForLine("Lease 10.9.0.0-16 is gone: no longer refused", TimeSpan.FromSeconds(5)) is not null, n1.Output);
    }

    [Fact]
    public void Kubernetes_nodes_with_bad_leases_are_refused_one_by_one_and_a_new_node_applies_within_2_s()
    {
        using var k = new KubeCluster("vxlan");
        k.Register(1);
        k.Register(2);
        // As kube-controller-manager and hand edits leave them: outside the Network, two nodes with one podCIDR, a node on the overlay, another backend.
        k.Api.PutNode("wide", "10.9.0.0/16", KubeCluster.FlanneldVxlan(9, "0e:00:00:00:00:09"));
        k.Api.PutNode("twin-a", "10.244.5.0/24", KubeCluster.FlanneldVxlan(15, "0e:00:00:00:00:15"));
        k.Api.PutNode("twin-b", "10.244.5.0/24", KubeCluster.FlanneldVxlan(16, "0e:00:00:00:00:16"));
        Dictionary<string, string> overlay = KubeCluster.FlanneldVxlan(17, "0e:00:00:00:00:17");
        overlay[KubeCluster.Prefix + "public-ip"] = "10.244.2.2";
        k.Api.PutNode("on-overlay", "10.244.6.0/24", overlay);
        NodeProcess n1 = k.StartNode(1);
        NodeProcess n2 = k.StartNode(2);
        int Patches() => k.Api.Requests.Count(r => r.StartsWith("PATCH", StringComparison.Ordinal));
        // Both nodes' own start-up patches first (each sets its condition after Ready): only then count.
        foreach (NodeProcess n in new[] { n1, n2 })
        {
            Assert.True(SpinWait.SpinUntil(() => n.Output.Contains("condition NetworkUnavailable set to False", StringComparison.Ordinal), 10_000), n.Output);
        }
        int patchesAtStart = Patches();
        Transfer transfer = k.C.StartTransfer(1, 2, 32L << 20);
        Dictionary<string, string> udp = KubeCluster.FlanneldVxlan(18, "0e:00:00:00:00:18");
        udp[KubeCluster.Prefix + "backend-type"] = "udp";
        k.Api.PutNode("udp-node", "10.244.7.0/24", udp);

        var applied = Stopwatch.StartNew();
        k.Api.PutNode("node3", KubeCluster.PodCidr(3), KubeCluster.FlanneldVxlan(3, "0e:33:33:33:33:33"));
        Assert.True(n1.WaitForLine("Subnet added: 10.244.3.0/24 via 192.0.2.3", TimeSpan.FromSeconds(2)) is not null, $"not applied within 2 s:\n{n1.Output}");
        output.WriteLine($"a new Node beside 5 bad ones applied {applied.ElapsedMilliseconds} ms after it was written");
        Assert.Contains("Subnet added: 10.244.5.0/24 via 192.0.2.15", n1.Output); // twin-a sorts first, on every node
        transfer.AssertIntact(TimeSpan.FromSeconds(60));

        AssertEachRefusedOnce(n1, [("node wide", "subnet_outside_network"), ("node twin-b", "overlaps_lease"),
            ("node on-overlay", "public_ip_in_overlay"), ("node udp-node", "backend_mismatch")]);
        Assert.Contains("leases refused: 4: ", Stats(k.C));
        Assert.Equal(patchesAtStart, Patches()); // the bad Nodes made neither node write
    }

    private static NodeProcess StartNode(Cluster c, int i) => EtcdTests.StartNode(c, i, "--metrics", $"{Topology.UnderlayIp(i)}:9100");

    /// <summary>Each lease named in exactly one "Lease refused (reason): ... NAME: ..." line, however often it was read.</summary>
    private static void AssertEachRefusedOnce(NodeProcess node, IEnumerable<(string Name, string Reason)> expected)
    {
        foreach ((string name, string reason) in expected)
        {
            int lines = node.Output.Split('\n').Count(l => l.Contains($"Lease refused ({reason}): ", StringComparison.Ordinal) && l.Contains($"{name}: ", StringComparison.Ordinal));
            Assert.True(lines == 1, $"{name} ({reason}) named {lines} times:\n{node.Output}");
        }
    }

    private static string Stats(Cluster c)
    {
        ProcessRunner.Result r = ProcessRunner.Run(c.Program[0], [.. c.Program.Skip(1), "stats", "--control-socket", c.ControlSocket(1), "--once"]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        return r.Stdout;
    }

    /// <summary>etcd's revision: one more for every write to any key.</summary>
    private static long Revision(Cluster c) =>
        long.Parse(RevisionField().Match(EtcdTests.Etcdctl(c, "get", "/coreos.com/network/config", "-w", "json")).Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);

    [GeneratedRegex("\"revision\":(\\d+)")]
    private static partial Regex RevisionField();
}
