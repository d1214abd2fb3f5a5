using System.Text.Json;
using Dataplane.Encap;
using Dataplane.Leases.Schema;

namespace Dataplane.Leases;

/// <summary>
/// One node's lease as flannel stores it under <c>&lt;prefix&gt;/subnets/10.244.1.0-24</c>:
/// <c>{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:..."}}</c>.
/// flannel's udp backend writes no BackendType/BackendData. The one place the lease schema is read
/// (<c>Parse</c>) and written (<see cref="ToJson"/>), for every lease source and the lab.
/// </summary>
internal sealed record LeaseRecord(Ipv4Prefix Subnet, uint PublicIp, string? BackendType, MacAddress? VtepMac)
{
    public string PublicIpText => Ipv4Prefix.Format(PublicIp);

    /// <summary>The lease's key under <c>subnets/</c>: <c>10.244.1.0-24</c>.</summary>
    public string Key => Subnet.ToKey();

    /// <summary>Validates one lease value stored under <paramref name="key"/>; every error is one line starting with <paramref name="where"/>.</summary>
    public static LeaseRecord Parse(string key, JsonElement element, string where)
    {
        if (!Ipv4Prefix.TryParse(key, out Ipv4Prefix? subnet))
        {
            throw new ConfigException($"{where}: '{key}' is not a subnet like 10.244.1.0-24");
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
        MacAddress? mac = null;
        // BackendData is each backend's own; only an object can hold vxlan's VtepMAC.
        if (json.BackendData is { ValueKind: JsonValueKind.Object } data)
        {
            VxlanBackendDataJson vxlan = FlannelDocument.Read(data, FlannelJson.Default.VxlanBackendDataJson, $"{where}.BackendData");
            if (vxlan.VtepMAC is string macText)
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
        return new LeaseRecord(subnet.Value, publicIp, json.BackendType, mac);
    }

    /// <summary>Validates one lease value as stored bytes (etcd's values).</summary>
    public static LeaseRecord Parse(string key, ReadOnlySpan<byte> utf8, string where)
    {
        using JsonDocument doc = FlannelDocument.Parse(utf8, where);
        return Parse(key, doc.RootElement, where);
    }

    /// <summary>
    /// The value flanneld writes for this lease: vxlan (a VtepMAC) with BackendType and BackendData
    /// carrying <paramref name="vni"/>, udp with neither; PublicIPv6 null.
    /// </summary>
    public string ToJson(uint vni)
    {
        var json = new LeaseJson { PublicIP = PublicIpText };
        if (VtepMac is MacAddress mac)
        {
            json.BackendType = "vxlan";
            json.BackendData = JsonSerializer.SerializeToElement(new VxlanBackendDataJson { VNI = (int)vni, VtepMAC = mac.ToString() },
                FlannelJson.Default.VxlanBackendDataJson);
        }
        return JsonSerializer.Serialize(json, FlannelJson.Default.LeaseJson);
    }
}
