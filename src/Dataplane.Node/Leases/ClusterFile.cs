using System.Text.Json;
using Dataplane.Encap;
using Dataplane.Leases.Schema;

namespace Dataplane.Leases;

/// <summary>
/// The static cluster file: one JSON document for the whole cluster, in flannel's own schema,
/// <c>{"config": &lt;network config&gt;, "subnets": {"10.244.1.0-24": &lt;lease&gt;, ...}}</c>
/// (<c>config</c> is what etcd holds at <c>&lt;prefix&gt;/config</c>, each entry of <c>subnets</c>
/// what it holds at <c>&lt;prefix&gt;/subnets/KEY</c>). <see cref="Load"/> validates everything and
/// throws <see cref="ConfigException"/> with one line that names the file and the place: JSON
/// errors by line and column, schema errors by key.
/// </summary>
internal static class ClusterFile
{
    public static ClusterSnapshot Load(string path)
    {
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new ConfigException($"lease file {path}: no such file");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigException($"lease file {path}: cannot read: {e.Message}");
        }
        return Parse(bytes, path);
    }

    public static ClusterSnapshot Parse(ReadOnlySpan<byte> json, string where)
    {
        string file = $"lease file {where}";
        using JsonDocument doc = FlannelDocument.Parse(json, file);
        JsonElement root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw new ConfigException($"{file}: the top level must be an object with \"config\" and \"subnets\"");
        }
        if (!root.TryGetProperty("config", out JsonElement config))
        {
            throw new ConfigException($"{file}: missing \"config\"");
        }
        NetworkConfig network = NetworkConfig.Parse(config, $"{file}: config");
        if (!root.TryGetProperty("subnets", out JsonElement subnets) || subnets.ValueKind != JsonValueKind.Object)
        {
            throw new ConfigException($"{file}: missing \"subnets\" object");
        }
        // Property by property, not as a dictionary: a key given twice is an error, not a silent overwrite.
        var leases = new List<LeaseRecord>();
        foreach (JsonProperty p in subnets.EnumerateObject())
        {
            leases.Add(LeaseRecord.Parse(p.Name, p.Value, $"{file}: subnets[\"{p.Name}\"]"));
        }
        CheckLeases(network, leases, file);
        return new ClusterSnapshot(network, leases);
    }

    /// <summary>
    /// Every lease a /SubnetLen inside the network; no subnet and no public IP twice. On a dual-stack
    /// or IPv6-only network the same for each IPv6 half (an IPv6-only network's leases must all have one).
    /// </summary>
    public static void CheckLeases(NetworkConfig network, IReadOnlyList<LeaseRecord> leases, string where)
    {
        if (network.Ipv6Network is Ipv6Prefix network6)
        {
            CheckIpv6Leases(network, network6, leases, where);
        }
        if (!network.EnableIpv4)
        {
            return;
        }
        for (int i = 0; i < leases.Count; i++)
        {
            LeaseRecord a = leases[i];
            if (!network.Network.Contains(a.Subnet))
            {
                throw new ConfigException($"{where}: subnet {a.Subnet} is outside the network {network.Network}");
            }
            if (a.Subnet.Length != network.SubnetLength)
            {
                throw new ConfigException($"{where}: subnet {a.Subnet} is not a /{network.SubnetLength} (SubnetLen)");
            }
            for (int j = 0; j < i; j++)
            {
                LeaseRecord b = leases[j];
                if (a.Subnet.Overlaps(b.Subnet))
                {
                    throw new ConfigException($"{where}: subnets {b.Subnet} and {a.Subnet} overlap");
                }
                if (a.PublicIp == b.PublicIp)
                {
                    throw new ConfigException($"{where}: PublicIP {a.PublicIpText} holds two leases ({b.Subnet} and {a.Subnet})");
                }
            }
        }
    }

    private static void CheckIpv6Leases(NetworkConfig network, Ipv6Prefix network6, IReadOnlyList<LeaseRecord> leases, string where)
    {
        for (int i = 0; i < leases.Count; i++)
        {
            LeaseRecord a = leases[i];
            if (a.Ipv6Subnet is not Ipv6Prefix a6)
            {
                if (!network.EnableIpv4)
                {
                    throw new ConfigException($"{where}: lease {a.Key} has no IPv6 subnet, and the network is IPv6-only");
                }
                continue;
            }
            if (!network6.Contains(a6) || a6.Length != network.Ipv6SubnetLength)
            {
                throw new ConfigException($"{where}: IPv6 subnet {a6} is not a /{network.Ipv6SubnetLength} inside the IPv6Network {network6}");
            }
            for (int j = 0; j < i; j++)
            {
                LeaseRecord b = leases[j];
                if (b.Ipv6Subnet is Ipv6Prefix b6 && b6 == a6)
                {
                    throw new ConfigException($"{where}: IPv6 subnet {a6} is leased twice ({b.Key} and {a.Key})");
                }
                if (a.PublicIpv6 is UInt128 p6 && b.PublicIpv6 == p6)
                {
                    throw new ConfigException($"{where}: PublicIPv6 {Ipv6Prefix.Format(p6)} holds two leases ({b.Key} and {a.Key})");
                }
            }
        }
    }
}
