using System.Buffers.Binary;

namespace Dataplane.Encap;

/// <summary>
/// The 8-byte VXLAN header (RFC 7348): flags (0x08 = VNI valid), 24 reserved bits, the 24-bit
/// VNI, 8 reserved bits. A kernel vxlan device drops anything whose flags byte is not exactly
/// 0x08 or whose reserved bits are set, and so do we.
/// </summary>
public static class VxlanHeader
{
    public const int Length = 8;
    public const byte FlagVniValid = 0x08;
    public const uint MaxVni = 0xFF_FFFF;

    public static void Write(Span<byte> destination, uint vni)
    {
        // flags, 3 reserved bytes | VNI (3 bytes), 1 reserved byte
        BinaryPrimitives.WriteUInt32BigEndian(destination, (uint)FlagVniValid << 24);
        BinaryPrimitives.WriteUInt32BigEndian(destination[4..], vni << 8);
    }

    /// <summary>Reads the VNI; <see cref="VxlanDecapResult.TooShort"/> or <see cref="VxlanDecapResult.BadFlags"/> (flags other than exactly 0x08, or a reserved bit set) otherwise.</summary>
    public static VxlanDecapResult TryRead(ReadOnlySpan<byte> datagram, out uint vni)
    {
        vni = 0;
        if (datagram.Length < Length)
        {
            return VxlanDecapResult.TooShort;
        }
        uint word0 = BinaryPrimitives.ReadUInt32BigEndian(datagram);
        uint word1 = BinaryPrimitives.ReadUInt32BigEndian(datagram[4..]);
        if (word0 != (uint)FlagVniValid << 24 || (word1 & 0xFF) != 0)
        {
            return VxlanDecapResult.BadFlags;
        }
        vni = word1 >> 8;
        return VxlanDecapResult.Ok;
    }
}
