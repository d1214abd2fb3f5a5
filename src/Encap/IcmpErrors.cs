using System.Buffers.Binary;

namespace Dataplane.Encap;

/// <summary>
/// Builders for the "destination unreachable" errors a link sends back when it has nowhere to
/// put a packet: ICMPv4 type 3 code 0 (net unreachable, RFC 792) and ICMPv6 type 1 code 0
/// (no route to destination, RFC 4443). The rules of RFC 1122 3.2.2 / RFC 4443 2.4(e) decide
/// when not to answer: never about an ICMP error, a non-first fragment, or a packet to or from
/// a multicast, broadcast or unspecified address.
/// </summary>
public static class IcmpErrors
{
    public const byte Icmpv4DestinationUnreachable = 3;
    public const byte Icmpv4CodeNetUnreachable = 0;
    public const byte Icmpv6DestinationUnreachable = 1;
    public const byte Icmpv6CodeNoRoute = 0;
    public const int IcmpHeaderLength = 8;

    /// <summary>Linux quotes as much of the original as fits in 576 bytes (RFC 1812 4.3.2.3).</summary>
    public const int Ipv4MaxErrorLength = 576;
    /// <summary>An ICMPv6 error must fit the IPv6 minimum MTU (RFC 4443 2.4(c)).</summary>
    public const int Ipv6MaxErrorLength = 1280;

    public static bool ShouldAnswerIpv4(ReadOnlySpan<byte> original, in Ipv4Header header)
    {
        if (header.FragmentOffset != 0)
        {
            return false;
        }
        if (!IsUnicastIpv4(header.Source) || !IsUnicastIpv4(header.Destination))
        {
            return false;
        }
        if (header.Protocol == Ipv4Header.ProtocolIcmp)
        {
            // Only informational messages (echo, timestamp...) may draw an error.
            if (original.Length < header.HeaderLength + 1)
            {
                return false;
            }
            byte type = original[header.HeaderLength];
            return type is 0 or 8 or 13 or 14 or 15 or 16 or 17 or 18;
        }
        return true;
    }

    private static bool IsUnicastIpv4(uint a) =>
        a != 0 && a != uint.MaxValue && (a >> 28) != 0xE && (a >> 24) != 127 && (a >> 24) != 0;

    /// <summary>
    /// Writes a complete IPv4 packet carrying ICMP net-unreachable about <paramref name="original"/>
    /// from <paramref name="source"/> to the original's source. Returns the packet length.
    /// </summary>
    public static int WriteIpv4NetUnreachable(Span<byte> destination, ReadOnlySpan<byte> original, in Ipv4Header header, uint source)
    {
        int quoted = Math.Min(header.TotalLength, Ipv4MaxErrorLength - Ipv4Header.MinLength - IcmpHeaderLength);
        int icmpLength = IcmpHeaderLength + quoted;
        int total = Ipv4Header.MinLength + icmpLength;
        Span<byte> icmp = destination.Slice(Ipv4Header.MinLength, icmpLength);
        icmp[0] = Icmpv4DestinationUnreachable;
        icmp[1] = Icmpv4CodeNetUnreachable;
        icmp[2] = icmp[3] = 0; // checksum, set below
        BinaryPrimitives.WriteUInt32BigEndian(icmp[4..], 0); // unused
        original[..quoted].CopyTo(icmp[IcmpHeaderLength..]);
        BinaryPrimitives.WriteUInt16BigEndian(icmp[2..], InternetChecksum.Compute(icmp));
        Ipv4Header.Write(destination, total, identification: 0, flagsAndOffset: 0, ttl: 64,
            Ipv4Header.ProtocolIcmp, source, header.Source);
        return total;
    }

    public static bool ShouldAnswerIpv6(ReadOnlySpan<byte> original, in Ipv6Header header)
    {
        if (IsMulticastOrUnspecifiedIpv6(header.Source) || IsMulticastOrUnspecifiedIpv6(header.Destination))
        {
            return false;
        }
        byte next = header.NextHeader;
        int offset = Ipv6Header.Length;
        if (next == Ipv6Header.NextHeaderFragment)
        {
            if (original.Length < offset + 8)
            {
                return false;
            }
            int fragmentOffset = BinaryPrimitives.ReadUInt16BigEndian(original[(offset + 2)..]) & 0xFFF8;
            if (fragmentOffset != 0)
            {
                return false;
            }
            next = original[offset];
            offset += 8;
        }
        if (next == Ipv6Header.NextHeaderIcmpv6)
        {
            // Types below 128 are errors: never answer an error with an error.
            return original.Length > offset && original[offset] >= 128;
        }
        return true;
    }

    private static bool IsMulticastOrUnspecifiedIpv6(UInt128 a) => a == UInt128.Zero || (a >> 120) == 0xFF;

    /// <summary>
    /// Writes a complete IPv6 packet carrying ICMPv6 "no route to destination" about
    /// <paramref name="original"/> from <paramref name="source"/>. Returns the packet length.
    /// </summary>
    public static int WriteIpv6NoRoute(Span<byte> destination, ReadOnlySpan<byte> original, in Ipv6Header header, UInt128 source)
    {
        int quoted = Math.Min(header.TotalLength, Ipv6MaxErrorLength - Ipv6Header.Length - IcmpHeaderLength);
        int icmpLength = IcmpHeaderLength + quoted;
        Ipv6Header.Write(destination, icmpLength, Ipv6Header.NextHeaderIcmpv6, 64, source, header.Source);
        Span<byte> icmp = destination.Slice(Ipv6Header.Length, icmpLength);
        icmp[0] = Icmpv6DestinationUnreachable;
        icmp[1] = Icmpv6CodeNoRoute;
        icmp[2] = icmp[3] = 0;
        BinaryPrimitives.WriteUInt32BigEndian(icmp[4..], 0);
        original[..quoted].CopyTo(icmp[IcmpHeaderLength..]);
        ulong sum = InternetChecksum.PseudoHeaderIpv6(destination.Slice(8, 16), destination.Slice(24, 16),
            Ipv6Header.NextHeaderIcmpv6, icmpLength);
        BinaryPrimitives.WriteUInt16BigEndian(icmp[2..], InternetChecksum.Finish(InternetChecksum.Sum(icmp, sum)));
        return Ipv6Header.Length + icmpLength;
    }
}
