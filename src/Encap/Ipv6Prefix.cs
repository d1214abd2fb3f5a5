using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Dataplane.Encap;

/// <summary>An IPv6 network: the base address as a 128-bit big-endian number (host bits zero) and prefix length.</summary>
public readonly record struct Ipv6Prefix(UInt128 Address, int Length)
{
    public UInt128 Mask => Length == 0 ? UInt128.Zero : UInt128.MaxValue << (128 - Length);

    public bool Contains(UInt128 address) => (address & Mask) == Address;

    public bool Contains(Ipv6Prefix other) => other.Length >= Length && Contains(other.Address);

    /// <summary>Parses "2001:db8:244::/48", or flannel's key form "2001:db8:244:1::-64". Host bits must be zero.</summary>
    public static bool TryParse(string? text, [NotNullWhen(true)] out Ipv6Prefix? prefix)
    {
        prefix = null;
        if (text is null)
        {
            return false;
        }
        int sep = text.LastIndexOfAny(['/', '-']);
        if (sep <= 0
            || !TryParseAddress(text.AsSpan(0, sep), out UInt128 addr)
            || !int.TryParse(text.AsSpan(sep + 1), NumberStyles.None, CultureInfo.InvariantCulture, out int len)
            || len is < 0 or > 128)
        {
            return false;
        }
        var p = new Ipv6Prefix(addr, len);
        if ((addr & p.Mask) != addr)
        {
            return false;
        }
        prefix = p;
        return true;
    }

    /// <summary>An IPv6 address in any standard text form ("2001:db8::1"); no IPv4 address, no zone.</summary>
    public static bool TryParseAddress(ReadOnlySpan<char> text, out UInt128 address)
    {
        address = UInt128.Zero;
        if (text.Contains('%') || !text.Contains(':') || !IPAddress.TryParse(text, out IPAddress? ip) || ip.AddressFamily != AddressFamily.InterNetworkV6)
        {
            return false;
        }
        Span<byte> bytes = stackalloc byte[16];
        ip.TryWriteBytes(bytes, out _);
        address = System.Buffers.Binary.BinaryPrimitives.ReadUInt128BigEndian(bytes);
        return true;
    }

    /// <summary>The canonical text form of <paramref name="address"/> (RFC 5952, as Go and iproute2 print it).</summary>
    public static string Format(UInt128 address)
    {
        Span<byte> bytes = stackalloc byte[16];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt128BigEndian(bytes, address);
        return new IPAddress(bytes).ToString();
    }

    /// <summary>flannel's key form: <c>2001:db8:244:1::-64</c>.</summary>
    public string ToKey() => string.Create(CultureInfo.InvariantCulture, $"{Format(Address)}-{Length}");

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Format(Address)}/{Length}");
}
