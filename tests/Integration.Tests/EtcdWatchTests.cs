using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Dataplane.Lab;
using Dataplane.Node;
using Dataplane.TestSupport;
using Xunit.Abstractions;

namespace Dataplane.Integration.Tests;

/// <summary>
/// What a node costs etcd, counted by etcd itself (its gRPC server metrics): after the first list
/// an idle node sends no Range at all, every change arrives by the watch within a second, and after
/// etcd was away (stopped, or cut off by a partition long enough to compact past the node) a change
/// made once it is back is applied within 3 s.
/// </summary>
public partial class EtcdWatchTests(ITestOutputHelper output)
{
    private const string Subnets = "/coreos.com/network/subnets/";
    private const string WideConfig = """{"Network":"10.0.0.0/8","SubnetLen":24,"Backend":{"Type":"vxlan","VNI":1}}""";

    /// <remarks>
    /// CI: 500 leases, 20 s idle. <c>DATAPLANE_ETCD_LEASES=5001 DATAPLANE_ETCD_IDLE_SECONDS=60</c> gives
    /// bench/README.md's figure (the issue's target: at most 1 Range call and 256 KiB from etcd).
    /// </remarks>
    [Fact]
    public void An_idle_node_of_many_leases_sends_etcd_no_range_and_changes_and_config_arrive_by_the_watch()
    {
        int leases = int.TryParse(Environment.GetEnvironmentVariable("DATAPLANE_ETCD_LEASES"), CultureInfo.InvariantCulture, out int l) && l > 0 ? l : 500;
        int idle = int.TryParse(Environment.GetEnvironmentVariable("DATAPLANE_ETCD_IDLE_SECONDS"), CultureInfo.InvariantCulture, out int s) && s > 0 ? s : 20;
        using var c = new Cluster();
        NodeProcess n1 = OneNode(c, leases).Node;
        Assert.Contains($"{leases} leases", n1.Output);

        long ranges = Ranges(c);
        double sent = SentBytes(c);
        Thread.Sleep(TimeSpan.FromSeconds(idle));
        double idleBytes = SentBytes(c) - sent;
        output.WriteLine($"{leases} leases, {idle} s idle: {Ranges(c) - ranges} Range calls, {idleBytes / 1024:F1} KiB sent by etcd to its clients");
        Assert.True(idleBytes < 256 * 1024, $"{idleBytes} bytes from etcd while idle");
        var applied = Stopwatch.StartNew();
        EtcdTests.Etcdctl(c, "put", Subnets + "10.150.1.0-24", Lease(777)); // beyond the leases put, however many
        Assert.True(n1.WaitForLine("Subnet added: 10.150.1.0/24", TimeSpan.FromSeconds(1)) is not null, $"a new lease not applied within 1 s:\n{n1.Output}");
        output.WriteLine($"a new lease applied {applied.ElapsedMilliseconds} ms after its put");
        EtcdTests.Etcdctl(c, "del", Subnets + "10.0.7.0-24");
        Assert.True(n1.WaitForLine("Subnet removed: 10.0.7.0/24", TimeSpan.FromSeconds(1)) is not null, $"a deleted lease not removed within 1 s:\n{n1.Output}");
        long more = Ranges(c) - ranges;
        output.WriteLine($"Range calls served to the node over {idle} s idle and two changes: {more}");
        Assert.Equal(0, more);

        // The network config changed under the running node: said once; leases valid under the running one keep applying.
        EtcdTests.Etcdctl(c, "put", "/coreos.com/network/config", """{"Network":"10.0.0.0/9","SubnetLen":24,"Backend":{"Type":"vxlan","VNI":1}}""");
        Assert.True(n1.WaitForLine("The network config in the store changed (Network 10.0.0.0/9, was 10.0.0.0/8)", TimeSpan.FromSeconds(2)) is not null, n1.Output);
        EtcdTests.Etcdctl(c, "put", Subnets + "10.200.1.0-24", Lease(778));
        Assert.True(n1.WaitForLine("Subnet added: 10.200.1.0/24", TimeSpan.FromSeconds(1)) is not null, n1.Output);
        Assert.Single(n1.Output.Split('\n'), l => l.Contains("The network config in the store changed", StringComparison.Ordinal));
    }

