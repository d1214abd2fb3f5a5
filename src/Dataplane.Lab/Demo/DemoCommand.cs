using System.Globalization;
using System.Text.RegularExpressions;

using Dataplane.Node;

namespace Dataplane.Lab.Demo;

/// <summary>
/// <c>dataplane demo</c>: two nodes and two pods in network namespaces on this machine, a data plane
/// on each node, and for each backend (udp, then vxlan) a ping and a timed TCP transfer between
/// the pods, with the figures. Everything it creates carries a run id and is removed at the end,
/// also on Ctrl-C.
/// </summary>
internal static partial class DemoCommand
{
    public static int Run(double seconds, TextWriter o)
    {
        if (!Node.HostInfo.HasNetAdmin())
        {
            Console.Error.WriteLine("dataplane demo: needs root (CAP_NET_ADMIN) to create network namespaces");
            return 1;
        }
        if (ProcessRunner.Which("ip") is null)
        {
            Console.Error.WriteLine("dataplane demo: iproute2 is missing (apt-get install iproute2)");
            return 1;
        }
        using var topo = new Topology();
        using Topology.InterruptScope interrupted = topo.CancelOnSignals();
        try
        {
            return Run(topo, seconds, o, interrupted.Token);
        }
        catch (OperationCanceledException)
        {
            o.WriteLine($"Interrupted: removing the namespaces of run {topo.Id}.");
            return 130;
        }
    }

    private static int Run(Topology topo, double seconds, TextWriter o, CancellationToken interrupted)
    {
        o.WriteLine($"Building two nodes and two pods in namespaces (run id {topo.Id}):");
        topo.AddNode(1);
        topo.AddNode(2);
        o.WriteLine($"  {topo.Node(1)} 192.0.2.1 -- switch -- 192.0.2.2 {topo.Node(2)}");
        o.WriteLine($"  {topo.Pod(1)} 10.244.1.2 behind node 1, {topo.Pod(2)} 10.244.2.2 behind node 2");
        string leases = Path.Combine(topo.WorkDir, "cluster.json");
        new ClusterFileBuilder().Node(1).Node(2).WriteTo(leases);
        o.WriteLine($"  cluster file {leases}");

        var results = new List<(string Backend, string Ping, string Tcp, string Digest)>();
        foreach (string backend in new[] { "udp", "vxlan" })
        {
            interrupted.ThrowIfCancellationRequested();
            o.WriteLine();
            o.WriteLine($"== backend {backend} ==");
            NodeProcess[] nodes = [StartNode(topo, 1, backend, leases, o), StartNode(topo, 2, backend, leases, o)];
            try
            {
                foreach (NodeProcess n in nodes)
                {
                    if (n.WaitForLine("Ready", TimeSpan.FromSeconds(30)) is null)
                    {
                        interrupted.ThrowIfCancellationRequested();
                        Console.Error.WriteLine($"dataplane demo: a node did not start:\n{n.Output}");
                        return 1;
                    }
                }
                o.WriteLine($"ping {Topology.PodIp(2)} from pod 1:");
                ProcessRunner.Result ping = topo.Exec(topo.Pod(1), [.. SelfCommand.Prefix(), "pod-ping", Topology.PodIp(2), "--count", "5"]);
                o.Write(Indent(ping.Stdout));
                interrupted.ThrowIfCancellationRequested();
                string pingSummary = Field(ping.Stdout, "received") is string rec ? $"{rec}/5 replies, avg {Field(ping.Stdout, "avg_ms")} ms" : "failed";

                o.WriteLine($"TCP from pod 1 to pod 2 for {seconds.ToString(CultureInfo.InvariantCulture)} s:");
                NodeProcess sink = topo.Start(topo.Pod(2), [.. SelfCommand.Prefix(), "pod-sink", "--port", "5201", "--timeout", "60"], "sink");
                sink.WaitForLine("listening", TimeSpan.FromSeconds(15));
                interrupted.ThrowIfCancellationRequested();
                ProcessRunner.Result send = topo.Exec(topo.Pod(1), [.. SelfCommand.Prefix(), "pod-send", "--to", $"{Topology.PodIp(2)}:5201",
                    "--seconds", seconds.ToString(CultureInfo.InvariantCulture)], 120_000);
                sink.WaitForExit(TimeSpan.FromSeconds(30));
                interrupted.ThrowIfCancellationRequested();
                string? received = sink.WaitForLine("received", TimeSpan.FromSeconds(1));
                o.Write(Indent(send.Stdout));
                o.WriteLine(Indent(received ?? "receiver reported nothing"));
                bool same = received is not null && Field(send.Stdout, "sha256") is string h && Field(received, "sha256") == h
                    && Field(send.Stdout, "bytes") == Field(received, "bytes");
                string tcp = Field(send.Stdout, "gbps") is string g ? $"{g} Gbit/s, {long.Parse(Field(send.Stdout, "bytes")!, CultureInfo.InvariantCulture) / 1e6:F0} MB" : "failed";
                results.Add((backend, pingSummary, tcp, same ? "SHA-256 match" : "MISMATCH"));
            }
            finally
            {
                foreach (NodeProcess n in nodes.Where(_ => !interrupted.IsCancellationRequested))
                {
                    int code = n.Stop(TimeSpan.FromSeconds(10));
                    string? counters = n.Lines.LastOrDefault(l => l.Contains("Counters:", StringComparison.Ordinal));
                    o.WriteLine($"  node stopped (exit {code}); {counters?[(counters.IndexOf("Counters:", StringComparison.Ordinal))..]}");
                }
            }
        }
        o.WriteLine();
        o.WriteLine("Summary (pod 1 -> pod 2 across two nodes on this machine):");
        o.WriteLine($"  {"backend",-8} {"ping",-28} {"TCP one stream",-24} integrity");
        foreach (var r in results)
        {
            o.WriteLine($"  {r.Backend,-8} {r.Ping,-28} {r.Tcp,-24} {r.Digest}");
        }
        o.WriteLine($"Removing namespaces of run {topo.Id}.");
        return results.All(r => r.Digest == "SHA-256 match") ? 0 : 1;
    }

    private static NodeProcess StartNode(Topology topo, int i, string backend, string leases, TextWriter o) =>
        topo.Start(topo.Node(i), [.. SelfCommand.Prefix(), "run", "--leases", leases, "--public-ip", Topology.UnderlayIp(i),
            "--backend", backend, "--subnet-file", Path.Combine(topo.WorkDir, $"node{i}-subnet.env"),
            "--control-socket", Path.Combine(topo.WorkDir, $"node{i}.sock")], $"node{i}", o);

    private static string Indent(string text) =>
        string.Concat(text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => $"  {l}\n"));

    /// <summary>The value of <c>name=value</c> in a line of the pod tools' output.</summary>
    public static string? Field(string text, string name)
    {
        Match m = Regex.Match(text, $@"\b{Regex.Escape(name)}=(\S+)");
        return m.Success ? m.Groups[1].Value : null;
    }
}
