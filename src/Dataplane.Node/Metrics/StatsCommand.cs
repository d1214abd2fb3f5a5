using System.Globalization;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using Dataplane.Engine;

namespace Dataplane.Metrics;

/// <summary>
/// <c>dataplane stats</c>: reads a running node's counters from its control socket and shows them
/// as a table: totals and rates per direction, per peer, drops by reason, ICMP, offloads. Live
/// (redrawn every interval) on a terminal; <c>--once</c> prints one snapshot.
/// </summary>
internal static partial class StatsCommand
{
    public static string DefaultSocket(string device) => $"/run/dataplane/{device}.sock";

    public static int Run(string socketPath, bool once, double interval, TextWriter o)
    {
        Dictionary<string, double>? previous = null;
        DateTime previousAt = default;
        bool live = !once && !Console.IsOutputRedirected;
        for (int round = 0; ; round++)
        {
            string text;
            try
            {
                text = Read(socketPath);
            }
            catch (SocketException e)
            {
                Console.Error.WriteLine($"dataplane stats: cannot read {socketPath}: {e.SocketErrorCode} (is the node running, and are you root?)");
                return 1;
            }
            catch (IOException e)
            {
                Console.Error.WriteLine($"dataplane stats: cannot read {socketPath}: {e.Message}");
                return 1;
            }
            if (text.StartsWith("ERR ", StringComparison.Ordinal))
            {
                Console.Error.WriteLine($"dataplane stats: {text[4..].Trim()}");
                return 1;
            }
            Dictionary<string, double> now = Parse(text);
            DateTime at = DateTime.UtcNow;
            double seconds = previous is null ? 0 : (at - previousAt).TotalSeconds;
            if (live)
            {
                o.Write("\u001b[H\u001b[2J");
            }
            Render(now, previous, seconds, socketPath, o);
            if (once)
            {
                return 0;
            }
            previous = now;
            previousAt = at;
            Thread.Sleep(TimeSpan.FromSeconds(interval));
        }
    }

    public static string Read(string path)
    {
        using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        s.Connect(new UnixDomainSocketEndPoint(path));
        s.Send("STATS\n"u8);
        using var stream = new NetworkStream(s);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        return reader.ReadToEnd();
    }

    /// <summary>Prometheus text into "name{labels}" → value.</summary>
    public static Dictionary<string, double> Parse(string text)
    {
        var values = new Dictionary<string, double>();
        foreach (string line in text.Split('\n'))
        {
            if (line.Length == 0 || line[0] == '#')
            {
                continue;
            }
            int space = line.LastIndexOf(' ');
            if (space > 0 && double.TryParse(line.AsSpan(space + 1), NumberStyles.Float, CultureInfo.InvariantCulture, out double v))
            {
                values[line[..space]] = v;
            }
        }
        return values;
    }

    private static void Render(Dictionary<string, double> now, Dictionary<string, double>? before, double seconds, string source, TextWriter o)
    {
        string Rate(string key, bool bits = false)
        {
            if (before is null || seconds <= 0 || !before.TryGetValue(key, out double b) || !now.TryGetValue(key, out double n))
            {
                return "";
            }
            double r = (n - b) / seconds;
            return bits ? $"{r * 8 / 1e6:F1} Mbit/s" : $"{r:F0}/s";
        }
        double Get(string key) => now.GetValueOrDefault(key);
        string info = now.Keys.FirstOrDefault(k => k.StartsWith("dataplane_build_info", StringComparison.Ordinal)) ?? "";
        string offload = now.Keys.FirstOrDefault(k => k.StartsWith("dataplane_offload_info", StringComparison.Ordinal)) ?? "";
        o.WriteLine($"dataplane stats  {Label(info, "device")} ({Label(info, "backend")}), {Get("dataplane_peers"):F0} peers  [{source}]");
        o.WriteLine();
        o.WriteLine($"  {"",-30} {"packets",14} {"rate",10} {"bytes",16} {"rate",14}");
        foreach (string dir in new[] { "out", "in" })
        {
            string p = $"dataplane_packets_total{{direction=\"{dir}\"}}", b = $"dataplane_bytes_total{{direction=\"{dir}\"}}";
            o.WriteLine($"  {dir,-30} {Get(p),14:F0} {Rate(p),10} {Get(b),16:F0} {Rate(b, true),14}");
        }
        o.WriteLine();
        foreach (string key in now.Keys.Where(k => k.StartsWith("dataplane_peer_packets_total", StringComparison.Ordinal) && k.Contains("direction=\"out\"", StringComparison.Ordinal)).Order())
        {
            string inKey = key.Replace("direction=\"out\"", "direction=\"in\"", StringComparison.Ordinal);
            string name = $"peer {Label(key, "peer")} {Label(key, "subnet")}";
            o.WriteLine($"  {name,-30} out {Get(key),10:F0} {Rate(key),9}   in {Get(inKey),10:F0} {Rate(inKey),9}");
        }
        var drops = now.Where(kv => kv.Key.StartsWith("dataplane_drops_total", StringComparison.Ordinal) && kv.Value > 0)
            .Select(kv => $"{Label(kv.Key, "reason")} {kv.Value:F0}").ToList();
        o.WriteLine();
        o.WriteLine($"  drops: {(drops.Count == 0 ? "none" : string.Join(", ", drops))}");
        o.WriteLine("  " + string.Join(", ", LoopCounters.Rows.Where(r => r.Loops != CounterLoops.Both).Select(r => $"{r.Name} {Get(r.SampleKey):F0}")));
        var sendErrors = now.Where(kv => kv.Key.StartsWith("dataplane_socket_send_errors_total", StringComparison.Ordinal) && kv.Value > 0)
            .Select(kv => $"{Label(kv.Key, "errno")} {kv.Value:F0}").ToList();
        o.WriteLine($"  socket send errors: {(sendErrors.Count == 0 ? "none" : string.Join(", ", sendErrors))}");
        var refused = now.Keys.Where(k => k.StartsWith("dataplane_lease_rejected_info", StringComparison.Ordinal))
            .Select(k => $"{Label(k, "lease")} ({Label(k, "reason")})").ToList();
        if (refused.Count > 0)
        {
            o.WriteLine($"  leases refused: {refused.Count}: {string.Join("; ", refused)}");
        }
        if (offload.Length > 0)
        {
            o.WriteLine($"  offloads: device {Label(offload, "device")}; socket {Label(offload, "socket")}; batch {Label(offload, "batch")}; queues {Label(offload, "queues")}");
        }
        var queues = now.Keys.Where(k => k.StartsWith("dataplane_queue_packets_total", StringComparison.Ordinal) && k.Contains("direction=\"out\"", StringComparison.Ordinal))
            .Select(k => $"{Label(k, "queue")}: out {Get(k):F0} in {Get(k.Replace("direction=\"out\"", "direction=\"in\"", StringComparison.Ordinal)):F0}").ToList();
        if (queues.Count > 1)
        {
            o.WriteLine($"  per queue: {string.Join("; ", queues)}");
        }
    }

    private static string Label(string key, string name)
    {
        Match m = Regex.Match(key, $"{Regex.Escape(name)}=\"([^\"]*)\"");
        return m.Success ? m.Groups[1].Value : "";
    }
}