    [Fact]
    public void Etcd_stopped_20_s_then_back_a_change_made_after_is_applied_within_3_s()
    {
        using var c = new Cluster();
        (NodeProcess etcd, NodeProcess n1) = OneNode(c, 20);

        var away = Stopwatch.StartNew();
        etcd.Stop(TimeSpan.FromSeconds(10));
        Assert.True(n1.WaitForLine("forwarding on the last known subnets", TimeSpan.FromSeconds(20)) is not null, n1.Output);
        // A backoff that doubles to 30 s would be asleep when etcd returns. DATAPLANE_OUTAGE_SECONDS=35: the issue's figure.
        int seconds = int.TryParse(Environment.GetEnvironmentVariable("DATAPLANE_OUTAGE_SECONDS"), CultureInfo.InvariantCulture, out int o) && o > 0 ? o : 20;
        Thread.Sleep(TimeSpan.FromSeconds(Math.Max(0, seconds - away.Elapsed.TotalSeconds)));
        EtcdTests.RestartEtcd(c);
        double awaySeconds = away.Elapsed.TotalSeconds;
        var applied = Stopwatch.StartNew();
        EtcdTests.Etcdctl(c, "put", Subnets + "10.3.1.0-24", Lease(777));
        Assert.True(n1.WaitForLine("Subnet added: 10.3.1.0/24", TimeSpan.FromSeconds(3)) is not null, $"not applied within 3 s of etcd's return:\n{n1.Output}");
        output.WriteLine($"etcd away {awaySeconds:F0} s; a lease put after it came back applied {applied.ElapsedMilliseconds} ms later");
        Assert.Single(n1.Output.Split('\n'), l => l.Contains("forwarding on the last known subnets", StringComparison.Ordinal));
        Assert.DoesNotContain("Failed to re-register watch", n1.Output); // the library says nothing outside our log
        Assert.DoesNotContain("listing the leases again", n1.Output);   // resumed, not re-listed
    }

    [Fact]
    public void A_node_cut_off_while_etcd_compacted_past_it_lists_again_and_converges()
    {
        using var c = new Cluster();
        NodeProcess n1 = OneNode(c, 20).Node;

        c.Topology.Ip(c.Topology.Node(1), "link", "set", "eth0", "down"); // a partition: the node's watch connection hangs
        EtcdTests.Etcdctl(c, "put", Subnets + "10.3.1.0-24", Lease(777));
        EtcdTests.Etcdctl(c, "del", Subnets + "10.0.7.0-24");
        string revision = RevisionField().Match(EtcdTests.Etcdctl(c, "get", "/coreos.com/network/config", "-w", "json")).Groups[1].Value;
        EtcdTests.Etcdctl(c, "compact", revision);
        // Keep-alive pings (10 s idle, 5 s to answer) find the dead connection; the node says etcd is away.
        Assert.True(n1.WaitForLine("forwarding on the last known subnets", TimeSpan.FromSeconds(25)) is not null, $"the partition went unnoticed:\n{n1.Output}");
        c.Topology.Ip(c.Topology.Node(1), "link", "set", "eth0", "up");

        Assert.True(n1.WaitForLine("listing the leases again", TimeSpan.FromSeconds(10)) is not null, $"no re-list after the compaction:\n{n1.Output}");
        Assert.True(n1.WaitForLine("Subnet added: 10.3.1.0/24", TimeSpan.FromSeconds(5)) is not null, n1.Output);
        Assert.True(n1.WaitForLine("Subnet removed: 10.0.7.0/24", TimeSpan.FromSeconds(5)) is not null, n1.Output);
    }

