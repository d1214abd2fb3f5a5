using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Dataplane.Lab;
using Xunit.Abstractions;

namespace Dataplane.Integration.Tests.Kube;

/// <summary>
/// A node among thousands of realistic Nodes (the stand-in's ~15 KB objects: images, conditions,
/// addresses, as kubelets report them), with the API server's paging: what it costs the node and
/// the API server. CI runs 1,000 Nodes and 10 s of heartbeats; <c>DATAPLANE_KUBE_NODES=5000</c> and
/// <c>DATAPLANE_KUBE_CHURN_SECONDS=60</c> give bench/README.md's figures (the targets of the issue:
/// Ready with every peer within 5 s, VmHWM at most 100 MB, 500 heartbeats/s at most 5 % of a core
/// with no table built, an annotation change applied within 1 s, VmRSS flat within 10 % over a
/// long churn: <c>DATAPLANE_KUBE_SOAK_SECONDS=600</c>; CI 15 s).
/// </summary>
public class KubeScaleTests(ITestOutputHelper output)
{
    private static int Setting(string name, int fallback) =>
        int.TryParse(Environment.GetEnvironmentVariable(name), CultureInfo.InvariantCulture, out int v) && v > 0 ? v : fallback;

    [Fact]
    public void Among_thousands_of_realistic_nodes_a_node_is_ready_fast_small_and_ignores_heartbeats()
    {
        int nodes = Setting("DATAPLANE_KUBE_NODES", 1000), churnSeconds = Setting("DATAPLANE_KUBE_CHURN_SECONDS", 10);
        using var k = new KubeCluster("vxlan");
        File.WriteAllText(k.NetConf, """{"Network":"10.128.0.0/9","SubnetLen":24,"Backend":{"Type":"vxlan"}}""");
        k.Api.RealisticNodes = true;
        k.Register(1, withPod: false);
        string[] peers = [.. Enumerable.Range(0, nodes).Select(i => string.Create(CultureInfo.InvariantCulture, $"peer{i:D5}"))];
        for (int i = 0; i < nodes; i++)
        {
            k.Api.PutNode(peers[i], Subnet(i), Flanneld(i, i % 250 + 1));
        }
        int bytesPerNode = k.Api.Node(peers[0])!.ToJsonString().Length;
        var started = Stopwatch.StartNew();
        NodeProcess n1 = k.StartNode(1, "--healthz-port", "9110", "--metrics", "192.0.2.1:9100");
        string ready = ReadyLine(k);
        double readySeconds = started.Elapsed.TotalSeconds;
        Assert.Contains($"{nodes} peers", ready);
        long hwm = Status(n1.Pid, "VmHWM:");
        output.WriteLine($"{nodes} Nodes of {bytesPerNode / 1000.0:F1} KB: ready with every peer {readySeconds:F2} s after the start; VmHWM {hwm / 1024} MB, VmRSS {Status(n1.Pid, "VmRSS:") / 1024} MB");
        string[] lists = [.. k.Api.Requests.Where(r => r.StartsWith("GET /api/v1/nodes?", StringComparison.Ordinal) && !r.Contains("watch=", StringComparison.Ordinal))];
        output.WriteLine($"lists at start: {string.Join("; ", lists)}");
        Assert.Single(lists); // one list from the cache at start, no second one for the watch
        Assert.True(readySeconds < 10, $"ready after {readySeconds:F1} s");
        Assert.True(hwm < 100 * 1024, $"VmHWM {hwm / 1024} MB");

        // What the idle node asks of the API server (its watch open, nothing changing): requests and bytes a minute.
        int requests = k.Api.Requests.Count;
        long bytes = k.Api.BytesServed;
        Thread.Sleep(TimeSpan.FromSeconds(5));
        double idleRequests = (k.Api.Requests.Count - requests) * 12.0, idleBytes = (k.Api.BytesServed - bytes) * 12.0;
        output.WriteLine($"idle: {idleRequests:F0} requests and {idleBytes / 1024:F1} KiB a minute from the API server (x {nodes} nodes: {idleBytes * nodes / 1e6:F1} MB a minute)");
        Assert.Equal(0, idleRequests);

        // Heartbeats (500 a second): whole Nodes in MODIFIED events, nothing a lease is made of.
        long tables = Metric(k, "dataplane_peer_tables_built_total");
        double cpuBefore = CpuSeconds(n1.Pid);
        long churnBytes = k.Api.BytesServed;
        var churn = Stopwatch.StartNew();
        long beats = 0;
        while (churn.Elapsed.TotalSeconds < churnSeconds)
        {
            k.Api.Heartbeat(peers[(int)(beats % nodes)]);
            beats++;
            long due = (long)(churn.Elapsed.TotalSeconds * 500);
            if (beats > due)
            {
                Thread.Sleep(TimeSpan.FromSeconds((beats - due) / 500.0));
            }
        }
        Thread.Sleep(500); // the last events read
        double cpu = (CpuSeconds(n1.Pid) - cpuBefore) / churn.Elapsed.TotalSeconds;
        double perMinute = (k.Api.BytesServed - churnBytes) / churn.Elapsed.TotalMinutes;
        output.WriteLine($"under 500 heartbeats/s: {perMinute / 1e6:F0} MB a minute of watch events to this node (what every node watching Nodes costs, flanneld's informer too)");
        output.WriteLine($"{beats} heartbeats in {churn.Elapsed.TotalSeconds:F1} s ({beats / churn.Elapsed.TotalSeconds:F0}/s): node CPU {cpu * 100:F1} % of a core, "
            + $"tables built {Metric(k, "dataplane_peer_tables_built_total") - tables}; VmRSS {Status(n1.Pid, "VmRSS:") / 1024} MB, VmHWM {Status(n1.Pid, "VmHWM:") / 1024} MB");
        Assert.Equal(tables, Metric(k, "dataplane_peer_tables_built_total"));
        Assert.True(cpu < 0.25, $"heartbeats cost {cpu * 100:F1} % of a core");

        // An annotation that is a lease (a peer's public IP) applied within 1 s, twenty times.
        var latencies = new List<double>();
        for (int j = 0; j < 20; j++)
        {
            int i = j * (nodes / 20);
            var applied = Stopwatch.StartNew();
            k.Api.PutNode(peers[i], Subnet(i), Flanneld(i, 251 + j % 4));
            string subnet = Subnet(i);
            Assert.True(n1.WaitForLine($"Subnet changed: {subnet} via 198.51.100.{251 + j % 4}", TimeSpan.FromSeconds(1)) is not null, $"change {j} not applied within 1 s");
            latencies.Add(applied.Elapsed.TotalMilliseconds);
        }
        output.WriteLine($"20 annotation changes applied in {latencies.Min():F0}-{latencies.Max():F0} ms (median {latencies.Order().ElementAt(10):F0} ms)");
        Assert.True(latencies.Max() < 1000);

        Soak(k, n1, peers, Setting("DATAPLANE_KUBE_SOAK_SECONDS", 15));
    }

