using System.Globalization;
using System.Text.RegularExpressions;
using Dataplane.Encap;

namespace Dataplane.Doctor;

/// <summary>
/// What a running node says about itself through its control socket (the labels of
/// <c>dataplane_node_info</c> that <c>NodeRunner</c> publishes, and its peers from the per-peer
/// counters): what the doctor checks the host against.
/// </summary>
internal sealed record NodeFacts(Ipv4Prefix Network, Ipv4Prefix Subnet, string PublicIp, int Port, string Device, int Mtu,
    string Backend, string LeaseSource, string SubnetFile, bool IpMasq, int Pid, IReadOnlyList<(Ipv4Prefix Subnet, string PublicIp)> Peers)
{
    /// <summary>A dual-stack node's IPv6 network and subnet (labels <c>ipv6_network</c>, <c>ipv6_subnet</c>), else null.</summary>
    public (Ipv6Prefix Network, Ipv6Prefix Subnet)? Ipv6 { get; init; }

    /// <summary>The leases the node refuses now (<c>dataplane_lease_rejected_info</c>), by name, with the reason.</summary>
    public IReadOnlyList<(string Lease, string Reason)> RefusedLeases { get; init; } = [];

    /// <summary>An IPv6-only network's node: no IPv4 network or subnet (both 0.0.0.0/0 here).</summary>
    public bool Ipv6Only => Network.Length == 0 && Ipv6 is not null;

    /// <summary>Reads the facts from a node's metrics text; null when it has none (an older node).</summary>
    public static NodeFacts? Parse(string metrics)
    {
        string? info = metrics.Split('\n').FirstOrDefault(l => l.StartsWith("dataplane_node_info{", StringComparison.Ordinal));
        if (info is null)
        {
            return null;
        }
        string L(string key) => Label(info, key);
        (Ipv6Prefix, Ipv6Prefix)? ipv6 = Ipv6Prefix.TryParse(L("ipv6_network"), out Ipv6Prefix? n6) && Ipv6Prefix.TryParse(L("ipv6_subnet"), out Ipv6Prefix? s6)
            ? (n6.Value, s6.Value) : null;
        Ipv4Prefix? network = null, subnet = null;
        if (ipv6 is not null && L("network").Length == 0)
        {
            network = subnet = default(Ipv4Prefix); // IPv6-only
        }
        else if (!Ipv4Prefix.TryParse(L("network"), out network) || !Ipv4Prefix.TryParse(L("subnet"), out subnet))
        {
            return null;
        }
        var peers = new List<(Ipv4Prefix, string)>();
        var refused = new List<(string, string)>();
        foreach (string line in metrics.Split('\n'))
        {
            if (line.StartsWith("dataplane_lease_rejected_info{", StringComparison.Ordinal))
            {
                refused.Add((Label(line, "lease"), Label(line, "reason")));
            }
            if (line.StartsWith("dataplane_peer_packets_total{", StringComparison.Ordinal) && line.Contains("direction=\"out\"", StringComparison.Ordinal)
                && Ipv4Prefix.TryParse(Label(line, "subnet"), out Ipv4Prefix? p))
            {
                peers.Add((p.Value, Label(line, "peer")));
            }
        }
        return new NodeFacts(network.Value, subnet.Value, L("public_ip"), int.Parse(L("port"), CultureInfo.InvariantCulture), L("device"),
            int.Parse(L("mtu"), CultureInfo.InvariantCulture), L("backend"), L("lease_source"), L("subnet_file"), L("ip_masq") == "true",
            int.Parse(L("pid"), CultureInfo.InvariantCulture), peers)
        {
            Ipv6 = ipv6,
            RefusedLeases = refused,
        };
    }

    private static string Label(string line, string name)
    {
        Match m = Regex.Match(line, $"[{{,]{Regex.Escape(name)}=\"((?:[^\"\\\\]|\\\\.)*)\"");
        return m.Success ? m.Groups[1].Value.Replace("\\\"", "\"", StringComparison.Ordinal).Replace("\\\\", "\\", StringComparison.Ordinal) : "";
    }
}
