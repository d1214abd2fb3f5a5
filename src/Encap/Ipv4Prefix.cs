using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Net;

namespace Dataplane.Encap;

/// <summary>An IPv4 network: host-order base address (host bits zero) and prefix length.</summary>
public readonly record struct Ipv4Prefix(uint Address, int Length)
{
    public uint Mask => Length == 0 ? 0u : uint.MaxValue << (32 - Length);
    public uint Last => Address | ~Mask;

    public bool Contains(uint address) => (address & Mask) == Address;

    public bool Contains(Ipv4Prefix other) => other.Length >= Length && Contains(other.Address);

    public bool Overlaps(Ipv4Prefix other) => Contains(other.Address) || other.Contains(Address);

    /// <summary>Parses "10.244.1.0/24", or flannel's key form "10.244.1.0-24". Host bits must be zero.</summary>
    public static bool TryParse(string? text, [NotNullWhen(true)] out Ipv4Prefix? prefix)
    {
        prefix = null;
        if (text is null)
        {
            return false;
        }
        int sep = text.LastIndexOfAny(['/', '-']);
        if (sep <= 0
            || !TryParseAddress(text.AsSpan(0, sep), out uint addr)
            || !int.TryParse(text.AsSpan(sep + 1), NumberStyles.None, CultureInfo.InvariantCulture, out int len)
            || len is < 0 or > 32)
        {
            return false;
        }
        var p = new Ipv4Prefix(addr, len);
        if ((addr & p.Mask) != addr)
        {
            return false;
        }
        prefix = p;
        return true;
    }

    /// <summary>Strict dotted quad "a.b.c.d" (no shorthand like "10.1", no leading '+', no IPv6).</summary>
    public static bool TryParseAddress(ReadOnlySpan<char> text, out uint address)
    {
        address = 0;
        int parts = 0;
        foreach (Range r in text.Split('.'))
        {
            ReadOnlySpan<char> part = text[r];
            if (++parts > 4 || part.Length is 0 or > 3
                || !uint.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out uint octet) || octet > 255)
            {
                return false;
            }
            address = (address << 8) | octet;
        }
        return parts == 4;
    }

    public static uint ToUInt32(IPAddress ip)
    {
        Span<byte> b = stackalloc byte[4];
        ip.TryWriteBytes(b, out _);
        return BinaryPrimitives.ReadUInt32BigEndian(b);
    }

    public static IPAddress ToIPAddress(uint address)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(b, address);
        return new IPAddress(b);
    }

    public static string Format(uint address) =>
        string.Create(CultureInfo.InvariantCulture, $"{address >> 24}.{(address >> 16) & 0xFF}.{(address >> 8) & 0xFF}.{address & 0xFF}");

    /// <summary>flannel's etcd key form: "10.244.1.0-24".</summary>
    public string ToKey() => string.Create(CultureInfo.InvariantCulture, $"{Format(Address)}-{Length}");

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Format(Address)}/{Length}");
}