    /// <summary>
    /// A cluster's churn for <paramref name="seconds"/>: 500 heartbeats a second, a lease change a
    /// second (a peer's public IP: a table built each), a Node deleted and added back every 5 s.
    /// VmRSS is sampled ten times (the last after it); from the first sample on it stays within 10 % over
    /// a soak of 5 minutes or more (nothing kept per event; 25 % over CI's 15 s, the GC's warm-up), and
    /// the node ends with every peer, each change applied.
    /// </summary>
    private void Soak(KubeCluster k, NodeProcess n1, string[] peers, int seconds)
    {
        long tables = Metric(k, "dataplane_peer_tables_built_total");
        var rss = new List<long>();
        var soak = Stopwatch.StartNew();
        long beats = 0, changes = 0, recreated = 0;
        while (soak.Elapsed.TotalSeconds < seconds)
        {
            k.Api.Heartbeat(peers[(int)(beats % peers.Length)]);
            beats++;
            if (beats % 500 == 0)
            {
                int i = (int)(changes * 7919 % peers.Length);
                k.Api.PutNode(peers[i], Subnet(i), Flanneld(i, 200 + (int)(changes % 50)));
                changes++;
            }
            if (beats % 2500 == 0)
            {
                int i = (int)((recreated * 104729 + 1) % peers.Length);
                k.Api.DeleteNode(peers[i]);
                k.Api.PutNode(peers[i], Subnet(i), Flanneld(i, 1));
                recreated++;
            }
            if (soak.Elapsed.TotalSeconds >= seconds * (rss.Count + 1) / 10.0 && rss.Count < 9)
            {
                rss.Add(Status(n1.Pid, "VmRSS:"));
            }
            long due = (long)(soak.Elapsed.TotalSeconds * 500);
            if (beats > due)
            {
                Thread.Sleep(TimeSpan.FromSeconds((beats - due) / 500.0));
            }
        }
        Thread.Sleep(1000); // the last events read
        rss.Add(Status(n1.Pid, "VmRSS:"));
        long built = Metric(k, "dataplane_peer_tables_built_total") - tables;
        output.WriteLine($"soak of {seconds} s: {beats} heartbeats, {changes} lease changes, {recreated} Nodes deleted and added back, {built} tables built; "
            + $"VmRSS every {seconds / 10.0:F0} s (MB): {string.Join(" ", rss.Select(r => r / 1024))}; VmHWM {Status(n1.Pid, "VmHWM:") / 1024} MB");
        Assert.Contains($"{peers.Length} peers", ReadyLine(k));
        Assert.InRange(built, 1, changes + (2 * recreated));
        // Over minutes the heap has settled and 10 % holds (bench/README.md: 10 minutes at 5,000 Nodes);
        // CI's short soak is mostly the GC's warm-up, and its bound catches what keeps events (18 KB each), not a slow leak.
        double bound = seconds >= 300 ? 1.10 : 1.25;
        Assert.True(rss.Skip(1).Max() <= rss[0] * bound, $"VmRSS grew more than {(bound - 1) * 100:F0} % from {rss[0] / 1024} MB: {string.Join(" ", rss.Select(r => r / 1024))}");
    }

