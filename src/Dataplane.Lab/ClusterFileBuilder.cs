using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Dataplane.Encap;
using Dataplane.Leases;

namespace Dataplane.Lab;

/// <summary>
/// Writes a static cluster file in flannel's schema for nodes 1..N of a <see cref="Topology"/>;
/// dual-stack (<see cref="DualStack"/>) as flanneld keeps such a cluster: EnableIPv6 with
/// 2001:db8:244::/48 in /64s, keys <c>10.244.i.0-24&amp;2001:db8:244:i::-64</c>, PublicIPv6 and BackendV6Data.
/// </summary>
internal sealed class ClusterFileBuilder(string backend = "vxlan", int vni = 1)
{
    private readonly JsonObject _subnets = [];
    private bool _dualStack;
    private bool _ipv6Only;

    /// <summary>A MAC for node i's flannel-v6.1 (0e:00:5e:06:00:0i), distinct from its IPv4 VtepMAC as flanneld's two devices are.</summary>
    public static string VtepMacV6(int i) => string.Create(CultureInfo.InvariantCulture, $"0e:00:5e:06:{i / 256:x2}:{i % 256:x2}");

    /// <summary>
    /// An IPv6-only network (EnableIPv4 false, no Network): nodes added after this have only an IPv6
    /// half, under flannel's key <c>0.0.0.0-0&amp;2001:db8:244:i::-64</c> with PublicIP 0.0.0.0.
    /// </summary>
    public ClusterFileBuilder Ipv6Only()
    {
        _ipv6Only = true;
        return DualStack();
    }

    /// <summary>The config enables IPv6 (2001:db8:244::/48, /64 per node); nodes added after this get an IPv6 half.</summary>
    public ClusterFileBuilder DualStack()
    {
        _dualStack = true;
        return this;
    }

    /// <summary>A stable, locally administered unicast MAC for node i: 0e:00:00:00:00:0i.</summary>
    public static string VtepMac(int i) => string.Create(CultureInfo.InvariantCulture, $"0e:00:5e:00:{i / 256:x2}:{i % 256:x2}");

    /// <param name="publicIpv6">Dual-stack: the node's IPv6 underlay address (default 2001:db8:2::i; "" for none).</param>
    public ClusterFileBuilder Node(int i, string? publicIp = null, string? vtepMac = null, string? publicIpv6 = null, string? vtepMacV6 = null)
    {
        // Written by the node's own lease schema, as flanneld writes a vxlan lease.
        var lease = _ipv6Only
            ? new LeaseRecord(default, 0, "vxlan", null)
            : new LeaseRecord(Subnet(i), Ip(publicIp ?? Topology.UnderlayIp(i)), "vxlan", Mac(vtepMac ?? VtepMac(i)));
        if (_dualStack)
        {
            string v6 = publicIpv6 ?? Topology.UnderlayIpv6(i);
            lease = lease with
            {
                Ipv6Subnet = Ipv6Prefix.TryParse(Topology.SubnetIpv6(i), out Ipv6Prefix? s6) ? s6 : null,
                PublicIpv6 = v6.Length > 0 && Ipv6Prefix.TryParseAddress(v6, out UInt128 a) ? a : null,
                VtepMacV6 = Mac(vtepMacV6 ?? VtepMacV6(i)),
            };
        }
        Without(i);
        JsonNode value = JsonNode.Parse(lease.ToJson((uint)vni))!;
        if (backend != "vxlan")
        {
            value["BackendType"] = backend; // the network's backend; the VtepMACs stay, so a node told --backend vxlan still has them
        }
        _subnets[lease.Key] = value;
        return this;
    }

    public ClusterFileBuilder Without(int i)
    {
        string prefix = Subnet(i).ToKey(), v6 = "&" + (Ipv6Prefix.TryParse(Topology.SubnetIpv6(i), out Ipv6Prefix? s6) ? s6.Value.ToKey() : "");
        foreach (string key in _subnets.Select(p => p.Key).Where(k => k == prefix || k.StartsWith(prefix + "&", StringComparison.Ordinal) || k.EndsWith(v6, StringComparison.Ordinal)).ToList())
        {
            _subnets.Remove(key);
        }
        return this;
    }

    private static Ipv4Prefix Subnet(int i) => Ipv4Prefix.TryParse(string.Create(CultureInfo.InvariantCulture, $"10.244.{i}.0/24"), out Ipv4Prefix? p)
        ? p.Value : throw new ArgumentOutOfRangeException(nameof(i));

    private static uint Ip(string text) => Ipv4Prefix.TryParseAddress(text, out uint a) ? a : throw new ArgumentException($"not an IPv4 address: {text}");

    private static MacAddress Mac(string text) => MacAddress.TryParse(text, out MacAddress? m) ? m.Value : throw new ArgumentException($"not a MAC address: {text}");

    public string ToJson()
    {
        var config = _ipv6Only
            ? new JsonObject { ["EnableIPv4"] = false, ["Backend"] = new JsonObject { ["Type"] = backend, ["VNI"] = vni } }
            : new JsonObject
            {
                ["Network"] = "10.244.0.0/16",
                ["SubnetLen"] = 24,
                ["Backend"] = new JsonObject { ["Type"] = backend, ["VNI"] = vni },
            };
        if (_dualStack)
        {
            config["EnableIPv6"] = true;
            config["IPv6Network"] = "2001:db8:244::/48";
            config["IPv6SubnetLen"] = 64;
        }
        var root = new JsonObject { ["config"] = config, ["subnets"] = _subnets.DeepClone() };
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
