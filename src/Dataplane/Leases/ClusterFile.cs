using System.Text.Json;
using Dataplane.Encap;
using Dataplane.Engine;

namespace Dataplane.Leases;

/// <summary>
/// The static cluster file: one JSON document for the whole cluster, in flannel's own schema,
/// <c>{"config": &lt;network config&gt;, "subnets": {"10.244.1.0-24": &lt;lease&gt;, ...}}</c>.
/// <see cref="Load"/> validates everything and throws <see cref="ConfigException"/> with one line
/// that names the file and the place: JSON errors by line and column, schema errors by key.
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
        catch (FileNotFoundException)
        {
            throw new ConfigException($"lease file {path}: no such file");
        }
        catch (DirectoryNotFoundException)
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
        int bad = InvalidUtf8At(json);
        if (bad >= 0)
        {
            throw new ConfigException($"lease file {where}: not valid UTF-8 at byte {bad}");
        }
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json.ToArray(), new JsonDocumentOptions { AllowTrailingCommas = false, CommentHandling = JsonCommentHandling.Skip });
        }
        catch (JsonException e)
        {
            throw new ConfigException($"lease file {where}: invalid JSON at line {e.LineNumber + 1}, column {e.BytePositionInLine + 1}");
        }
        using (doc)
        {
            JsonElement root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new ConfigException($"lease file {where}: the top level must be an object with \"config\" and \"subnets\"");
            }
            if (!root.TryGetProperty("config", out JsonElement config))
            {
                throw new ConfigException($"lease file {where}: missing \"config\"");
            }
            NetworkConfig network = ParseConfig(config, $"lease file {where}: config");
            if (!root.TryGetProperty("subnets", out JsonElement subnets) || subnets.ValueKind != JsonValueKind.Object)
            {
                throw new ConfigException($"lease file {where}: missing \"subnets\" object");
            }
            var leases = new List<LeaseRecord>();
            foreach (JsonProperty p in subnets.EnumerateObject())
            {
                leases.Add(ParseLease(p.Name, p.Value, $"lease file {where}: subnets[\"{p.Name}\"]"));
            }
            CheckLeases(network, leases, $"lease file {where}");
            return new ClusterSnapshot(network, leases);
        }
    }

    /// <summary>Parses flannel's network config JSON object (also the value of etcd's <c>/config</c>).</summary>
    public static NetworkConfig ParseConfig(JsonElement config, string where)
    {
        if (config.ValueKind != JsonValueKind.Object)
        {
            throw new ConfigException($"{where}: must be an object");
        }
        string? networkText = GetString(config, "Network", where);
        if (networkText is null)
        {
            throw new ConfigException($"{where}: missing \"Network\"");
        }
        if (!Ipv4Prefix.TryParse(networkText, out Ipv4Prefix? network))
        {
            throw new ConfigException($"{where}.Network: '{networkText}' is not an IPv4 network like 10.244.0.0/16");
        }
        int subnetLength = GetInt(config, "SubnetLen", where) ?? NetworkConfig.DefaultSubnetLength(network.Value);
        if (subnetLength <= network.Value.Length || subnetLength > 30)
        {
            throw new ConfigException($"{where}.SubnetLen: {subnetLength} must be longer than the network's /{network.Value.Length} and at most 30");
        }
        if (subnetLength - network.Value.Length > SubnetTable.MaxIndexBits)
        {
            throw new ConfigException($"{where}.SubnetLen: {subnetLength} cuts {network} into more than 2^{SubnetTable.MaxIndexBits} subnets");
        }
        BackendKind backend = BackendKind.Udp;
        uint vni = NetworkConfig.DefaultVni;
        int port = 0;
        if (config.TryGetProperty("Backend", out JsonElement b) && b.ValueKind != JsonValueKind.Null)
        {
            if (b.ValueKind != JsonValueKind.Object)
            {
                throw new ConfigException($"{where}.Backend: must be an object");
            }
            string? type = GetString(b, "Type", $"{where}.Backend") ?? "udp";
            if (!NetworkConfig.TryParseBackend(type, out backend))
            {
                throw new ConfigException($"{where}.Backend.Type: unknown backend '{type}' (supported: udp, vxlan)");
            }
            int? v = GetInt(b, "VNI", $"{where}.Backend");
            if (v is not null)
            {
                if (v < 0 || v > VxlanHeader.MaxVni)
                {
                    throw new ConfigException($"{where}.Backend.VNI: {v} is not a 24-bit VNI");
                }
                vni = (uint)v.Value;
            }
            port = GetInt(b, "Port", $"{where}.Backend") ?? 0;
            if (port is < 0 or > 65535)
            {
                throw new ConfigException($"{where}.Backend.Port: {port} is not a UDP port");
            }
        }
        uint step = 1u << (32 - subnetLength);
        uint min = network.Value.Address + step, max = network.Value.Last - step + 1;
        foreach ((string name, bool isMin) in new[] { ("SubnetMin", true), ("SubnetMax", false) })
        {
            string? text = GetString(config, name, where);
            if (text is null)
            {
                continue;
            }
            if (!Ipv4Prefix.TryParseAddress(text, out uint a) || !network.Value.Contains(a) || (a & (step - 1)) != 0)
            {
                throw new ConfigException($"{where}.{name}: '{text}' is not the base address of a /{subnetLength} inside {network}");
            }
            if (isMin)
            {
                min = a;
            }
            else
            {
                max = a;
            }
        }
        if (min > max)
        {
            throw new ConfigException($"{where}: SubnetMin {Ipv4Prefix.Format(min)} is above SubnetMax {Ipv4Prefix.Format(max)}");
        }
        return new NetworkConfig(network.Value, subnetLength, backend, vni, port == 0 ? NetworkConfig.DefaultPort(backend) : port)
        {
            SubnetMin = min,
            SubnetMax = max,
        };
    }

    /// <summary>Parses one lease value (also etcd's <c>/subnets/KEY</c> value).</summary>
    public static LeaseRecord ParseLease(string key, JsonElement lease, string where)
    {
        if (!Ipv4Prefix.TryParse(key, out Ipv4Prefix? subnet))
        {
            throw new ConfigException($"{where}: '{key}' is not a subnet like 10.244.1.0-24");
        }
        if (lease.ValueKind != JsonValueKind.Object)
        {
            throw new ConfigException($"{where}: must be an object");
        }
        string? ipText = GetString(lease, "PublicIP", where) ?? throw new ConfigException($"{where}: missing \"PublicIP\"");
        if (!Ipv4Prefix.TryParseAddress(ipText, out uint publicIp))
        {
            throw new ConfigException($"{where}.PublicIP: '{ipText}' is not an IPv4 address");
        }
        string? backendType = GetString(lease, "BackendType", where);
        MacAddress? mac = null;
        if (lease.TryGetProperty("BackendData", out JsonElement data) && data.ValueKind == JsonValueKind.Object)
        {
            string? macText = GetString(data, "VtepMAC", $"{where}.BackendData");
            if (macText is not null)
            {
                if (!MacAddress.TryParse(macText, out mac))
                {
                    throw new ConfigException($"{where}.BackendData.VtepMAC: '{macText}' is not a MAC address like 0e:12:34:56:78:9a");
                }
                if (mac.Value.IsMulticast)
                {
                    throw new ConfigException($"{where}.BackendData.VtepMAC: '{macText}' is a multicast address");
                }
            }
        }
        return new LeaseRecord(subnet.Value, publicIp, backendType, mac);
    }

    /// <summary>Every lease a /SubnetLen inside the network; no subnet and no public IP twice.</summary>
    public static void CheckLeases(NetworkConfig network, IReadOnlyList<LeaseRecord> leases, string where)
    {
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

    private static string? GetString(JsonElement obj, string name, string where)
    {
        if (!obj.TryGetProperty(name, out JsonElement v) || v.ValueKind == JsonValueKind.Null)
        {
            return null;
        }
        if (v.ValueKind != JsonValueKind.String)
        {
            throw new ConfigException($"{where}.{name}: must be a string");
        }
        try
        {
            return v.GetString();
        }
        catch (InvalidOperationException)
        {
            throw new ConfigException($"{where}.{name}: not valid UTF-8"); // JSON from etcd is not checked up front
        }
    }

    /// <summary>The offset of the first byte that is not valid UTF-8, or -1.</summary>
    public static int InvalidUtf8At(ReadOnlySpan<byte> text)
    {
        int at = 0;
        while (at < text.Length)
        {
            if (System.Text.Rune.DecodeFromUtf8(text[at..], out _, out int consumed) != System.Buffers.OperationStatus.Done)
            {
                return at;
            }
            at += consumed;
        }
        return -1;
    }

    private static int? GetInt(JsonElement obj, string name, string where)
    {
        if (!obj.TryGetProperty(name, out JsonElement v) || v.ValueKind == JsonValueKind.Null)
        {
            return null;
        }
        return v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i) ? i : throw new ConfigException($"{where}.{name}: must be an integer");
    }
}