    /// <summary>etcd with the wide network and <paramref name="leases"/> leases, and node 1 ready on it.</summary>
    private static (NodeProcess Etcd, NodeProcess Node) OneNode(Cluster c, int leases)
    {
        NodeProcess etcd = EtcdTests.StartEtcd(c);
        c.Topology.AddNode(1, withPod: false);
        EtcdTests.Etcdctl(c, "put", "/coreos.com/network/config", WideConfig);
        PutLeases(c, leases);
        return (etcd, EtcdTests.StartNode(c, 1));
    }

    private static string Lease(int i) => string.Create(CultureInfo.InvariantCulture,
        $$$"""{"PublicIP":"198.51.100.{{{1 + (i % 250)}}}","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:{{{i / 256:x2}}}:{{{i % 256:x2}}}"}}""");

    /// <summary>Leases 10.0.1.0/24 ... as flanneld writes them, 100 to a transaction (etcd allows 128 operations in one).</summary>
    private static void PutLeases(Cluster c, int count)
    {
        for (int first = 1; first <= count; first += 100)
        {
            var txn = new StringBuilder("\n"); // no compares
            for (int i = first; i < first + 100 && i <= count; i++)
            {
                // etcdctl's txn reads a value in double quotes, with \" inside
                txn.Append(CultureInfo.InvariantCulture, $"put {Subnets}10.{i / 256}.{i % 256}.0-24 \"{Lease(i).Replace("\"", "\\\"", StringComparison.Ordinal)}\"\n");
            }
            txn.Append("\n\n"); // the end of the success operations, and no failure operations
            string script = Path.Combine(Path.GetTempPath(), $"dataplane-txn-{Guid.NewGuid():N}");
            File.WriteAllText(script, txn.ToString());
            try
            {
                ProcessRunner.Result r = c.Topology.Exec(c.Topology.Node(EtcdTests.EtcdHost),
                    ["sh", "-c", $"{Require.Tool("etcdctl", "etcd-client")} --endpoints {EtcdTests.Endpoint} txn < {script}"]);
                Assert.True(r.ExitCode == 0 && r.Stdout.Contains("SUCCESS", StringComparison.Ordinal), r.Stdout + r.Stderr);
            }
            finally
            {
                File.Delete(script);
            }
        }
    }

    /// <summary>Range calls etcd has served, from its own metrics.</summary>
    private static long Ranges(Cluster c)
    {
        ProcessRunner.Result r = c.Topology.Exec(c.Topology.Node(EtcdTests.EtcdHost), ["curl", "-s", $"{EtcdTests.Endpoint}/metrics"]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        MatchCollection m = RangeMetric().Matches(r.Stdout);
        Assert.True(m.Count > 0, "etcd's metrics have no grpc_server_handled_total for Range");
        return m.Sum(x => long.Parse(x.Groups[1].Value, CultureInfo.InvariantCulture));
    }

    /// <summary>Bytes etcd sent to its gRPC clients (its own metric; the node is the only client besides the tests' etcdctl).</summary>
    private static double SentBytes(Cluster c)
    {
        ProcessRunner.Result r = c.Topology.Exec(c.Topology.Node(EtcdTests.EtcdHost), ["curl", "-s", $"{EtcdTests.Endpoint}/metrics"]);
        Match m = Regex.Match(r.Stdout, @"^etcd_network_client_grpc_sent_bytes_total (\S+)$", RegexOptions.Multiline);
        Assert.True(m.Success, "etcd's metrics have no etcd_network_client_grpc_sent_bytes_total");
        return double.Parse(m.Groups[1].Value, NumberStyles.Float, CultureInfo.InvariantCulture);
    }

    [GeneratedRegex("""^grpc_server_handled_total\{[^}]*grpc_method="Range"[^}]*\} (\d+)$""", RegexOptions.Multiline)]
    private static partial Regex RangeMetric();

    [GeneratedRegex("\"revision\":(\\d+)")]
    private static partial Regex RevisionField();
}
