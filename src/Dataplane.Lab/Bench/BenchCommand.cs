using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Dataplane.Node;

namespace Dataplane.Lab.Bench;

/// <summary>
/// <c>dataplane bench</c>: the end-to-end comparison users run. One topology (two nodes, two pods,
/// an underlay switch, all in namespaces), and one configuration after another on it:
///
///  1. host-gw: plain routes between the nodes (no encapsulation; the upper bound).
///  2. kernel VXLAN configured exactly as flanneld configures flannel.1 (the reference: every
///     figure is reported as a ratio to it, measured in the same run).
///  3. this data plane, vxlan backend; 4. this data plane, udp backend (offloads and batching on);
///  5. both backends again with the packet source (--source packet: a veth pair read with AF_PACKET
///     instead of a TUN); 6. the naive mode: udp backend, --offload off --batch 1 (one packet per
///     system call, as flannel's C proxy works).
///
/// Per configuration: ping on an idle path (50 ms apart), sockperf UDP ping-pong (avg, p50, p99;
/// skipped with a note when sockperf is not installed), iperf3 TCP with one and with four streams
/// (with the CPU time of our loop threads per Gbit/s during the one-stream test), and 64-byte UDP:
/// received at full offered load, and the highest rate received with at most 5% loss. The pods'
/// MTU follows the configuration, as the CNI plugin sets it from subnet.env. Results: a table,
/// JSON and an SVG chart.
/// </summary>
internal static partial class BenchCommand
{
    private const double MaxLossPercent = 5;

    /// <param name="OnlyWhenNamed">Runs only when named in --only (a technique turned off, to measure its own effect).</param>
    private sealed record Config(string Name, string Label, int PodMtu, Func<Topology, string, Running> Setup, bool OnlyWhenNamed = false);

    /// <summary>A configuration set up: how to take it down, and our nodes' processes (none for kernel paths).</summary>
    private sealed record Running(Action Teardown, int[] Pids);

    private const int SockperfPort = 11111;

