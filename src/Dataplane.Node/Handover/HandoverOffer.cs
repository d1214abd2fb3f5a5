using System.Globalization;

namespace Dataplane.Node;

/// <summary>
/// What a running node tells the process that asks to take over from it: the protocol version it
/// chose, who it is, and everything its descriptors were made with, so the successor is the same
/// node on the same kernel objects. One line of <c>key=value</c> words after the verb <c>OFFER</c>;
/// a reader ignores keys it does not know (a later version may add some) and refuses an offer
/// that lacks one it needs.
/// </summary>
internal sealed record HandoverOffer
{
    public required int Version { get; init; }
    public required int Pid { get; init; }
    public required string Device { get; init; }
    /// <summary>"tun" or "packet".</summary>
    public required string Source { get; init; }
    public required string Backend { get; init; }
    public required int Port { get; init; }
    public required int Queues { get; init; }
    public required bool Offload { get; init; }
    /// <summary>The TUN_F_* flags the kernel accepted on the TUN's queues (0 for the packet source or without offloads).</summary>
    public required uint TunFlags { get; init; }
    /// <summary>Our IPv4 and IPv6 subnets ("" when there is none), public addresses and VTEP MAC, as our lease has them.</summary>
    public required string Subnet { get; init; }
    public required string Subnet6 { get; init; }
    public required string PublicIp { get; init; }
    public required string PublicIpv6 { get; init; }
    public required string VtepMac { get; init; }
    /// <summary>Whether it installed --ip-masq's rules (not compared: a successor without the flag removes them).</summary>
    public bool IpMasq { get; init; }

    public string Format() => string.Create(CultureInfo.InvariantCulture,
        $"OFFER version={Version} pid={Pid} device={Device} source={Source} backend={Backend} port={Port} queues={Queues} "
        + $"offload={(Offload ? "on" : "off")} tun_flags=0x{TunFlags:x} subnet={Subnet} subnet6={Subnet6} public_ip={PublicIp} "
        + $"public_ipv6={PublicIpv6} vtep_mac={VtepMac} ip_masq={(IpMasq ? "on" : "off")}");

    /// <summary>Reads an <c>OFFER</c> line; <see cref="FormatException"/> names what is wrong.</summary>
    public static HandoverOffer Parse(string line)
    {
        string[] words = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (words.Length == 0 || words[0] != "OFFER")
        {
            throw new FormatException($"not an offer: '{Shorten(line)}'");
        }
        var pairs = new Dictionary<string, string>();
        foreach (string word in words.Skip(1))
        {
            int eq = word.IndexOf('=', StringComparison.Ordinal);
            if (eq > 0)
            {
                pairs[word[..eq]] = word[(eq + 1)..];
            }
        }
        string Text(string key) => pairs.TryGetValue(key, out string? v) ? v : throw new FormatException($"the offer has no {key}");
        int Number(string key) => int.TryParse(Text(key), NumberStyles.None, CultureInfo.InvariantCulture, out int v) ? v
            : throw new FormatException($"the offer's {key} is not a number: '{Text(key)}'");
        uint Hex(string key) => Text(key) is var v && v.StartsWith("0x", StringComparison.Ordinal)
            && uint.TryParse(v[2..], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out uint f) ? f
            : throw new FormatException($"the offer's {key} is not 0x-hex: '{Text(key)}'");
        return new HandoverOffer
        {
            Version = Number("version"),
            Pid = Number("pid"),
            Device = Text("device"),
            Source = Text("source"),
            Backend = Text("backend"),
            Port = Number("port"),
            Queues = Number("queues"),
            Offload = Text("offload") == "on",
            TunFlags = Hex("tun_flags"),
            Subnet = Text("subnet"),
            Subnet6 = Text("subnet6"),
            PublicIp = Text("public_ip"),
            PublicIpv6 = Text("public_ipv6"),
            VtepMac = Text("vtep_mac"),
            IpMasq = pairs.GetValueOrDefault("ip_masq") == "on",
        };
    }

    /// <summary>
    /// Where <paramref name="there"/> (the running node's offer) differs from this one (the
    /// successor's own): each as "--queues 2 there, 1 here". A hand-over keeps the device and the
    /// sockets as they were made, so any difference refuses it.
    /// </summary>
    public IReadOnlyList<string> DifferencesFrom(HandoverOffer there)
    {
        var found = new List<string>();
        void Compare(string what, string thereValue, string hereValue) => AddDifference(found, what, thereValue, hereValue);
        Compare("--device", there.Device, Device);
        Compare("--source", there.Source, Source);
        Compare("--backend", there.Backend, Backend);
        Compare("--port", there.Port.ToString(CultureInfo.InvariantCulture), Port.ToString(CultureInfo.InvariantCulture));
        Compare("--queues", there.Queues.ToString(CultureInfo.InvariantCulture), Queues.ToString(CultureInfo.InvariantCulture));
        Compare("--offload", there.Offload ? "on" : "off", Offload ? "on" : "off");
        Compare("subnet", there.Subnet, Subnet);
        Compare("IPv6 subnet", there.Subnet6, Subnet6);
        Compare("public IP", there.PublicIp, PublicIp);
        Compare("public IPv6", there.PublicIpv6, PublicIpv6);
        Compare("VTEP MAC", there.VtepMac, VtepMac);
        return found;
    }

    /// <summary>Adds "WHAT THERE there, HERE here" to <paramref name="found"/> when the two differ ("none" for an empty value).</summary>
    public static void AddDifference(List<string> found, string what, string there, string here)
    {
        if (there != here)
        {
            found.Add($"{what} {Shown(there)} there, {Shown(here)} here");
        }
    }

    private static string Shown(string value) => value.Length == 0 ? "none" : value;

    internal static string Shorten(string text) => text.Length <= 60 ? text.Trim() : text[..60].Trim() + "...";
}
