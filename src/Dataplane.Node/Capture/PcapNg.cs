using System.Buffers;
using System.Buffers.Binary;
using System.Text;

namespace Dataplane.Capture;

/// <summary>
/// The pcapng blocks a capture writes (little-endian, as the IETF draft and Wireshark define them):
/// a section header, one interface description per side (raw IP, <c>LINKTYPE_RAW</c> 101, so both
/// the inner packets and the outer IPv4/UDP datagrams decode as IP), and an enhanced packet block
/// per packet with its direction (<c>epb_flags</c>) and, for a dropped one, the drop reason as the
/// packet comment (<c>opt_comment</c>). Timestamps in microseconds (the default resolution).
/// </summary>
internal static class PcapNg
{
    public const ushort LinkTypeRaw = 101;
    private const uint SectionHeaderType = 0x0A0D0D0A;
    private const uint InterfaceDescriptionType = 1;
    private const uint EnhancedPacketType = 6;
    private const uint ByteOrderMagic = 0x1A2B3C4D;
    private const ushort OptEnd = 0, OptComment = 1, OptIfName = 2, OptEpbFlags = 2;
    /// <summary>epb_flags bits 0-1: direction (1 inbound, 2 outbound).</summary>
    public const uint FlagInbound = 1, FlagOutbound = 2;

    public static void WriteSectionHeader(IBufferWriter<byte> w)
    {
        Span<byte> b = w.GetSpan(28);
        BinaryPrimitives.WriteUInt32LittleEndian(b, SectionHeaderType);
        BinaryPrimitives.WriteUInt32LittleEndian(b[4..], 28);
        BinaryPrimitives.WriteUInt32LittleEndian(b[8..], ByteOrderMagic);
        BinaryPrimitives.WriteUInt16LittleEndian(b[12..], 1); // major
        BinaryPrimitives.WriteUInt16LittleEndian(b[14..], 0); // minor
        BinaryPrimitives.WriteInt64LittleEndian(b[16..], -1); // section length: not given
        BinaryPrimitives.WriteUInt32LittleEndian(b[24..], 28);
        w.Advance(28);
    }

    public static void WriteInterface(IBufferWriter<byte> w, string name, int snapLength)
    {
        byte[] nameBytes = Encoding.UTF8.GetBytes(name);
        int options = 4 + Pad(nameBytes.Length) + 4;
        int length = 16 + options + 4;
        Span<byte> b = w.GetSpan(length);
        b[..length].Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(b, InterfaceDescriptionType);
        BinaryPrimitives.WriteUInt32LittleEndian(b[4..], (uint)length);
        BinaryPrimitives.WriteUInt16LittleEndian(b[8..], LinkTypeRaw);
        BinaryPrimitives.WriteUInt32LittleEndian(b[12..], (uint)snapLength);
        int at = 16;
        BinaryPrimitives.WriteUInt16LittleEndian(b[at..], OptIfName);
        BinaryPrimitives.WriteUInt16LittleEndian(b[(at + 2)..], (ushort)nameBytes.Length);
        nameBytes.CopyTo(b[(at + 4)..]);
        at += 4 + Pad(nameBytes.Length);
        BinaryPrimitives.WriteUInt16LittleEndian(b[at..], OptEnd); // and a zero length
        at += 4;
        BinaryPrimitives.WriteUInt32LittleEndian(b[at..], (uint)length);
        w.Advance(length);
    }

    /// <summary>One packet: <paramref name="data"/> as captured (perhaps cut to the snap length) of <paramref name="originalLength"/> bytes.</summary>
    public static void WritePacket(IBufferWriter<byte> w, int interfaceId, long microseconds, ReadOnlySpan<byte> data, int originalLength, uint flags, string? comment)
    {
        int commentLength = comment is null ? 0 : Encoding.UTF8.GetByteCount(comment);
        int options = 8 + (comment is null ? 0 : 4 + Pad(commentLength)) + 4;
        int length = 28 + Pad(data.Length) + options + 4;
        Span<byte> b = w.GetSpan(length);
        b[..length].Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(b, EnhancedPacketType);
        BinaryPrimitives.WriteUInt32LittleEndian(b[4..], (uint)length);
        BinaryPrimitives.WriteUInt32LittleEndian(b[8..], (uint)interfaceId);
        BinaryPrimitives.WriteUInt32LittleEndian(b[12..], (uint)((ulong)microseconds >> 32));
        BinaryPrimitives.WriteUInt32LittleEndian(b[16..], (uint)microseconds);
        BinaryPrimitives.WriteUInt32LittleEndian(b[20..], (uint)data.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(b[24..], (uint)originalLength);
        data.CopyTo(b[28..]);
        int at = 28 + Pad(data.Length);
        BinaryPrimitives.WriteUInt16LittleEndian(b[at..], OptEpbFlags);
        BinaryPrimitives.WriteUInt16LittleEndian(b[(at + 2)..], 4);
        BinaryPrimitives.WriteUInt32LittleEndian(b[(at + 4)..], flags);
        at += 8;
        if (comment is not null)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(b[at..], OptComment);
            BinaryPrimitives.WriteUInt16LittleEndian(b[(at + 2)..], (ushort)commentLength);
            Encoding.UTF8.GetBytes(comment, b[(at + 4)..]);
            at += 4 + Pad(commentLength);
        }
        at += 4; // opt_endofopt
        BinaryPrimitives.WriteUInt32LittleEndian(b[at..], (uint)length);
        w.Advance(length);
    }

    private static int Pad(int n) => (n + 3) & ~3;
}
