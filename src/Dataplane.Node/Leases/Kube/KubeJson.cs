using System.Text.Json;
using System.Text.Json.Serialization;

namespace Dataplane.Leases.Kube;

// The few fields of the Kubernetes objects this source reads, as the API serves them (camelCase).
// Source-generated, so the NativeAOT binary reads them without reflection.

internal sealed class ObjectMetaJson
{
    public string? Name { get; set; }
    public string? ResourceVersion { get; set; }
    public Dictionary<string, string>? Annotations { get; set; }
}

internal sealed class NodeSpecJson
{
    [JsonPropertyName("podCIDR")]
    public string? PodCidr { get; set; }
    [JsonPropertyName("podCIDRs")]
    public List<string>? PodCidrs { get; set; }
}

internal sealed class NodeJson
{
    public ObjectMetaJson? Metadata { get; set; }
    public NodeSpecJson? Spec { get; set; }
}

internal sealed class ListMetaJson
{
    public string? ResourceVersion { get; set; }
    /// <summary>The token of the next page of a paged list; none on the last page.</summary>
    public string? Continue { get; set; }
}

internal sealed class NodeListJson
{
    public ListMetaJson? Metadata { get; set; }
    public List<NodeJson>? Items { get; set; }
}

internal sealed class PodSpecJson
{
    public string? NodeName { get; set; }
}

internal sealed class PodJson
{
    public PodSpecJson? Spec { get; set; }
}

/// <summary>
/// A watch event's object: a Node, or with type ERROR a Status, read in one pass as the fields of
/// both (they do not overlap: a Node's <c>status</c> object and a Status's <c>status</c> string are
/// not read). <see cref="WatchEvent"/> reads it.
/// </summary>
internal sealed class WatchObjectJson
{
    public ObjectMetaJson? Metadata { get; set; }
    public NodeSpecJson? Spec { get; set; }
    public int Code { get; set; }
    public string? Reason { get; set; }
    public string? Message { get; set; }
}

/// <summary>What the API server answers an error with (and an ERROR event carries).</summary>
internal sealed class StatusJson
{
    public int Code { get; set; }
    public string? Reason { get; set; }
    public string? Message { get; set; }
}

/// <summary>JSON this source writes by hand (patches, a node's annotations as a lease value), without reflection.</summary>
internal static class KubeJsonWriter
{
    public static byte[] Utf8(Action<Utf8JsonWriter> write)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            write(w);
        }
        return buffer.ToArray();
    }

    public static string Text(Action<Utf8JsonWriter> write) => System.Text.Encoding.UTF8.GetString(Utf8(write));
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, PropertyNameCaseInsensitive = true)]
[JsonSerializable(typeof(NodeJson))]
[JsonSerializable(typeof(NodeListJson))]
[JsonSerializable(typeof(PodJson))]
[JsonSerializable(typeof(ObjectMetaJson))]
[JsonSerializable(typeof(NodeSpecJson))]
[JsonSerializable(typeof(StatusJson))]
internal sealed partial class KubeJson : JsonSerializerContext;
