using System.Text.Json;
using Dataplane.Encap;
using Dataplane.Engine;
using Dataplane.Leases.Schema;

namespace Dataplane.Leases;

/// <summary>
/// flannel's network config (<c>&lt;prefix&gt;/config</c>):
/// <c>{"Network":"10.244.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan","VNI":1,"Port":8472}}</c>.
/// A missing Backend means udp, as in flannel's code. An IPv6-only network (<c>EnableIPv4: false</c>
/// with <c>EnableIPv6</c>) has no IPv4 half: <see cref="Network"/> is then 0.0.0.0/0 with SubnetLen 0,
/// flannel's empty IP4Net (its lease keys read <c>0.0.0.0-0&amp;2001:db8:244:1::-64</c>).
/// </summary>
internal sealed record NetworkConfig(Ipv4Prefix Network, int SubnetLength, BackendKind Backend, uint Vni, int Port)
{
    /// <summary>The first and last subnet base addresses a node may lease (flannel: the second subnet to the last).</summary>
    public uint SubnetMin { get; init; }
    public uint SubnetMax { get; init; }

    /// <summary>
    /// flannel's dual-stack: <c>EnableIPv6</c> with <c>IPv6Network</c>, <c>IPv6SubnetLen</c> (default
    /// /64, or the network's length + 2 for a network longer than /62), <c>IPv6SubnetMin</c>/<c>Max</c>.
    /// Read and checked as flannel checks them.
    /// </summary>
    public Ipv6Prefix? Ipv6Network { get; init; }
    public int Ipv6SubnetLength { get; init; }
    public UInt128 Ipv6SubnetMin { get; init; }
    public UInt128 Ipv6SubnetMax { get; init; }
    public bool EnableIpv6 => Ipv6Network is not null;

    /// <summary>flannel's <c>EnableNFTables</c>: the masquerade and forward rules in nftables, not iptables.</summary>
    public bool EnableNFTables { get; init; }

    /// <summary>flannel's <c>EnableIPv4</c> (default true); false only beside EnableIPv6 (an IPv6-only network).</summary>
    public bool EnableIpv4 => SubnetLength != 0;

    /// <summary>The network's families, from EnableIPv4 and EnableIPv6.</summary>
    public IpFamilies Families => !EnableIpv4 ? IpFamilies.Ipv6Only : EnableIpv6 ? IpFamilies.DualStack : IpFamilies.Ipv4;

    public const uint DefaultVni = 1;


    /// <summary>flannel's default: /24 when the network is /22 or wider, otherwise four subnets' worth.</summary>
    public static int DefaultSubnetLength(Ipv4Prefix network) => network.Length <= 22 ? 24 : network.Length + 2;

    public static bool TryParseBackend(string? name, out BackendKind backend)
    {
        switch (name?.ToLowerInvariant())
        {
            case "udp":
                backend = BackendKind.Udp;
                return true;
            case "vxlan":
                backend = BackendKind.Vxlan;
                return true;
            default:
                backend = default;
                return false;
        }
    }

    /// <summary>Validates a network config object; every error is one line starting with <paramref name="where"/>.</summary>
    public static NetworkConfig Parse(JsonElement element, string where)
    {
        if (element.ValueKind != JsonValueKind.Object)
        {
            throw new ConfigException($"{where}: must be an object");
        }
        NetworkConfigJson json = FlannelDocument.Read(element, FlannelJson.Default.NetworkConfigJson, where);
        (Ipv6Prefix? v6, int v6Length, UInt128 v6Min, UInt128 v6Max) = json.EnableIPv6 == true ? ParseIpv6(json, where) : default;
        if (json.EnableIPv4 == false)
        {
            if (v6 is null)
            {
                throw new ConfigException($"{where}: EnableIPv4 is false and EnableIPv6 is not true: the network has no family to forward");
            }
            // IPv6-only: as flannel, Network and SubnetLen are not read; the IPv4 half is the empty network.
            (BackendKind backend6, uint vni6, int port6) = ParseBackend(json.Backend, $"{where}.Backend");
            return new NetworkConfig(default, 0, backend6, vni6, port6 == 0 ? BackendProfile.Of(backend6).DefaultPort : port6)
            {
                Ipv6Network = v6,
                Ipv6SubnetLength = v6Length,
                Ipv6SubnetMin = v6Min,
                Ipv6SubnetMax = v6Max,
                EnableNFTables = json.EnableNFTables == true,
            };
        }
        string networkText = json.Network ?? throw new ConfigException($"{where}: missing \"Network\"");
        if (!Ipv4Prefix.TryParse(networkText, out Ipv4Prefix? parsed))
        {
            throw new ConfigException($"{where}.Network: '{networkText}' is not an IPv4 network like 10.244.0.0/16");
        }
        Ipv4Prefix network = parsed.Value;
        int subnetLength = json.SubnetLen ?? DefaultSubnetLength(network);
        if (subnetLength <= network.Length || subnetLength > 30)
        {
            throw new ConfigException($"{where}.SubnetLen: {subnetLength} must be longer than the network's /{network.Length} and at most 30");
        }
        if (subnetLength - network.Length > SubnetTable.MaxIndexBits)
        {
            throw new ConfigException($"{where}.SubnetLen: {subnetLength} cuts {network} into more than 2^{SubnetTable.MaxIndexBits} subnets");
        }
        (BackendKind backend, uint vni, int port) = ParseBackend(json.Backend, $"{where}.Backend");
        uint step = 1u << (32 - subnetLength);
        uint min = SubnetBound(json.SubnetMin, "SubnetMin", network.Address + step);
        uint max = SubnetBound(json.SubnetMax, "SubnetMax", network.Last - step + 1);
        if (min > max)
        {
            throw new ConfigException($"{where}: SubnetMin {Ipv4Prefix.Format(min)} is above SubnetMax {Ipv4Prefix.Format(max)}");
        }
        return new NetworkConfig(network, subnetLength, backend, vni, port == 0 ? BackendProfile.Of(backend).DefaultPort : port)
        {
            SubnetMin = min,
            SubnetMax = max,
            Ipv6Network = v6,
            Ipv6SubnetLength = v6Length,
            Ipv6SubnetMin = v6Min,
            Ipv6SubnetMax = v6Max,
            EnableNFTables = json.EnableNFTables == true,
        };

        uint SubnetBound(string? text, string name, uint fallback)
        {
            if (text is null)
            {
                return fallback;
            }
            if (!Ipv4Prefix.TryParseAddress(text, out uint a) || !network.Contains(a) || (a & (step - 1)) != 0)
            {
                throw new ConfigException($"{where}.{name}: '{text}' is not the base address of a /{subnetLength} inside {network}");
            }
            return a;
        }
    }

