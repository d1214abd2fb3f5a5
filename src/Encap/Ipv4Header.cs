using System.Buffers.Binary;

namespace Dataplane.Encap;

/// <summary>
/// A validated IPv4 header (RFC 791). <see cref="TryRead"/> checks version, header length,
/// total length against the buffer and (optionally) the header checksum before any field is
/// trusted. Addresses are host-order <see cref="uint"/>s.
/// </summary>
public readonly struct Ipv4Header
{
    public const int MinLength = 20;
    /// <summary>Where the fields the loops read without a full parse sit (RFC 791 figure 4).</summary>
    public const int ProtocolOffset = 9;
    public const int SourceOffset = 12;
    public const int DestinationOffset = 16;
    public const byte ProtocolIcmp = 1;
    public const byte ProtocolTcp = 6;
    public const byte ProtocolUdp = 17;

    public int HeaderLength { get; init; }
    public int TotalLength { get; init; }
    public ushort Identification { get; init; }
    /// <summary>The 16-bit flags-and-fragment-offset field as on the wire.</summary>
    public ushort FlagsAndOffset { get; init; }
    public byte Ttl { get; init; }
    public byte Protocol { get; init; }
    public ushort HeaderChecksum { get; init; }
    public uint Source { get; init; }
    public uint Destination { get; init; }

    public bool DontFragment => (FlagsAndOffset & 0x4000) != 0;
    public bool MoreFragments => (FlagsAndOffset & 0x2000) != 0;
    /// <summary>Fragment offset in bytes.</summary>
    public int FragmentOffset => (FlagsAndOffset & 0x1FFF) * 8;
    public bool IsFragment => MoreFragments || FragmentOffset != 0;

    public static IpParseResult TryRead(ReadOnlySpan<byte> packet, out Ipv4Header header, bool verifyChecksum = true)
    {
        header = default;
        if (packet.Length < MinLength)
        {
            return IpParseResult.TooShort;
        }
        if (packet[0] >> 4 != 4)
        {
            return IpParseResult.BadVersion;
        }
        int ihl = (packet[0] & 0x0F) * 4;
        if (ihl < MinLength || ihl > packet.Length)
        {
            return IpParseResult.BadHeaderLength;
        }
        int total = BinaryPrimitives.ReadUInt16BigEndian(packet[2..]);
        if (total < ihl || total > packet.Length)
        {
            return IpParseResult.BadTotalLength;
        }
        if (verifyChecksum && InternetChecksum.Compute(packet[..ihl]) != 0)
        {
            return IpParseResult.BadHeaderChecksum;
        }
        header = new Ipv4Header
        {
            HeaderLength = ihl,
            TotalLength = total,
            Identification = BinaryPrimitives.ReadUInt16BigEndian(packet[4..]),
            FlagsAndOffset = BinaryPrimitives.ReadUInt16BigEndian(packet[6..]),
            Ttl = packet[8],
            Protocol = packet[ProtocolOffset],
            HeaderChecksum = BinaryPrimitives.ReadUInt16BigEndian(packet[10..]),
            Source = BinaryPrimitives.ReadUInt32BigEndian(packet[12..]),
            Destination = BinaryPrimitives.ReadUInt32BigEndian(packet[16..]),
        };
        return IpParseResult.Ok;
    }

    /// <summary>The destination address of a packet already known to be IPv4 and at least 20 bytes.</summary>
    public static uint ReadDestination(ReadOnlySpan<byte> packet) => BinaryPrimitives.ReadUInt32BigEndian(packet[DestinationOffset..]);

    /// <summary>
    /// Writes a 20-byte header without options and its checksum.
    /// </summary>
    public static void Write(Span<byte> destination, int totalLength, ushort identification, ushort flagsAndOffset,
        byte ttl, byte protocol, uint source, uint dest)
    {
        destination[0] = 0x45;
        destination[1] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(destination[2..], (ushort)totalLength);
        BinaryPrimitives.WriteUInt16BigEndian(destination[4..], identification);
        BinaryPrimitives.WriteUInt16BigEndian(destination[6..], flagsAndOffset);
        destination[8] = ttl;
        destination[ProtocolOffset] = protocol;
        destination[10] = 0;
        destination[11] = 0;
        BinaryPrimitives.WriteUInt32BigEndian(destination[12..], source);
        BinaryPrimitives.WriteUInt32BigEndian(destination[16..], dest);
        BinaryPrimitives.WriteUInt16BigEndian(destination[10..], InternetChecksum.Compute(destination[..MinLength]));
    }
}
