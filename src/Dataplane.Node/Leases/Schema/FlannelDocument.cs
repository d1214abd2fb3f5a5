using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace Dataplane.Leases.Schema;

/// <summary>
/// Reading flannel's JSON with one-line errors that name the place: bytes that are not UTF-8 by
/// offset, syntax by line and column, a field of the wrong type by its path
/// (<c>lease file cluster.json: config.SubnetLen: must be an integer</c>).
/// </summary>
internal static class FlannelDocument
{
    /// <summary>Parses <paramref name="utf8"/> as one JSON document; <paramref name="where"/> prefixes every error.</summary>
    public static JsonDocument Parse(ReadOnlySpan<byte> utf8, string where)
    {
        int bad = InvalidUtf8At(utf8);
        if (bad >= 0)
        {
            throw new ConfigException($"{where}: not valid UTF-8 at byte {bad}");
        }
        try
        {
            return JsonDocument.Parse(utf8.ToArray(), new JsonDocumentOptions { AllowTrailingCommas = false, CommentHandling = JsonCommentHandling.Skip });
        }
        catch (JsonException e)
        {
            throw new ConfigException($"{where}: invalid JSON at line {e.LineNumber + 1}, column {e.BytePositionInLine + 1}");
        }
    }

    /// <summary>Maps an element of a parsed document onto a schema type; a field of the wrong type is an error at its path.</summary>
    public static T Read<T>(JsonElement element, JsonTypeInfo<T> type, string where) where T : class
    {
        try
        {
            return element.Deserialize(type) ?? throw new ConfigException($"{where}: must be an object");
        }
        catch (JsonException e)
        {
            string path = e.Path is { Length: > 1 } p && p.StartsWith('$') ? p[1..] : "";
            throw new ConfigException($"{where}{path}: {Expected(path)}");
        }
        catch (InvalidOperationException)
        {
            throw new ConfigException($"{where}: not valid UTF-8"); // strings are checked up front; a defence only
        }
    }

    private static string Expected(string path)
    {
        string field = path[(path.LastIndexOf('.') + 1)..];
        return field.ToUpperInvariant() switch
        {
            "" => "must be an object",
            "SUBNETLEN" or "VNI" or "PORT" => "must be an integer",
            "BACKEND" or "BACKENDDATA" => "must be an object",
            _ => "must be a string",
        };
    }

    /// <summary>The offset of the first byte that is not valid UTF-8, or -1.</summary>
    public static int InvalidUtf8At(ReadOnlySpan<byte> text)
    {
        int at = 0;
        while (at < text.Length)
        {
            if (Rune.DecodeFromUtf8(text[at..], out _, out int consumed) != OperationStatus.Done)
            {
                return at;
            }
            at += consumed;
        }
        return -1;
    }
}
