using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Dataplane.Demo;

/// <summary>Writes a static cluster file in flannel's schema for nodes 1..N of a <see cref="Topology"/>.</summary>
internal sealed class ClusterFileBuilder(string backend = "vxlan", int vni = 1)
{
    private readonly JsonObject _subnets = [];

    /// <summary>A stable, locally administered unicast MAC for node i: 0e:00:00:00:00:0i.</summary>
    public static string VtepMac(int i) => string.Create(CultureInfo.InvariantCulture, $"0e:00:5e:00:{i / 256:x2}:{i % 256:x2}");

    public ClusterFileBuilder Node(int i, string? publicIp = null, string? vtepMac = null)
    {
        _subnets[string.Create(CultureInfo.InvariantCulture, $"10.244.{i}.0-24")] = new JsonObject
        {
            ["PublicIP"] = publicIp ?? Topology.UnderlayIp(i),
            ["BackendType"] = "vxlan",
            ["BackendData"] = new JsonObject { ["VNI"] = vni, ["VtepMAC"] = vtepMac ?? VtepMac(i) },
        };
        return this;
    }

    public ClusterFileBuilder Without(int i)
    {
        _subnets.Remove(string.Create(CultureInfo.InvariantCulture, $"10.244.{i}.0-24"));
        return this;
    }

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
