using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Dataplane.Encap;
using Dataplane.Leases;
using Dataplane.Node;

namespace Dataplane.Lab.Bench;

/// <summary>
/// <c>dataplane footprint</c>: what the node costs to start and to keep, measured on the binary
/// that runs (the NativeAOT one when <c>DATAPLANE_BINARY</c> names it, as in CI):
///
///  1. Start to first forwarded packet, with file leases: pod 1 pings pod 2 every 2 ms (iputils
///     <c>ping -D</c> stamps each reply) while node 1 is started; the figure is the first reply's
///     stamp minus the moment the process was started. Repeated; the median is reported, and how
///     many starts forwarded nothing within 10 s.
///  2. Memory with many peers in etcd: a real etcd in a namespace holds N leases (written with
///     etcdctl txn), node 1 runs with <c>--etcd-endpoints</c>; VmRSS after the table is built, then
///     after each round of 1,000 lease changes (new PublicIPs), once every change was applied.
///
/// Peers' public IPs come from the documentation ranges (198.51.100.0/24, 203.0.113.0/24), so many
/// leases share one; nothing is ever sent to them (no pod traffic in part 2).
/// </summary>
internal static partial class FootprintCommand
{
    public static int Run(int starts, int peers, int rounds, TextWriter o)
    {
        if (!HostInfo.HasNetAdmin())
        {
            Console.Error.WriteLine("dataplane footprint: needs root (CAP_NET_ADMIN) to create network namespaces");
            return 1;
        }
        string[] missing = [.. new[] { "ping", "etcd", "etcdctl", "ip" }.Where(t => ProcessRunner.Which(t) is null)];
        if (missing.Length > 0)
        {
            Console.Error.WriteLine($"dataplane footprint: needs {string.Join(", ", missing)}: apt-get install iputils-ping etcd-server etcd-client iproute2");
            return 1;
        }
        IReadOnlyList<string> self = SelfCommand.Prefix();
        o.WriteLine(self.Count == 1 ? $"Binary: {self[0]} ({Size(self[0])}, native)" : $"Program: {string.Join(' ', self)} (JIT)");
        StartTime(self, starts, o);
        Memory(self, peers, rounds, o);
        return 0;
    }

    private static string Size(string path) =>
        File.Exists(path) ? string.Create(CultureInfo.InvariantCulture, $"{new FileInfo(path).Length / 1e6:F1} MB") : "size unknown";