    /// <summary>
    /// A consistent list after a 410 is paged (limit 500, continue); when the history is compacted
    /// between its pages the continue token is a 410 too, and the node starts the list again and converges.
    /// </summary>
    [Fact]
    public void A_paged_list_whose_continue_token_expires_is_started_again_and_converges()
    {
        using var k = new KubeCluster("vxlan");
        File.WriteAllText(k.NetConf, """{"Network":"10.128.0.0/9","SubnetLen":24,"Backend":{"Type":"vxlan"}}""");
        k.Register(1, withPod: false);
        const int nodes = 1200;
        for (int i = 0; i < nodes; i++)
        {
            k.Api.PutNode(string.Create(CultureInfo.InvariantCulture, $"peer{i:D5}"), Subnet(i), Flanneld(i, i % 250 + 1));
        }
        NodeProcess n1 = k.StartNode(1, "--healthz-port", "9110");
        Assert.Contains($"{nodes} peers", ReadyLine(k));
        int before = k.Api.Requests.Count;
        k.Api.CompactAfterListPage = 2; // the first page of the next paged list is served, then its token expires
        k.Api.ExpireWatches();
        k.Api.PutNode("peer99999", Subnet(nodes), Flanneld(nodes, 1));
        Assert.True(n1.WaitForLine($"Subnet added: {Subnet(nodes)} via 198.51.100.1", TimeSpan.FromSeconds(10)) is not null, n1.Output);
        string[] lists = [.. k.Api.Requests.Skip(before).Where(r => r.StartsWith("GET /api/v1/nodes?", StringComparison.Ordinal) && !r.Contains("watch=", StringComparison.Ordinal))];
        output.WriteLine(string.Join("\n", lists));
        Assert.Equal("GET /api/v1/nodes?limit=500", lists[0]);
        Assert.StartsWith("GET /api/v1/nodes?limit=500&continue=", lists[1], StringComparison.Ordinal); // the expired token: 410
        Assert.Equal("GET /api/v1/nodes?limit=500", lists[2]); // listed again from the start
        Assert.Equal(2, lists.Skip(3).Count(r => r.Contains("continue=", StringComparison.Ordinal))); // 1,202 Nodes: three pages
        Assert.Contains($"{nodes + 1} peers", ReadyLine(k));
    }

    private static string Subnet(int i) => string.Create(CultureInfo.InvariantCulture, $"10.{128 + i / 256}.{i % 256}.0/24");

    private static Dictionary<string, string> Flanneld(int i, int host) => new()
    {
        [KubeCluster.Prefix + "backend-data"] = string.Create(CultureInfo.InvariantCulture, $$"""{"VNI":1,"VtepMAC":"0e:00:5f:{{i / 65536 % 256:x2}}:{{i / 256 % 256:x2}}:{{i % 256:x2}}"}"""),
        [KubeCluster.Prefix + "backend-type"] = "vxlan",
        [KubeCluster.Prefix + "kube-subnet-manager"] = "true",
        [KubeCluster.Prefix + "public-ip"] = string.Create(CultureInfo.InvariantCulture, $"198.51.100.{host}"),
    };

    /// <summary>/readyz of node 1 once it answers 200 (within 30 s): "ready: lease ..., N peers, ...".</summary>
    private static string ReadyLine(KubeCluster k)
    {
        string line = "";
        Assert.True(SpinWait.SpinUntil(() =>
        {
            line = k.C.Topology.Exec(k.C.Topology.Node(1), ["curl", "-s", "-m", "2", "http://192.0.2.1:9110/readyz"], 10_000).Stdout.Trim();
            return line.StartsWith("ready:", StringComparison.Ordinal);
        }, TimeSpan.FromSeconds(30)), line);
        return line;
    }

    private static long Metric(KubeCluster k, string name)
    {
        string text = k.C.Topology.Exec(k.C.Topology.Node(1), ["curl", "-s", "-m", "5", "http://192.0.2.1:9100/metrics"], 15_000).Stdout;
        Match m = Regex.Match(text, $"^{Regex.Escape(name)} (\\d+)$", RegexOptions.Multiline);
        Assert.True(m.Success, text);
        return long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
    }

    /// <summary>A /proc/PID/status field in kB.</summary>
    private static long Status(int pid, string field) =>
        long.Parse(File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith(field, StringComparison.Ordinal))[field.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);

    /// <summary>utime + stime of the process, in seconds.</summary>
    private static double CpuSeconds(int pid)
    {
        string stat = File.ReadAllText($"/proc/{pid}/stat");
        string[] f = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return (long.Parse(f[11], CultureInfo.InvariantCulture) + long.Parse(f[12], CultureInfo.InvariantCulture)) / 100.0;
    }
}
