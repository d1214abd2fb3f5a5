using System.Text.Json;
using System.Text.Json.Serialization;

namespace Dataplane.Leases.Schema;

/// <summary>
/// flannel's JSON as flanneld reads and writes it (Go's encoding/json: field names matched without
/// regard to case, unknown fields ignored), mapped by source-generated System.Text.Json so it works
/// in the native binary without reflection. These are the shapes only; <see cref="NetworkConfig"/>
/// and <see cref="LeaseRecord"/> validate them and say what is wrong where.
/// </summary>
[JsonSourceGenerationOptions(PropertyNameCaseInsensitive = true, ReadCommentHandling = JsonCommentHandling.Skip)]
[JsonSerializable(typeof(NetworkConfigJson))]
[JsonSerializable(typeof(BackendJson))]
[JsonSerializable(typeof(LeaseJson))]
[JsonSerializable(typeof(VxlanBackendDataJson))]
internal sealed partial class FlannelJson : JsonSerializerContext;

/// <summary>The network config: etcd <c>&lt;prefix&gt;/config</c>, the cluster file's <c>config</c>, kube's net-conf.json.</summary>
internal sealed class NetworkConfigJson
{
    /// <summary>flannel's default is true; false makes an IPv6-only network.</summary>
    public bool? EnableIPv4 { get; set; }
    public bool? EnableIPv6 { get; set; }
    public string? IPv6Network { get; set; }
    public int? IPv6SubnetLen { get; set; }
    /// <summary>flanneld's traffic manager in nftables instead of iptables (default false).</summary>
    public bool? EnableNFTables { get; set; }
    public string? IPv6SubnetMin { get; set; }
    public string? IPv6SubnetMax { get; set; }
    public string? Network { get; set; }
    public int? SubnetLen { get; set; }
    public string? SubnetMin { get; set; }
    public string? SubnetMax { get; set; }
    /// <summary>flannel keeps it raw (each backend reads its own fields); null or missing means udp.</summary>
    public JsonElement? Backend { get; set; }
}

/// <summary>The fields of <c>Backend</c> this data plane reads.</summary>
internal sealed class BackendJson
{
    public string? Type { get; set; }
    public int? VNI { get; set; }
    public int? Port { get; set; }
}

/// <summary>
/// One lease: etcd <c>&lt;prefix&gt;/subnets/10.244.1.0-24</c>, an entry of the cluster file's
/// <c>subnets</c>. flanneld writes <c>PublicIPv6</c> always (null without IPv6) and leaves
/// <c>BackendType</c>/<c>BackendData</c> out when empty (udp).
/// </summary>
internal sealed class LeaseJson
{
    public string? PublicIP { get; set; }
    public string? PublicIPv6 { get; set; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? BackendType { get; set; }
    /// <summary>Raw, as in flannel: each backend has its own; vxlan's is <see cref="VxlanBackendDataJson"/>.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public JsonElement? BackendData { get; set; }
    /// <summary>A dual-stack lease's IPv6 backend data (vxlan: the VtepMAC of flannel-v6.1).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public JsonElement? BackendV6Data { get; set; }
}

/// <summary>vxlan's BackendData: <c>{"VNI":1,"VtepMAC":"0e:..."}</c>.</summary>
internal sealed class VxlanBackendDataJson
{
    public int? VNI { get; set; }
    public string? VtepMAC { get; set; }
}
