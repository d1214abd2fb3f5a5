using System.Text.Json;
using Dataplane.Encap;
using Dataplane.Leases.Schema;

namespace Dataplane.Leases;

/// <summary>
/// One node's lease as flannel stores it under <c>&lt;prefix&gt;/subnets/10.244.1.0-24</c>:
/// <c>{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:..."}}</c>.
/// flannel's udp backend writes no BackendType/BackendData. A dual-stack lease (flanneld with
/// EnableIPv6) lives under <c>10.244.1.0-24&amp;2001:db8:244:1::-64</c> (flannel's MakeSubnetKey) with
/// <c>PublicIPv6</c> and <c>BackendV6Data</c>; its IPv6 half is read and checked here and kept
/// (<see cref="Ipv6Subnet"/>, <see cref="PublicIpv6"/>, <see cref="VtepMacV6"/>), and this data plane
/// reaches such a node over IPv4. The one place the lease schema is read (<c>Parse</c>) and written
/// (<see cref="ToJson"/>), for every lease source and the lab.
/// </summary>
internal sealed record LeaseRecord(Ipv4Prefix Subnet, uint PublicIp, string? BackendType, MacAddress? VtepMac)
{
    public string PublicIpText => Ipv4Prefix.Format(PublicIp);

    /// <summary>A dual-stack lease's IPv6 subnet (the key's part after '&amp;').</summary>
    public Ipv6Prefix? Ipv6Subnet { get; init; }
    /// <summary>A dual-stack lease's <c>PublicIPv6</c>.</summary>
    public UInt128? PublicIpv6 { get; init; }
    /// <summary>A dual-stack vxlan lease's <c>BackendV6Data.VtepMAC</c> (flannel-v6.1's MAC).</summary>
    public MacAddress? VtepMacV6 { get; init; }

    /// <summary>vxlan's <c>BackendData.VNI</c>, when the lease names one.</summary>
    public uint? Vni { get; init; }

    /// <summary>What the lease is called in messages: its key (etcd, the file), or <c>node NAME</c> (Kubernetes).</summary>
    public string Name
    {
        get => _name ?? Key;
        init => _name = value;
    }

    private readonly string? _name;

    /// <summary>The lease's key under <c>subnets/</c>: <c>10.244.1.0-24</c>, or <c>10.244.1.0-24&amp;2001:db8:244:1::-64</c>.</summary>
    public string Key => Ipv6Subnet is Ipv6Prefix v6 ? $"{Subnet.ToKey()}&{v6.ToKey()}" : Subnet.ToKey();

    /// <summary>Validates one lease value stored under <paramref name="key"/>; every error is one line starting with <paramref name="where"/>.</summary>
    public static LeaseRecord Parse(string key, JsonElement element, string where)
    {
        int amp = key.IndexOf('&', StringComparison.Ordinal);
        string v4Key = amp < 0 ? key : key[..amp];
        if (!Ipv4Prefix.TryParse(v4Key, out Ipv4Prefix? subnet))
        {
            throw new ConfigException($"{where}: '{key}' is not a subnet like 10.244.1.0-24 (or 10.244.1.0-24&2001:db8:244:1::-64)");
        }
        Ipv6Prefix? v6Subnet = null;
        if (amp >= 0)
        {
            string v6Key = key[(amp + 1)..];
            if (!Ipv6Prefix.TryParse(v6Key, out v6Subnet))
            {
                throw new ConfigException($"{where}: '{v6Key}' after '&' is not an IPv6 subnet like 2001:db8:244:1::-64");
            }
        }
        if (element.ValueKind != JsonValueKind.Object)
        {
            throw new ConfigException($"{where}: must be an object");
        }
        LeaseJson json = FlannelDocument.Read(element, FlannelJson.Default.LeaseJson, where);
        string ipText = json.PublicIP ?? throw new ConfigException($"{where}: missing \"PublicIP\"");
        if (!Ipv4Prefix.TryParseAddress(ipText, out uint publicIp))
        {
            throw new ConfigException($"{where}.PublicIP: '{ipText}' is not an IPv4 address");
        }
        UInt128? publicIpv6 = null;
        if (json.PublicIPv6 is string v6Text)
        {
            if (!Ipv6Prefix.TryParseAddress(v6Text, out UInt128 v6))
            {
                throw new ConfigException($"{where}.PublicIPv6: '{v6Text}' is not an IPv6 address");
            }
            if ((v6 >> 32) == 0xFFFF || v6 == UInt128.Zero || (v6 >> 120) == 0xFF)
            {
                throw new ConfigException($"{where}.PublicIPv6: '{v6Text}' is not a unicast IPv6 address (IPv4-mapped, unspecified or multicast)");
            }
            publicIpv6 = v6;
        }
        (MacAddress? mac, uint? vni) = VxlanDataOf(json.BackendData, $"{where}.BackendData");
        return new LeaseRecord(subnet.Value, publicIp, json.BackendType, mac)
        {
            Vni = vni,
            Ipv6Subnet = v6Subnet,
            PublicIpv6 = publicIpv6,
            VtepMacV6 = VxlanDataOf(json.BackendV6Data, $"{where}.BackendV6Data").VtepMac,
        };
    }

