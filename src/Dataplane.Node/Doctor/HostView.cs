using System.Text.Json;
using Dataplane.Encap;
using Dataplane.Node;

namespace Dataplane.Doctor;

/// <summary>
/// The host as the doctor reads it, the way an operator would: <c>/proc/sys</c>, <c>ip -j</c>
/// (iproute2's JSON), <c>iptables -S</c>, <c>/proc/net/udp</c> and <c>/proc/*/fd</c>. Read-only.
/// </summary>
internal static class HostView
{
    public static string? Sysctl(string path)
    {
        string file = Path.Combine("/proc/sys", path.Replace('.', '/'));
        return File.Exists(file) ? File.ReadAllText(file).Trim() : null;
    }

    /// <summary>A per-device IPv4 setting (<c>/proc/sys/net/ipv4/conf/DEVICE/NAME</c>; device names may hold dots).</summary>
    public static string? DeviceSysctl(string device, string name)
    {
        string file = Path.Combine("/proc/sys/net/ipv4/conf", device, name);
        return File.Exists(file) ? File.ReadAllText(file).Trim() : null;
    }

    /// <summary><c>ip -j ARGS</c> as JSON elements (an empty list when ip fails or prints nothing).</summary>
    public static List<JsonElement> Ip(params string[] args)
    {
        string ip = ProcessRunner.Which("ip") ?? "ip";
        ProcessRunner.Result r = ProcessRunner.Run(ip, ["-j", .. args], 10_000);
        if (r.ExitCode != 0 || string.IsNullOrWhiteSpace(r.Stdout))
        {
            return [];
        }
        using JsonDocument doc = JsonDocument.Parse(r.Stdout);
        return doc.RootElement.ValueKind == JsonValueKind.Array ? [.. doc.RootElement.EnumerateArray().Select(e => e.Clone())] : [];
    }

    public static string Str(JsonElement e, string name) =>
        e.TryGetProperty(name, out JsonElement v) && v.ValueKind == JsonValueKind.String ? v.GetString() ?? "" : "";

    public static int Int(JsonElement e, string name) =>
        e.TryGetProperty(name, out JsonElement v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i) ? i : 0;

    /// <summary>A route's destination as a prefix ("default" and host routes included).</summary>
    public static Ipv4Prefix? Destination(JsonElement route)
    {
        string dst = Str(route, "dst");
        if (dst == "default")
        {
            return new Ipv4Prefix(0, 0);
        }
        if (!dst.Contains('/', StringComparison.Ordinal))
        {
            dst += "/32";
        }
        return Ipv4Prefix.TryParse(dst, out Ipv4Prefix? p) ? p : null;
    }

    /// <summary><c>iptables -S CHAIN</c> lines, or null when iptables is not there or refuses.</summary>
    public static string[]? IptablesRules(string chain)
    {
        string? iptables = ProcessRunner.Which("iptables");
        if (iptables is null)
        {
            return null;
        }
        ProcessRunner.Result r = ProcessRunner.Run(iptables, ["-w", "5", "-S", chain], 10_000);
        return r.ExitCode == 0 ? r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries) : null;
    }

    /// <summary>The processes holding a UDP socket bound to <paramref name="port"/> (pid and name), from /proc.</summary>
    public static List<(int Pid, string Name)> UdpPortHolders(int port)
    {
        var inodes = new HashSet<string>();
        foreach (string table in new[] { "/proc/net/udp", "/proc/net/udp6" })
        {
            if (!File.Exists(table))
            {
                continue;
            }
            foreach (string line in File.ReadLines(table).Skip(1))
            {
                string[] f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (f.Length > 9 && f[1].Split(':') is [_, string hexPort]
                    && int.TryParse(hexPort, System.Globalization.NumberStyles.HexNumber, null, out int p) && p == port)
                {
                    inodes.Add($"socket:[{f[9]}]");
                }
            }
        }
        var holders = new List<(int, string)>();
        if (inodes.Count == 0)
        {
            return holders;
        }
        foreach (string proc in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(proc), out int pid))
            {
                continue;
            }
            try
            {
                foreach (string fd in Directory.EnumerateFileSystemEntries(Path.Combine(proc, "fd")))
                {
                    if (new FileInfo(fd).LinkTarget is string target && inodes.Contains(target))
                    {
                        holders.Add((pid, File.ReadAllText(Path.Combine(proc, "comm")).Trim()));
                        break;
                    }
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // gone, or not ours to read
            }
        }
        return holders;
    }
}
