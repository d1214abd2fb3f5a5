using System.Globalization;
using System.Text.RegularExpressions;
using Dataplane.Lab;
using Dataplane.Node;

namespace Dataplane.Integration.Tests;

/// <summary>Counters a user can read: Prometheus text over HTTP, and <c>dataplane stats</c> over the control socket.</summary>
public class MetricsTests
{
    [Fact]
    public void Metrics_over_http_and_stats_over_the_control_socket_count_what_happened()
    {
        using var c = new Cluster();
        c.Topology.AddNode(1);
        c.Topology.AddNode(2);
        // Node 9's lease is refused (its public IP is on the overlay): the rejection families have a sample too.
        new ClusterFileBuilder().Node(1).Node(2).Node(9, publicIp: "10.244.7.7").WriteTo(c.LeasesPath);
        c.StartNode(1, "vxlan", null, "--metrics", "192.0.2.1:9100", "--icmp-rate", "2", "--icmp-burst", "1");
        c.StartNode(2, "vxlan");

        Assert.Equal(0, c.Ping(c.Topology.Pod(1), Topology.PodIp(2), count: 5).ExitCode);
        c.Ping(c.Topology.Pod(1), "10.244.9.9", count: 4); // no route: ICMP, rate limited to 2/s with a burst of 1
        c.StartTransfer(1, 2, 8L << 20).AssertIntact(TimeSpan.FromSeconds(60));

        // Prometheus text over HTTP, fetched from the other node with bash's /dev/tcp (an independent client).
        ProcessRunner.Result http = c.Topology.Exec(c.Topology.Node(2), ["/bin/bash", "-c",
            "exec 3<>/dev/tcp/192.0.2.1/9100; printf 'GET /metrics HTTP/1.1\\r\\nHost: node1\\r\\n\\r\\n' >&3; timeout 5 cat <&3"]);
        Assert.StartsWith("HTTP/1.1 200 OK", http.Stdout);
        Assert.Contains("Content-Type: text/plain; version=0.0.4", http.Stdout);
        string m = http.Stdout;
        Assert.True(Value(m, "dataplane_packets_total{direction=\"out\"}") > 5000, m);
        Assert.True(Value(m, "dataplane_peer_packets_total{peer=\"192.0.2.2\",subnet=\"10.244.2.0/24\",direction=\"out\"}") > 5000, m);
        Assert.True(Value(m, "dataplane_peer_bytes_total{peer=\"192.0.2.2\",subnet=\"10.244.2.0/24\",direction=\"out\"}") >= 8L << 20, m);
        // In from the peer: the 5 echo replies and the transfer's handshake and ACKs (how many ACKs the
        // receiver sends varies with timing: 100 in one CI run, more in others, so no tighter bound).
        Assert.True(Value(m, "dataplane_peer_packets_total{peer=\"192.0.2.2\",subnet=\"10.244.2.0/24\",direction=\"in\"}") >= 5 + 2, m);
        Assert.Equal(4, Value(m, "dataplane_drops_total{reason=\"no_route\"}"));
        double sent = Value(m, "dataplane_icmp_errors_total{result=\"sent\"}"), limited = Value(m, "dataplane_icmp_errors_total{result=\"rate_limited\"}");
        Assert.Equal(4, sent + limited);
        Assert.True(limited >= 1, m);
        Assert.Contains("dataplane_offload_info{device=\"csum tso4 tso6", m);
        Assert.Contains("dataplane_build_info{version=", m);
        Assert.Contains("dataplane_drops_total{reason=\"bad_vxlan_flags\"} 0", m);
        AssertEveryDocumentedFamily(m);
        ProcessRunner.Result notFound = c.Topology.Exec(c.Topology.Node(2), ["/bin/bash", "-c",
            "exec 3<>/dev/tcp/192.0.2.1/9100; printf 'GET / HTTP/1.1\\r\\n\\r\\n' >&3; timeout 5 cat <&3"]);
        Assert.StartsWith("HTTP/1.1 404", notFound.Stdout);

        // dataplane stats, one snapshot from the control socket.
        ProcessRunner.Result stats = ProcessRunner.Run(SelfCommand.Prefix()[0], [.. SelfCommand.Prefix().Skip(1), "stats", "--control-socket", c.ControlSocket(1), "--once"]);
        Assert.True(stats.ExitCode == 0, stats.Stderr);
        Assert.Contains("flannel.1 (vxlan), 1 peers", stats.Stdout);
        Assert.Matches(@"peer 192\.0\.2\.2 10\.244\.2\.0/24\s+out\s+\d{4,}", stats.Stdout);
        Assert.Contains("no_route 4", stats.Stdout);
        Assert.Contains("offloads: device csum tso4", stats.Stdout);

        ProcessRunner.Result missing = ProcessRunner.Run(SelfCommand.Prefix()[0], [.. SelfCommand.Prefix().Skip(1), "stats", "--control-socket", c.Path_("nobody.sock"), "--once"]);
        Assert.NotEqual(0, missing.ExitCode);
        Assert.Contains("cannot read", missing.Stderr);
    }