    /// <summary>vxlan's VtepMAC and VNI in a backend data object, where it has them. BackendData is each backend's own; only an object can hold them.</summary>
    private static (MacAddress? VtepMac, uint? Vni) VxlanDataOf(JsonElement? element, string where)
    {
        if (element is not { ValueKind: JsonValueKind.Object } data)
        {
            return (null, null);
        }
        VxlanBackendDataJson vxlan = FlannelDocument.Read(data, FlannelJson.Default.VxlanBackendDataJson, where);
        uint? vni = vxlan.VNI is int v and >= 0 ? (uint)v : null;
        if (vxlan.VtepMAC is not string macText)
        {
            return (null, vni);
        }
        if (!MacAddress.TryParse(macText, out MacAddress? mac))
        {
            throw new ConfigException($"{where}.VtepMAC: '{macText}' is not a MAC address like 0e:12:34:56:78:9a");
        }
        if (mac.Value.IsMulticast)
        {
            throw new ConfigException($"{where}.VtepMAC: '{macText}' is a multicast address");
        }
        return (mac, vni);
    }

    /// <summary>Validates one lease value as stored bytes (etcd's values).</summary>
    public static LeaseRecord Parse(string key, ReadOnlySpan<byte> utf8, string where)
    {
        using JsonDocument doc = FlannelDocument.Parse(utf8, where);
        return Parse(key, doc.RootElement, where);
    }

    /// <summary>
    /// The value flanneld writes for this lease: vxlan (a VtepMAC) with BackendType and BackendData
    /// carrying <paramref name="vni"/>, udp with neither; PublicIPv6 null, or (dual-stack) the
    /// IPv6 address, with BackendV6Data for vxlan as flanneld's newSubnetAttrs writes it.
    /// </summary>
    public string ToJson(uint vni)
    {
        var json = new LeaseJson { PublicIP = PublicIpText, PublicIPv6 = PublicIpv6 is UInt128 v6 ? Ipv6Prefix.Format(v6) : null };
        // An IPv6-only lease (empty IPv4 half) has no flannel.1, so no BackendData: only BackendV6Data, as flanneld writes it.
        if (VtepMac is MacAddress mac && Subnet.Length != 0)
        {
            json.BackendType = "vxlan";
            json.BackendData = VxlanData(vni, mac);
        }
        if (PublicIpv6 is not null && VtepMacV6 is MacAddress mac6)
        {
            json.BackendType = "vxlan";
            json.BackendV6Data = VxlanData(vni, mac6);
        }
        return JsonSerializer.Serialize(json, FlannelJson.Default.LeaseJson);
    }

    private static JsonElement VxlanData(uint vni, MacAddress mac) =>
        JsonSerializer.SerializeToElement(new VxlanBackendDataJson { VNI = (int)vni, VtepMAC = mac.ToString() }, FlannelJson.Default.VxlanBackendDataJson);
}