    private static void StartTime(IReadOnlyList<string> self, int starts, TextWriter o)
    {
        using var topo = new Topology();
        topo.AddNode(1);
        topo.AddNode(2);
        string leases = Path.Combine(topo.WorkDir, "cluster.json");
        new ClusterFileBuilder().Node(1).Node(2).WriteTo(leases);
        string[] Run(int i) => [.. self, "run", "--leases", leases, "--public-ip", Topology.UnderlayIp(i), "--backend", "vxlan",
            "--subnet-file", Path.Combine(topo.WorkDir, $"node{i}-subnet.env"), "--control-socket", Path.Combine(topo.WorkDir, $"node{i}.sock")];
        NodeProcess two = topo.Start(topo.Node(2), Run(2), "node2");
        if (two.WaitForLine("Ready:", TimeSpan.FromSeconds(30)) is null)
        {
            throw new InvalidOperationException("node 2 did not start:\n" + two.Output);
        }
        var firstPacket = new List<double>();
        var ready = new List<double>();
        int failed = 0;
        for (int n = 0; n < starts; n++)
        {
            NodeProcess ping = topo.Start(topo.Pod(1), [ProcessRunner.Which("ping")!, "-D", "-n", "-i", "0.002", "-c", "2500", "-W", "1", Topology.PodIp(2)], "ping");
            Thread.Sleep(200);
            double t0 = Now();
            NodeProcess one = topo.Start(topo.Node(1), Run(1), "node1");
            if (one.WaitForLine("Ready:", TimeSpan.FromSeconds(30)) is null)
            {
                throw new InvalidOperationException("node 1 did not start:\n" + one.Output);
            }
            ready.Add(Now() - t0);
            string? reply = ping.WaitForLine("bytes from", TimeSpan.FromSeconds(10));
            Match m = reply is null ? Match.Empty : Stamp().Match(reply);
            if (m.Success)
            {
                firstPacket.Add(double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) - t0);
            }
            else
            {
                failed++; // counted and said, never left out of the figures silently
            }
            ping.Kill();
            one.Stop(TimeSpan.FromSeconds(20));
        }
        o.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"Start to first forwarded packet (file leases, vxlan, {starts} starts): median {Median(firstPacket) * 1000:F0} ms (min {firstPacket.DefaultIfEmpty(double.NaN).Min() * 1000:F0}, max {firstPacket.DefaultIfEmpty(double.NaN).Max() * 1000:F0}); \"Ready\" logged after a median {Median(ready) * 1000:F0} ms; {failed} of {starts} starts forwarded nothing within 10 s"));
    }

    private static void Memory(IReadOnlyList<string> self, int peers, int rounds, TextWriter o)
    {
        using var topo = new Topology();
        const int EtcdHost = 100;
        const string Endpoint = "http://192.0.2.100:2379";
        topo.AddNode(1, withPod: false);
        topo.AddNode(EtcdHost, withPod: false);
        NodeProcess etcd = topo.Start(topo.Node(EtcdHost), [ProcessRunner.Which("etcd")!, "--data-dir", Path.Combine(topo.WorkDir, "etcd"),
            "--listen-client-urls", Endpoint, "--advertise-client-urls", Endpoint, "--listen-peer-urls", "http://127.0.0.1:2380",
            "--max-txn-ops", "1000", "--quota-backend-bytes", (4L << 30).ToString(CultureInfo.InvariantCulture)], "etcd");
        if (etcd.WaitForLine("ready to serve client requests", TimeSpan.FromSeconds(30)) is null)
        {
            throw new InvalidOperationException("etcd did not start:\n" + etcd.Output);
        }
        // /16 cut into /29s: 8,192 subnets; ours is the first after the network's own.
        Put(topo, EtcdHost, Endpoint, [("/coreos.com/network/config", """{"Network":"10.244.0.0/16","SubnetLen":29,"Backend":{"Type":"vxlan","VNI":1}}""")]);
        Put(topo, EtcdHost, Endpoint, [.. Enumerable.Range(2, peers).Select(i => Lease(i, 0))]);
        NodeProcess node = topo.Start(topo.Node(1), [.. self, "run", "--etcd-endpoints", Endpoint, "--public-ip", Topology.UnderlayIp(1),
            "--subnet-file", Path.Combine(topo.WorkDir, "subnet.env"), "--control-socket", Path.Combine(topo.WorkDir, "node1.sock"),
            "--vtep-mac-file", Path.Combine(topo.WorkDir, "node1.vtepmac")], "node1");
        if (node.WaitForLine("Ready:", TimeSpan.FromSeconds(60)) is null)
        {
            throw new InvalidOperationException("node 1 did not start:\n" + node.Output);
        }
        Thread.Sleep(2000);
        int added = node.Lines.Count(l => l.Contains("Subnet added:", StringComparison.Ordinal));
        o.WriteLine($"Memory with {peers} peers in etcd (vxlan; {added} peers in the table):");
        o.WriteLine($"  after start:  {Rss(node.Pid)}");
        for (int round = 1; round <= rounds; round++)
        {
            int before = node.Lines.Count(l => l.Contains("Subnet changed:", StringComparison.Ordinal));
            int start = ((round - 1) * 1000 % peers) + 2;
            Put(topo, EtcdHost, Endpoint, [.. Enumerable.Range(start, Math.Min(1000, peers)).Select(i => Lease(((i - 2) % peers) + 2, round))]);
            DateTime until = DateTime.UtcNow + TimeSpan.FromSeconds(60);
            while (node.Lines.Count(l => l.Contains("Subnet changed:", StringComparison.Ordinal)) < before + Math.Min(1000, peers) && DateTime.UtcNow < until)
            {
                Thread.Sleep(200);
            }
            Thread.Sleep(1000);
            int applied = node.Lines.Count(l => l.Contains("Subnet changed:", StringComparison.Ordinal)) - before;
            o.WriteLine($"  after round {round} of 1,000 lease changes ({applied} applied): {Rss(node.Pid)}");
        }
        node.Stop(TimeSpan.FromSeconds(20));
    }

    /// <summary>Lease i (subnet 10.244.0.0 + 8i /29), its public IP moved by <paramref name="generation"/>.</summary>
    private static (string Key, string Value) Lease(int i, int generation)
    {
        var subnet = new Ipv4Prefix((10u << 24) | (244u << 16) | (uint)(i * 8), 29);
        int host = ((i + generation) % 508) + 1;
        uint ip = host <= 254 ? (198u << 24) | (51u << 16) | (100u << 8) | (uint)host : (203u << 24) | (113u << 8) | (uint)(host - 254);
        var lease = new LeaseRecord(subnet, ip, "vxlan", new MacAddress(0x0E00_0000_0001UL | ((ulong)(i & 0xFFFF) << 16)));
        return ("/coreos.com/network/subnets/" + lease.Key, lease.ToJson(1)); // as flanneld writes them
    }

    /// <summary>Puts in transactions of up to 1,000 (etcd's --max-txn-ops here), through etcdctl.</summary>
    private static void Put(Topology topo, int host, string endpoint, IReadOnlyList<(string Key, string Value)> items)
    {
        foreach ((string Key, string Value)[] chunk in items.Chunk(1000))
        {
            var txn = new StringBuilder("\n");
            foreach ((string k, string v) in chunk)
            {
                txn.Append("put ").Append(k).Append(' ').Append(v).Append('\n');
            }
            txn.Append("\n\n");
            string file = Path.Combine(topo.WorkDir, "txn");
            File.WriteAllText(file, txn.ToString());
            ProcessRunner.Result r = topo.Exec(topo.Node(host), ["/bin/sh", "-c", $"{ProcessRunner.Which("etcdctl")} --endpoints {endpoint} txn < {file}"], 120_000);
            if (r.ExitCode != 0 || !r.Stdout.StartsWith("SUCCESS", StringComparison.Ordinal))
            {
                throw new InvalidOperationException($"etcdctl txn failed: {r.Stderr}{r.Stdout[..Math.Min(200, r.Stdout.Length)]}");
            }
        }
    }

    private static string Rss(int pid)
    {
        string status = File.ReadAllText($"/proc/{pid}/status");
        string Field(string name) => status.Split('\n').FirstOrDefault(l => l.StartsWith(name, StringComparison.Ordinal))?[name.Length..].Trim() ?? "?";
        return $"VmRSS {Field("VmRSS:")}, VmHWM {Field("VmHWM:")}";
    }

    private static double Now() => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0;

    private static double Median(List<double> xs)
    {
        if (xs.Count == 0)
        {
            return double.NaN;
        }
        double[] s = [.. xs.Order()];
        return s.Length % 2 == 1 ? s[s.Length / 2] : (s[(s.Length / 2) - 1] + s[s.Length / 2]) / 2;
    }

    [GeneratedRegex(@"^\[(\d+\.\d+)\]")]
    private static partial Regex Stamp();
}
