using System.Buffers.Binary;

namespace Dataplane.Encap;

/// <summary>
/// A validated IPv6 fixed header (RFC 8200). <see cref="TryRead"/> checks version and that the
/// payload length fits the buffer (jumbograms, payload length 0, are refused). Addresses are
/// big-endian <see cref="UInt128"/> values (the most significant byte is the first on the wire).
/// </summary>
public readonly struct Ipv6Header
{
    public const int Length = 40;
    /// <summary>Where the fields sit (RFC 8200 section 3), as <see cref="Ipv4Header"/> names its own.</summary>
    public const int PayloadLengthOffset = 4;
    public const int NextHeaderOffset = 6;
    public const int HopLimitOffset = 7;
    public const int SourceOffset = 8;
    public const int DestinationOffset = 24;
    public const byte NextHeaderIcmpv6 = 58;
    public const byte NextHeaderFragment = 44;

    public byte TrafficClass { get; init; }
    public uint FlowLabel { get; init; }
    public int PayloadLength { get; init; }
    public byte NextHeader { get; init; }
    public byte HopLimit { get; init; }
    public UInt128 Source { get; init; }
    public UInt128 Destination { get; init; }
    public int TotalLength => Length + PayloadLength;

    public static IpParseResult TryRead(ReadOnlySpan<byte> packet, out Ipv6Header header)
    {
        header = default;
        if (packet.Length < Length)
        {
            return IpParseResult.TooShort;
        }
        if (packet[0] >> 4 != 6)
        {
            return IpParseResult.BadVersion;
        }
        int payload = BinaryPrimitives.ReadUInt16BigEndian(packet[PayloadLengthOffset..]);
        if (Length + payload > packet.Length || (payload == 0 && packet[NextHeaderOffset] == 0))
        {
            // payload length 0 with a hop-by-hop header would be a jumbogram: not on this path.
            return IpParseResult.BadTotalLength;
        }
        uint first = BinaryPrimitives.ReadUInt32BigEndian(packet);
        header = new Ipv6Header
        {
            TrafficClass = (byte)(first >> 20),
            FlowLabel = first & 0xF_FFFF,
            PayloadLength = payload,
            NextHeader = packet[NextHeaderOffset],
            HopLimit = packet[HopLimitOffset],
            Source = BinaryPrimitives.ReadUInt128BigEndian(packet[SourceOffset..]),
            Destination = ReadDestination(packet),
        };
        return IpParseResult.Ok;
    }

    /// <summary>The destination address of a packet at least <see cref="Length"/> bytes long, without validating it (the outbound lookup).</summary>
    public static UInt128 ReadDestination(ReadOnlySpan<byte> packet) => BinaryPrimitives.ReadUInt128BigEndian(packet[DestinationOffset..]);

    public static void Write(Span<byte> destination, int payloadLength, byte nextHeader, byte hopLimit, UInt128 source, UInt128 dest)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination, 6u << 28);
        BinaryPrimitives.WriteUInt16BigEndian(destination[PayloadLengthOffset..], (ushort)payloadLength);
        destination[NextHeaderOffset] = nextHeader;
        destination[HopLimitOffset] = hopLimit;
        BinaryPrimitives.WriteUInt128BigEndian(destination[SourceOffset..], source);
        BinaryPrimitives.WriteUInt128BigEndian(destination[DestinationOffset..], dest);
    }
}