    /// <summary>
    /// flanneld's --healthz-ip/--healthz-port: /healthz and /readyz on their own listener, apart from
    /// --metrics (which serves neither, nor they it); bound to the address asked for only; one listener
    /// when both flags name the same address and port. Fetched by curl from the other node.
    /// </summary>
    [Fact]
    public void Healthz_and_readyz_answer_on_their_own_port_and_address()
    {
        using Cluster c = Cluster.WithTwoNodes();
        c.StartNode(1, "vxlan", null, "--metrics", "192.0.2.1:9100", "--healthz-ip", "192.0.2.1", "--healthz-port", "9110");
        c.StartNode(2, "vxlan", null, "--metrics", ":9100", "--healthz-port", "9100");

        Assert.Equal((200, "ok"), Get(c, "192.0.2.1:9110/healthz"));
        Assert.Equal((200, "ready: lease 10.244.1.0/24, 1 peer, 2 queues forwarding"), Get(c, "192.0.2.1:9110/readyz"));
        Assert.Equal(404, Get(c, "192.0.2.1:9110/metrics").Status);
        Assert.Equal(404, Get(c, "192.0.2.1:9100/healthz").Status);
        Assert.Equal(0, Get(c, "127.0.0.1:9110/healthz", from: 1).Status); // --healthz-ip: that address only (curl: no connection)
        Assert.Equal(200, Get(c, "192.0.2.1:9100/metrics").Status);

        // Node 2: --healthz-port on --metrics's own address and port (flanneld's default --healthz-ip, 0.0.0.0): one listener with every path.
        Assert.Equal((200, "ok"), Get(c, "192.0.2.2:9100/healthz", from: 1));
        Assert.Equal(200, Get(c, "192.0.2.2:9100/readyz", from: 1).Status);
        Assert.Equal(200, Get(c, "192.0.2.2:9100/metrics", from: 1).Status);
    }

    /// <summary>
    /// Every family docs/observability.md lists (`dataplane_x{a,b}`) is served, with a sample that
    /// carries each label it names: the list users read is the list the node serves.
    /// </summary>
    private static void AssertEveryDocumentedFamily(string metrics)
    {
        string doc = File.ReadAllText(Path.Combine(Repository.Root, "docs", "observability.md"));
        MatchCollection families = Regex.Matches(doc, @"`(dataplane_[a-z_]+)(?:\{([a-z_,.]+)\})?`");
        Assert.True(families.Count >= 25, $"{families.Count} families found in the doc");
        foreach (Match f in families)
        {
            string name = f.Groups[1].Value;
            Assert.True(metrics.Contains($"# TYPE {name} ", StringComparison.Ordinal), $"{name}: documented, not served");
            foreach (string label in f.Groups[2].Success ? f.Groups[2].Value.Split(',').Where(l => l != "...") : [])
            {
                Assert.True(Regex.IsMatch(metrics, $@"^{name}\{{[^}}]*\b{label}=""", RegexOptions.Multiline), $"{name}: no sample with label {label}");
            }
        }
    }

    /// <summary>curl from node <paramref name="from"/>: the status (0: no connection) and the body's first line.</summary>
    private static (int Status, string Body) Get(Cluster c, string url, int from = 2)
    {
        ProcessRunner.Result r = c.Topology.Exec(c.Topology.Node(from), ["curl", "-s", "-m", "5", "-w", "\n%{http_code}", $"http://{url}"], 15_000);
        string[] lines = r.Stdout.TrimEnd().Split('\n');
        return (int.Parse(lines[^1], CultureInfo.InvariantCulture), lines.Length > 1 ? lines[0] : "");
    }

    private static double Value(string metrics, string series)
    {
        Match m = Regex.Match(metrics, "^" + Regex.Escape(series) + @" (\S+)$", RegexOptions.Multiline);
        Assert.True(m.Success, $"no series {series}");
        return double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
    }
}