    public static int Run(double seconds, double udpSeconds, string? only, int rounds, int queues, string outDir, TextWriter o)
    {
        string q = queues.ToString(CultureInfo.InvariantCulture);
        if (!Node.HostInfo.HasNetAdmin())
        {
            Console.Error.WriteLine("dataplane bench: needs root (CAP_NET_ADMIN) to create network namespaces");
            return 1;
        }
        string? iperf = ProcessRunner.Which("iperf3");
        string? ping = ProcessRunner.Which("ping");
        if (iperf is null || ping is null || ProcessRunner.Which("ip") is null || ProcessRunner.Which("bridge") is null)
        {
            Console.Error.WriteLine("dataplane bench: needs iperf3, ping and iproute2: apt-get install iperf3 iputils-ping iproute2");
            return 1;
        }
        Config[] configs =
        [
            new("host-gw", "host-gw routes", 1500, HostGw),
            new("kernel-vxlan", "kernel VXLAN (flannel.1)", 1450, KernelVxlan),
            new("dataplane-vxlan", "dataplane vxlan", 1450, (t, l) => Ours(t, l, "vxlan", "--queues", q)),
            new("dataplane-udp", "dataplane udp", 1472, (t, l) => Ours(t, l, "udp", "--queues", q)),
            new("vxlan-assist-off", "dataplane vxlan, assist off", 1450, (t, l) => Ours(t, l, "vxlan", "--assist", "off", "--queues", q), OnlyWhenNamed: true),
            new("udp-assist-off", "dataplane udp, assist off", 1472, (t, l) => Ours(t, l, "udp", "--assist", "off", "--queues", q), OnlyWhenNamed: true),
            new("packet-vxlan", "dataplane vxlan (packet)", 1450, (t, l) => Ours(t, l, "vxlan", "--source", "packet", "--queues", q)),
            new("packet-udp", "dataplane udp (packet)", 1472, (t, l) => Ours(t, l, "udp", "--source", "packet", "--queues", q)),
            new("naive-udp", "naive (1 packet/syscall)", 1472, (t, l) => Ours(t, l, "udp", "--offload", "off", "--batch", "1", "--queues", "1")),
        ];
        if (only is not null)
        {
            string[] names = only.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            configs = [.. configs.Where(c => c.Name == "kernel-vxlan" || names.Contains(c.Name))];
        }
        else
        {
            configs = [.. configs.Where(c => !c.OnlyWhenNamed)];
        }

        using var topo = new Topology();
        using Topology.InterruptScope interrupted = topo.CancelOnSignals();

        o.WriteLine($"Topology (run id {topo.Id}): two nodes on an underlay switch (192.0.2.1, 192.0.2.2), pods 10.244.1.2 and 10.244.2.2");
        topo.AddNode(1);
        topo.AddNode(2);
        string leases = Path.Combine(topo.WorkDir, "cluster.json");
        new ClusterFileBuilder().Node(1).Node(2).WriteTo(leases);
        NodeProcess server = topo.Start(topo.Pod(2), [iperf, "-s", "-p", "5201", "--forceflush"], "iperf3-server");
        if (server.WaitForLine("Server listening", TimeSpan.FromSeconds(10)) is null)
        {
            Console.Error.WriteLine($"dataplane bench: iperf3 server did not start:\n{server.Output}");
            return 1;
        }
        string? sockperf = ProcessRunner.Which("sockperf");
        if (sockperf is null)
        {
            o.WriteLine("sockperf is not installed (apt-get install sockperf): the UDP ping-pong figures are left out.");
        }
        else
        {
            NodeProcess pong = topo.Start(topo.Pod(2), [sockperf, "server", "-i", Topology.PodIp(2), "-p", SockperfPort.ToString(CultureInfo.InvariantCulture)], "sockperf-server");
            if (pong.WaitForLine("sockperf: Warmup stage", TimeSpan.FromSeconds(10)) is null && pong.HasExited)
            {
                o.WriteLine($"sockperf server did not start ({pong.Output.Split('\n').LastOrDefault()}): the UDP ping-pong figures are left out.");
                sockperf = null;
            }
        }
        o.WriteLine($"This data plane runs with {queues} queue(s) per node; the naive mode with one.");
        bool nativeNodes = NodesAreNative();
        o.WriteLine($"Nodes run as: {string.Join(' ', SelfCommand.Prefix())} ({(nativeNodes ? "NativeAOT" : "JIT")})");
        if (!nativeNodes)
        {
            o.WriteLine("  Under the JIT a node's first seconds include tiered compilation, which inflates the latency figures (ping on an idle path");
            o.WriteLine("  measured 0.30-0.98 ms against 0.16-0.26 ms for the NativeAOT binary): run the published binary for the figures users see.");
        }
        o.WriteLine($"Each configuration: ping on an idle path, UDP ping-pong, TCP 1 and 4 streams for {seconds.ToString(CultureInfo.InvariantCulture)} s, 64-byte UDP for {udpSeconds.ToString(CultureInfo.InvariantCulture)} s per probe; {rounds} round(s), medians reported.");

        var all = configs.ToDictionary(c => c.Name, _ => new List<BenchResult>());
        try
        {
            for (int round = 1; round <= rounds; round++)
            {
                for (int i = 0; i < configs.Length; i++)
                {
                    interrupted.Token.ThrowIfCancellationRequested();
                    Config c = configs[i];
                    o.Write($"[round {round}/{rounds}, {i + 1}/{configs.Length}] {c.Label,-26}");
                    BenchResult r = Measure(topo, c, leases, iperf, ping, sockperf, seconds, udpSeconds, o, interrupted.Token);
                    all[c.Name].Add(r);
                    o.WriteLine(r.Error is null
                        ? string.Create(CultureInfo.InvariantCulture, $" ping {r.RttMs:F3} ms, pingpong {r.PingPongAvgUs:F1}/{r.PingPongP50Us:F1}/{r.PingPongP99Us:F1} us, tcp1 {r.Tcp1Gbps:F2} ({r.CpuCoresPerGbps:F3} cores/Gbit/s), tcp4 {r.Tcp4Gbps:F2} Gbit/s, udp64 full {r.Udp64FullPps / 1000:F0} kpps ({r.Udp64FullLossPercent:F1}% loss), <=5% {r.Udp64Pps / 1000:F0} kpps ({r.Udp64LossPercent:F1}% loss)")
                        : $" failed: {r.Error}");
                }
            }
        }
        catch (OperationCanceledException)
        {
            o.WriteLine();
            o.WriteLine($"Interrupted: removing the namespaces of run {topo.Id}.");
            return 130;
        }

        List<BenchResult> results = [.. configs.Select(c => Median(all[c.Name]))];
        BenchResult kernel = results.Single(r => r.Config == "kernel-vxlan");
        o.WriteLine();
        Report(results, kernel, o);
        Directory.CreateDirectory(outDir);
        string stamp = DateTime.UtcNow.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture);
        string json = Path.Combine(outDir, $"bench-{stamp}.json");
        string svg = Path.Combine(outDir, $"bench-{stamp}.svg");
        File.WriteAllText(json, Json(results, kernel, seconds, udpSeconds, rounds));
        File.WriteAllText(svg, SvgChart.Render(results, kernel, $"dataplane bench {stamp} ({Environment.ProcessorCount} vCPU, {CpuModel()}, Linux {KernelRelease()})"));
        o.WriteLine($"Wrote {json} and {svg}");
        return results.Any(r => r.Error is not null) ? 1 : 0;
    }

    /// <summary>Whether the nodes run the NativeAOT binary: the program started is not `dotnet x.dll` and is an ELF file of its own.</summary>
    private static bool NodesAreNative()
    {
        IReadOnlyList<string> prefix = SelfCommand.Prefix();
        if (prefix.Count != 1 || !File.Exists(prefix[0]) || File.Exists(Path.Combine(Path.GetDirectoryName(prefix[0])!, "dataplane.dll")))
        {
            return false; // dotnet dataplane.dll, or an apphost beside its managed dll
        }
        return true;
    }

    private static BenchResult Measure(Topology topo, Config c, string leases, string iperf, string ping, string? sockperf, double seconds, double udpSeconds, TextWriter o, CancellationToken stop)
    {
        var r = new BenchResult(c.Name, c.Label);
        Running? running = null;
        try
        {
            SetPodMtu(topo, c.PodMtu);
            running = c.Setup(topo, leases);
            stop.ThrowIfCancellationRequested();
            // Reachability first (also fills neighbour caches).
            ProcessRunner.Result warm = topo.Exec(topo.Pod(1), [ping, "-c", "3", "-i", "0.2", "-W", "2", Topology.PodIp(2)], 20_000);
            if (!warm.Stdout.Contains(" 0% packet loss", StringComparison.Ordinal) && !warm.Stdout.Contains("3 received", StringComparison.Ordinal) && !warm.Stdout.Contains("2 received", StringComparison.Ordinal))
            {
                r.Error = "pods cannot reach each other: " + warm.Stdout.Trim().Split('\n').LastOrDefault();
                return r;
            }
            // An idle path: every ping finds the loops asleep.
            ProcessRunner.Result rtt = topo.Exec(topo.Pod(1), [ping, "-c", "40", "-i", "0.05", "-q", Topology.PodIp(2)], 30_000);
            Match m = RttLine().Match(rtt.Stdout);
            r.RttMs = m.Success ? double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) : double.NaN;
            stop.ThrowIfCancellationRequested();
            if (sockperf is not null)
            {
                (r.PingPongAvgUs, r.PingPongP50Us, r.PingPongP99Us) = PingPong(topo, sockperf, Math.Min(seconds, 5));
                stop.ThrowIfCancellationRequested();
            }
            double cpuBefore = LoopThreadsCpuSeconds(running.Pids);
            long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
            r.Tcp1Gbps = Tcp(topo, iperf, 1, seconds);
            double wall = System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalSeconds;
            if (running.Pids.Length > 0)
            {
                r.CpuCoresPerGbps = (LoopThreadsCpuSeconds(running.Pids) - cpuBefore) / wall / r.Tcp1Gbps;
            }
            stop.ThrowIfCancellationRequested();
            r.Tcp4Gbps = Tcp(topo, iperf, 4, seconds);
            stop.ThrowIfCancellationRequested();
            (r.Udp64FullPps, r.Udp64FullLossPercent, r.Udp64Pps, r.Udp64LossPercent) = Udp64(topo, iperf, udpSeconds, stop);
        }
        catch (Exception e) when (e is InvalidOperationException or TimeoutException or JsonException or FormatException)
        {
            r.Error = e.Message.Split('\n')[0];
        }
        finally
        {
            running?.Teardown();
        }
        return r;
    }

    /// <summary>
    /// sockperf ping-pong from pod 1 to the server in pod 2, 64-byte messages: average, median and
    /// 99th percentile latency in microseconds (sockperf reports half the round trip).
    /// </summary>
    private static (double Avg, double P50, double P99) PingPong(Topology topo, string sockperf, double seconds)
    {
        ProcessRunner.Result r = topo.Exec(topo.Pod(1), [sockperf, "ping-pong", "-i", Topology.PodIp(2), "-p", SockperfPort.ToString(CultureInfo.InvariantCulture),
            "-m", "64", "-t", seconds.ToString("0", CultureInfo.InvariantCulture)], (int)(seconds * 1000) + 20_000);
        Match avg = SockperfAvg().Match(r.Stdout);
        if (!avg.Success)
        {
            throw new FormatException("sockperf printed no avg-latency: " + (r.Stdout + r.Stderr).Trim().Split('\n').LastOrDefault());
        }
        double Percentile(string p)
        {
            Match pm = Regex.Match(r.Stdout, @"percentile " + Regex.Escape(p) + @" =\s+([\d.]+)");
            return pm.Success ? double.Parse(pm.Groups[1].Value, CultureInfo.InvariantCulture) : double.NaN;
        }
        return (double.Parse(avg.Groups[1].Value, CultureInfo.InvariantCulture), Percentile("50.000"), Percentile("99.000"));
    }

    /// <summary>User + system time of the threads named dp-* (the packet loops) of these processes, in seconds.</summary>
    private static double LoopThreadsCpuSeconds(int[] pids)
    {
        const double ticks = 100; // USER_HZ on Linux
        double total = 0;
        foreach (int pid in pids)
        {
            string tasks = $"/proc/{pid}/task";
            if (!Directory.Exists(tasks))
            {
                continue;
            }
            foreach (string task in Directory.GetDirectories(tasks))
            {
                try
                {
                    if (!File.ReadAllText(Path.Combine(task, "comm")).StartsWith("dp-", StringComparison.Ordinal))
                    {
                        continue;
                    }
                    string stat = File.ReadAllText(Path.Combine(task, "stat"));
                    // Fields after the command name (which may hold spaces, in parentheses): utime and stime are the 12th and 13th.
                    string[] f = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                    total += (double.Parse(f[11], CultureInfo.InvariantCulture) + double.Parse(f[12], CultureInfo.InvariantCulture)) / ticks;
                }
                catch (IOException)
                {
                    // The thread ended meanwhile.
                }
            }
        }
        return total;
    }

    private static double Tcp(Topology topo, string iperf, int streams, double seconds)
    {
        JsonNode run = Iperf(topo, iperf, ["-t", seconds.ToString(CultureInfo.InvariantCulture), "-P", streams.ToString(CultureInfo.InvariantCulture)], seconds);
        return run["end"]!["sum_received"]!["bits_per_second"]!.GetValue<double>() / 1e9;
    }

    /// <summary>
    /// 64-byte datagrams: first as fast as one iperf3 sender goes (the full-load figure); if more
    /// than 5% is lost, offer less (the rate that arrived, then 80% of it each step) until the loss
    /// is at most 5%. When even the lowest probe lost more, its figure is returned with its loss
    /// (the report shows the loss beside every rate, so it says so).
    /// </summary>
    private static (double FullPps, double FullLoss, double Pps, double Loss) Udp64(Topology topo, string iperf, double seconds, CancellationToken stop)
    {
        double offeredBps = 0; // 0: unlimited
        (double pps, double loss) = (double.NaN, double.NaN);
        (double fullPps, double fullLoss) = (double.NaN, double.NaN);
        for (int attempt = 0; attempt < 5; attempt++)
        {
            stop.ThrowIfCancellationRequested();
            JsonNode run = Iperf(topo, iperf, ["-u", "-l", "64", "-b", offeredBps.ToString("0", CultureInfo.InvariantCulture),
                "-t", seconds.ToString(CultureInfo.InvariantCulture)], seconds);
            JsonNode sum = run["end"]!["sum"]!;
            double packets = sum["packets"]!.GetValue<double>();
            double lost = sum["lost_packets"]!.GetValue<double>();
            double secs = sum["seconds"]!.GetValue<double>();
            loss = packets > 0 ? lost / packets * 100 : 100;
            pps = (packets - lost) / secs;
            if (attempt == 0)
            {
                (fullPps, fullLoss) = (pps, loss);
            }
            if (loss <= MaxLossPercent)
            {
                break;
            }
            double nextPps = attempt == 0 ? pps : offeredBps / (64 * 8) * 0.8;
            offeredBps = nextPps * 64 * 8;
            // Let the overload drain before the next probe. Datagrams of this one still queued in
            // the nodes (the TUN ring, socket buffers) would otherwise reach the iperf3 server's next
            // UDP socket (the same port) first: iperf3 takes the first datagram as the new stream's
            // handshake, answers the old client port, and the new client waits forever. With flows
            // spread over queues the next test's control connection no longer queues behind them.
            Thread.Sleep(UdpDrainMs);
        }
        return (fullPps, fullLoss, pps, loss);
    }

    /// <summary>Pause after an overloaded UDP probe (the nodes' queues hold well under 0.2 s of 64-byte datagrams).</summary>
    private const int UdpDrainMs = 1000;

    private static JsonNode Iperf(Topology topo, string iperf, string[] args, double seconds)
    {
        ProcessRunner.Result r = topo.Exec(topo.Pod(1), [iperf, "-c", Topology.PodIp(2), "-p", "5201", "-J", .. args], (int)(seconds * 1000) + 30_000);
        JsonNode node = JsonNode.Parse(r.Stdout) ?? throw new FormatException("iperf3 printed no JSON");
        if (node["error"] is JsonNode error)
        {
            throw new InvalidOperationException($"iperf3: {error}");
        }
        return node;
    }

    private static void SetPodMtu(Topology topo, int mtu)
    {
        string m = mtu.ToString(CultureInfo.InvariantCulture);
        for (int i = 1; i <= 2; i++)
        {
            topo.Ip(topo.Pod(i), "link", "set", "eth0", "mtu", m);
            topo.Ip(topo.Node(i), "link", "set", "pod0", "mtu", m);
            topo.Ip(topo.Pod(i), "route", "flush", "cache");
            topo.Ip(topo.Node(i), "route", "flush", "cache");
        }
    }

    private static Running HostGw(Topology topo, string leases)
    {
        topo.Ip(topo.Node(1), "route", "add", "10.244.2.0/24", "via", Topology.UnderlayIp(2));
        topo.Ip(topo.Node(2), "route", "add", "10.244.1.0/24", "via", Topology.UnderlayIp(1));
        return new Running(() =>
        {
            topo.Ip(topo.Node(1), "route", "del", "10.244.2.0/24");
            topo.Ip(topo.Node(2), "route", "del", "10.244.1.0/24");
        }, []);
    }

    private static Running KernelVxlan(Topology topo, string leases)
    {
        topo.AddKernelVxlan(1, ClusterFileBuilder.VtepMac(1), [(2, ClusterFileBuilder.VtepMac(2))]);
        topo.AddKernelVxlan(2, ClusterFileBuilder.VtepMac(2), [(1, ClusterFileBuilder.VtepMac(1))]);
        return new Running(() =>
        {
            topo.Ip(topo.Node(1), "link", "del", "flannel.1");
            topo.Ip(topo.Node(2), "link", "del", "flannel.1");
        }, []);
    }

    private static Running Ours(Topology topo, string leases, string backend, params string[] extra)
    {
        NodeProcess[] nodes = [.. new[] { 1, 2 }.Select(i => topo.Start(topo.Node(i), [.. SelfCommand.Prefix(), "run", "--leases", leases,
            "--public-ip", Topology.UnderlayIp(i), "--backend", backend, "--subnet-file", Path.Combine(topo.WorkDir, $"node{i}.env"),
            "--control-socket", Path.Combine(topo.WorkDir, $"node{i}.sock"), .. extra], $"node{i}"))];
        foreach (NodeProcess n in nodes)
        {
            if (n.WaitForLine("Ready:", TimeSpan.FromSeconds(30)) is null)
            {
                foreach (NodeProcess x in nodes)
                {
                    x.Stop(TimeSpan.FromSeconds(5));
                }
                throw new InvalidOperationException($"a node did not start: {n.Output.Split('\n').LastOrDefault()}");
            }
        }
        return new Running(() =>
        {
            foreach (NodeProcess n in nodes)
            {
                n.Stop(TimeSpan.FromSeconds(10));
            }
        }, [.. nodes.Select(n => n.Pid)]);
    }

    private static BenchResult Median(List<BenchResult> runs)
    {
        BenchResult first = runs[0];
        var ok = runs.Where(r => r.Error is null).ToList();
        if (ok.Count == 0)
        {
            return first;
        }
        static double Med(IEnumerable<double> xs)
        {
            double[] a = [.. xs.Where(double.IsFinite).Order()];
            return a.Length == 0 ? double.NaN : a.Length % 2 == 1 ? a[a.Length / 2] : (a[a.Length / 2 - 1] + a[a.Length / 2]) / 2;
        }
        return new BenchResult(first.Config, first.Label)
        {
            Tcp1Gbps = Med(ok.Select(r => r.Tcp1Gbps)),
            Tcp4Gbps = Med(ok.Select(r => r.Tcp4Gbps)),
            Udp64Pps = Med(ok.Select(r => r.Udp64Pps)),
            Udp64LossPercent = Med(ok.Select(r => r.Udp64LossPercent)),
            Udp64FullPps = Med(ok.Select(r => r.Udp64FullPps)),
            Udp64FullLossPercent = Med(ok.Select(r => r.Udp64FullLossPercent)),
            RttMs = Med(ok.Select(r => r.RttMs)),
            PingPongAvgUs = Med(ok.Select(r => r.PingPongAvgUs)),
            PingPongP50Us = Med(ok.Select(r => r.PingPongP50Us)),
            PingPongP99Us = Med(ok.Select(r => r.PingPongP99Us)),
            CpuCoresPerGbps = Med(ok.Select(r => r.CpuCoresPerGbps)),
        };
    }

    private static void Report(IReadOnlyList<BenchResult> results, BenchResult kernel, TextWriter o)
    {
        // Always this figure over kernel VXLAN's; for latencies a lower ratio is better (the header says so).
        static string Ratio(double v, double k) =>
            v / k is double ratio && double.IsFinite(ratio) ? ratio.ToString("0.00x", CultureInfo.InvariantCulture) : "-";
        static string Or(double v, string text) => double.IsFinite(v) ? text : "-";
        o.WriteLine("Results (ratio to kernel VXLAN measured in this run; latency ratios: lower is better):");
        o.WriteLine($"  {"configuration",-28} {"TCP 1 stream",-22} {"cores/Gbit/s",-13} {"TCP 4 streams",-22} {"UDP 64 B, full load",-28} {"UDP 64 B, <=5% loss",-28} {"ping, idle",-18} {"ping-pong avg / p50 / p99 (us)",-40}");
        foreach (BenchResult r in results)
        {
            if (r.Error is not null)
            {
                o.WriteLine($"  {r.Label,-28} failed: {r.Error}");
                continue;
            }
            string pingPong = Or(r.PingPongAvgUs, string.Create(CultureInfo.InvariantCulture,
                $"{r.PingPongAvgUs:F1} {Ratio(r.PingPongAvgUs, kernel.PingPongAvgUs)} / {r.PingPongP50Us:F1} / {r.PingPongP99Us:F1} {Ratio(r.PingPongP99Us, kernel.PingPongP99Us)}"));
            o.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  {r.Label,-28} {$"{r.Tcp1Gbps:F2} Gbit/s {Ratio(r.Tcp1Gbps, kernel.Tcp1Gbps)}",-22} {Or(r.CpuCoresPerGbps, $"{r.CpuCoresPerGbps:F3}"),-13} {$"{r.Tcp4Gbps:F2} Gbit/s {Ratio(r.Tcp4Gbps, kernel.Tcp4Gbps)}",-22} {$"{r.Udp64FullPps / 1000:F0} kpps {Ratio(r.Udp64FullPps, kernel.Udp64FullPps)} ({r.Udp64FullLossPercent:F1}%)",-28} {$"{r.Udp64Pps / 1000:F0} kpps {Ratio(r.Udp64Pps, kernel.Udp64Pps)} ({r.Udp64LossPercent:F1}%)",-28} {$"{r.RttMs:F3} ms {Ratio(r.RttMs, kernel.RttMs)}",-18} {pingPong,-40}"));
        }
    }

    private static string Json(IReadOnlyList<BenchResult> results, BenchResult kernel, double seconds, double udpSeconds, int rounds)
    {
        static JsonNode? N(double d) => double.IsFinite(d) ? JsonValue.Create(Math.Round(d, 4)) : null;
        var root = new JsonObject
        {
            ["date"] = DateTime.UtcNow.ToString("o", CultureInfo.InvariantCulture),
            ["machine"] = new JsonObject
            {
                ["cpu"] = CpuModel(),
                ["vcpus"] = Environment.ProcessorCount,
                ["kernel"] = KernelRelease(),
                ["dotnet"] = Environment.Version.ToString(),
            },
            ["tcp_seconds"] = seconds,
            ["udp_seconds_per_probe"] = udpSeconds,
            ["rounds"] = rounds,
            ["nodes_native_aot"] = NodesAreNative(),
            ["reference"] = "kernel-vxlan",
            ["results"] = new JsonArray([.. results.Select(r => (JsonNode)new JsonObject
            {
                ["config"] = r.Config,
                ["label"] = r.Label,
                ["error"] = r.Error,
                ["tcp1_gbps"] = N(r.Tcp1Gbps),
                ["tcp4_gbps"] = N(r.Tcp4Gbps),
                ["udp64_pps"] = N(r.Udp64Pps),
                ["udp64_loss_percent"] = N(r.Udp64LossPercent),
                ["udp64_full_load_pps"] = N(r.Udp64FullPps),
                ["udp64_full_load_loss_percent"] = N(r.Udp64FullLossPercent),
                ["rtt_ms"] = N(r.RttMs),
                ["pingpong_avg_us"] = N(r.PingPongAvgUs),
                ["pingpong_p50_us"] = N(r.PingPongP50Us),
                ["pingpong_p99_us"] = N(r.PingPongP99Us),
                ["loop_cpu_cores_per_gbps"] = N(r.CpuCoresPerGbps),
                ["ratio"] = new JsonObject
                {
                    ["tcp1"] = N(r.Tcp1Gbps / kernel.Tcp1Gbps),
                    ["tcp4"] = N(r.Tcp4Gbps / kernel.Tcp4Gbps),
                    ["udp64"] = N(r.Udp64Pps / kernel.Udp64Pps),
                    ["udp64_full_load"] = N(r.Udp64FullPps / kernel.Udp64FullPps),
                    ["rtt"] = N(r.RttMs / kernel.RttMs),
                    ["pingpong_avg"] = N(r.PingPongAvgUs / kernel.PingPongAvgUs),
                    ["pingpong_p99"] = N(r.PingPongP99Us / kernel.PingPongP99Us),
                },
            })]),
        };
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    private static string KernelRelease() => TunTap.KernelRelease.Current ?? Environment.OSVersion.VersionString;

    private static string CpuModel()
    {
        try
        {
            string? line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal));
            return line is null ? "unknown" : line[(line.IndexOf(':', StringComparison.Ordinal) + 1)..].Trim();
        }
        catch (IOException)
        {
            return "unknown";
        }
    }

    [GeneratedRegex(@"rtt min/avg/max/mdev = [\d.]+/([\d.]+)/")]
    private static partial Regex RttLine();

    [GeneratedRegex(@"avg-latency=([\d.]+)")]
    private static partial Regex SockperfAvg();
}
