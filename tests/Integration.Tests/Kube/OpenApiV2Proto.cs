using System.Text;
using System.Text.Json;

namespace Dataplane.Integration.Tests.Kube;

/// <summary>
/// An OpenAPI v2 (swagger) document as an API server serves it at <c>/openapi/v2</c> to kubectl:
/// protocol buffers of gnostic's <c>openapi.v2.Document</c> (field numbers from gnostic's
/// OpenAPIv2.proto). Only what a definitions-only document needs: swagger, info, definitions;
/// each schema's $ref, format, type, required, properties, items, additionalProperties and
/// vendor extensions (YAML text, as gnostic keeps them; JSON is YAML).
/// </summary>
internal static class OpenApiV2Proto
{
    public const string ContentType = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

    public static byte[] Encode(JsonElement swagger)
    {
        var doc = new Writer();
        doc.String(1, swagger.GetProperty("swagger").GetString()!);
        JsonElement info = swagger.GetProperty("info");
        doc.Message(2, w =>
        {
            w.String(1, info.GetProperty("title").GetString()!);
            w.String(2, info.GetProperty("version").GetString()!);
        });
        doc.Message(9, defs =>
        {
            foreach (JsonProperty d in swagger.GetProperty("definitions").EnumerateObject())
            {
                defs.Message(1, named => Named(named, d.Name, d.Value));
            }
        });
        return doc.ToArray();
    }

    private static void Named(Writer w, string name, JsonElement schema)
    {
        w.String(1, name);
        w.Message(2, s => Schema(s, schema));
    }

    private static void Schema(Writer w, JsonElement schema)
    {
        foreach (JsonProperty p in schema.EnumerateObject())
        {
            switch (p.Name)
            {
                case "$ref": w.String(1, p.Value.GetString()!); break;
                case "format": w.String(2, p.Value.GetString()!); break;
                case "required":
                    foreach (JsonElement r in p.Value.EnumerateArray())
                    {
                        w.String(19, r.GetString()!);
                    }
                    break;
                case "additionalProperties": w.Message(21, a => a.Message(1, s => Schema(s, p.Value))); break;
                case "type": w.Message(22, t => t.String(1, p.Value.GetString()!)); break;
                case "items": w.Message(23, i => i.Message(1, s => Schema(s, p.Value))); break;
                case "properties":
                    w.Message(25, props =>
                    {
                        foreach (JsonProperty f in p.Value.EnumerateObject())
                        {
                            props.Message(1, named => Named(named, f.Name, f.Value));
                        }
                    });
                    break;
                case var x when x.StartsWith("x-", StringComparison.Ordinal):
                    w.Message(31, named =>
                    {
                        named.String(1, p.Name);
                        named.Message(2, any => any.String(2, p.Value.GetRawText()));
                    });
                    break;
                default:
                    throw new NotSupportedException($"schema keyword {p.Name}");
            }
        }
    }

    /// <summary>Protocol buffers' wire format: varint keys, length-delimited strings and messages.</summary>
    private sealed class Writer
    {
        private readonly MemoryStream _bytes = new();

        public void String(int field, string value) => Bytes(field, Encoding.UTF8.GetBytes(value));

        public void Message(int field, Action<Writer> body)
        {
            var inner = new Writer();
            body(inner);
            Bytes(field, inner.ToArray());
        }

        public byte[] ToArray() => _bytes.ToArray();

        private void Bytes(int field, byte[] value)
        {
            Varint((ulong)((field << 3) | 2));
            Varint((ulong)value.Length);
            _bytes.Write(value);
        }

        private void Varint(ulong v)
        {
            while (v >= 0x80)
            {
                _bytes.WriteByte((byte)(v | 0x80));
                v >>= 7;
            }
            _bytes.WriteByte((byte)v);
        }
    }
}
