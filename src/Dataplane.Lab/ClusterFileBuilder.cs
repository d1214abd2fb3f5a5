using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Dataplane.Encap;
using Dataplane.Leases;

namespace Dataplane.Lab;

/// <summary>Writes a static cluster file in flannel's schema for nodes 1..N of a <see cref="Topology"/>.</summary>
internal sealed class ClusterFileBuilder(string backend = "vxlan", int vni = 1)
{
    private readonly JsonObject _subnets = [];

    /// <summary>A stable, locally administered unicast MAC for node i: 0e:00:00:00:00:0i.</summary>
    public static string VtepMac(int i) => string.Create(CultureInfo.InvariantCulture, $"0e:00:5e:00:{i / 256:x2}:{i % 256:x2}");

    public ClusterFileBuilder Node(int i, string? publicIp = null, string? vtepMac = null)
    {
        // Written by the node's own lease schema, as flanneld writes a vxlan lease.
        var lease = new LeaseRecord(Subnet(i), Ip(publicIp ?? Topology.UnderlayIp(i)), "vxlan", Mac(vtepMac ?? VtepMac(i)));
        _subnets[lease.Key] = JsonNode.Parse(lease.ToJson((uint)vni));
        return this;
    }

    public ClusterFileBuilder Without(int i)
    {
        _subnets.Remove(Subnet(i).ToKey());
        return this;
    }

    private static Ipv4Prefix Subnet(int i) => Ipv4Prefix.TryParse(string.Create(CultureInfo.InvariantCulture, $"10.244.{i}.0/24"), out Ipv4Prefix? p)
        ? p.Value : throw new ArgumentOutOfRangeException(nameof(i));

    private static uint Ip(string text) => Ipv4Prefix.TryParseAddress(text, out uint a) ? a : throw new ArgumentException($"not an IPv4 address: {text}");

    private static MacAddress Mac(string text) => MacAddress.TryParse(text, out MacAddress? m) ? m.Value : throw new ArgumentException($"not a MAC address: {text}");

    public string ToJson()
    {
        var root = new JsonObject
        {
            ["config"] = new JsonObject
            {
                ["Network"] = "10.244.0.0/16",
                ["SubnetLen"] = 24,
                ["Backend"] = new JsonObject { ["Type"] = backend, ["VNI"] = vni },
            },
            ["subnets"] = _subnets.DeepClone(),
        };
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>Writes atomically (temp file + rename), as an operator's editor or config tool would.</summary>
    public void WriteTo(string path)
    {
        string temp = path + ".tmp";
        File.WriteAllText(temp, ToJson());
        File.Move(temp, path, overwrite: true);
    }
}