    /// <summary>The IPv6 half of a dual-stack config, with flannel's rules (pkg/subnet/config.go) and defaults.</summary>
    private static (Ipv6Prefix? Network, int SubnetLength, UInt128 Min, UInt128 Max) ParseIpv6(NetworkConfigJson json, string where)
    {
        string text = json.IPv6Network ?? throw new ConfigException($"{where}: EnableIPv6 is true but \"IPv6Network\" is missing");
        if (!Ipv6Prefix.TryParse(text, out Ipv6Prefix? parsed) || text.Contains('-', StringComparison.Ordinal))
        {
            throw new ConfigException($"{where}.IPv6Network: '{text}' is not an IPv6 network like 2001:db8:244::/48");
        }
        Ipv6Prefix network = parsed.Value;
        int length;
        if (json.IPv6SubnetLen is int given)
        {
            if (given > 126 || given < network.Length + 2)
            {
                throw new ConfigException($"{where}.IPv6SubnetLen: {given} must be at most 126 and at least 2 longer than the network's /{network.Length} (four subnets at least)");
            }
            length = given;
        }
        else if (network.Length > 124)
        {
            throw new ConfigException($"{where}.IPv6Network: {network} is too small (flannel's smallest useful IPv6 network is a /124)");
        }
        else
        {
            length = network.Length <= 62 ? 64 : network.Length + 2;
        }
        UInt128 step = UInt128.One << (128 - length);
        UInt128 last = network.Address | ~network.Mask;
        UInt128 min = Bound(json.IPv6SubnetMin, "IPv6SubnetMin", network.Address + step);
        UInt128 max = Bound(json.IPv6SubnetMax, "IPv6SubnetMax", last - step + 1);
        if (min > max)
        {
            throw new ConfigException($"{where}: IPv6SubnetMin {Ipv6Prefix.Format(min)} is above IPv6SubnetMax {Ipv6Prefix.Format(max)}");
        }
        return (network, length, min, max);

        UInt128 Bound(string? value, string name, UInt128 fallback)
        {
            if (value is null)
            {
                return fallback;
            }
            if (!Ipv6Prefix.TryParseAddress(value, out UInt128 a) || !network.Contains(a) || (a & (step - 1)) != UInt128.Zero)
            {
                throw new ConfigException($"{where}.{name}: '{value}' is not the base address of a /{length} inside {network}");
            }
            return a;
        }
    }

    private static (BackendKind Backend, uint Vni, int Port) ParseBackend(JsonElement? element, string where)
    {
        if (element is not { ValueKind: not JsonValueKind.Null } b)
        {
            return (BackendKind.Udp, DefaultVni, 0);
        }
        if (b.ValueKind != JsonValueKind.Object)
        {
            throw new ConfigException($"{where}: must be an object");
        }
        BackendJson json = FlannelDocument.Read(b, FlannelJson.Default.BackendJson, where);
        string type = json.Type ?? "udp";
        if (!TryParseBackend(type, out BackendKind backend))
        {
            throw new ConfigException($"{where}.Type: unknown backend '{type}' (supported: udp, vxlan)");
        }
        if (json.VNI is < 0 or > (int)VxlanHeader.MaxVni)
        {
            throw new ConfigException($"{where}.VNI: {json.VNI} is not a 24-bit VNI");
        }
        if (json.Port is < 0 or > 65535)
        {
            throw new ConfigException($"{where}.Port: {json.Port} is not a UDP port");
        }
        return (backend, (uint?)json.VNI ?? DefaultVni, json.Port ?? 0);
    }
}
