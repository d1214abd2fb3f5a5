using System.Text.Json;

namespace Dataplane.Leases.Kube;

/// <summary>
/// One line of a watch of Nodes, read as far as a lease needs and no further. A Node's status (its
/// images, conditions, addresses: most of its bytes) is never read: once the event's type and the
/// Node's metadata and spec are known the rest of the line cannot change what the node makes of it
/// (the API server writes them in that order, so a kubelet's heartbeat costs a third of its text).
/// Any other order is read whole, so the result never depends on the order. An ERROR event's
/// object is a Status (code, reason, message), read from the same pass.
/// </summary>
internal static class WatchEvent
{
    /// <summary>The event's type ("ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR") and its object.</summary>
    /// <exception cref="JsonException">The line is not a watch event.</exception>
    public static (string Type, WatchObjectJson Object) Read(ReadOnlySpan<byte> line)
    {
        var reader = new Utf8JsonReader(line, isFinalBlock: true, state: default);
        Expect(ref reader, JsonTokenType.StartObject, "a watch event");
        string? type = null;
        WatchObjectJson? o = null;
        while (Next(ref reader) == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals("type"u8))
            {
                Expect(ref reader, JsonTokenType.String, "the event's type");
                type = reader.GetString();
            }
            else if (reader.ValueTextEquals("object"u8))
            {
                Expect(ref reader, JsonTokenType.StartObject, "the event's object");
                o = ReadObject(ref reader, stopEarly: type is not null, out bool whole);
                if (!whole)
                {
                    break; // the rest of the line is the Node's status: nothing of a lease
                }
            }
            else
            {
                reader.Read();
                reader.Skip();
            }
        }
        return (type ?? throw new JsonException("a watch event without a type"), o ?? throw new JsonException("a watch event without an object"));
    }

    /// <summary>The object's fields, from just inside its '{'; with <paramref name="stopEarly"/>, only until its metadata and spec are read.</summary>
    private static WatchObjectJson ReadObject(ref Utf8JsonReader reader, bool stopEarly, out bool whole)
    {
        var o = new WatchObjectJson();
        while (Next(ref reader) == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals("metadata"u8))
            {
                reader.Read();
                o.Metadata = JsonSerializer.Deserialize(ref reader, KubeJson.Default.ObjectMetaJson);
            }
            else if (reader.ValueTextEquals("spec"u8))
            {
                reader.Read();
                o.Spec = JsonSerializer.Deserialize(ref reader, KubeJson.Default.NodeSpecJson);
            }
            else if (reader.ValueTextEquals("code"u8))
            {
                reader.Read();
                o.Code = reader.TokenType == JsonTokenType.Number && reader.TryGetInt32(out int code) ? code : 0;
            }
            else if (reader.ValueTextEquals("reason"u8) || reader.ValueTextEquals("message"u8))
            {
                bool reason = reader.ValueTextEquals("reason"u8);
                reader.Read();
                string? text = reader.TokenType == JsonTokenType.String ? reader.GetString() : null;
                if (reason)
                {
                    o.Reason = text;
                }
                else
                {
                    o.Message = text;
                }
            }
            else
            {
                reader.Read();
                reader.Skip();
            }
            if (stopEarly && o.Metadata is not null && o.Spec is not null)
            {
                whole = false;
                return o;
            }
        }
        if (reader.TokenType != JsonTokenType.EndObject)
        {
            throw new JsonException("a watch event's object that does not end");
        }
        whole = true;
        return o;
    }

    private static JsonTokenType Next(ref Utf8JsonReader reader) => reader.Read() ? reader.TokenType : JsonTokenType.None;

    private static void Expect(ref Utf8JsonReader reader, JsonTokenType token, string what)
    {
        if (Next(ref reader) != token)
        {
            throw new JsonException($"{what} that is not {(token == JsonTokenType.String ? "a string" : "an object")}");
        }
    }
}
