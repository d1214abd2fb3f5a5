using System.Buffers.Binary;

namespace Dataplane.Encap;

/// <summary>Ethernet II header: destination MAC, source MAC, EtherType (14 bytes, no VLAN tag).</summary>
public static class EthernetHeader
{
    public const int Length = 14; // 6 destination + 6 source + 2 EtherType
    public const ushort EtherTypeIpv4 = 0x0800;
    public const ushort EtherTypeArp = 0x0806;
    public const ushort EtherTypeIpv6 = 0x86DD;

    public static void Write(Span<byte> destination, MacAddress dst, MacAddress src, ushort etherType)
    {
        dst.Write(destination);
        src.Write(destination[6..]);
        BinaryPrimitives.WriteUInt16BigEndian(destination[12..], etherType);
    }

    public static bool TryRead(ReadOnlySpan<byte> frame, out MacAddress dst, out MacAddress src, out ushort etherType)
    {
        if (frame.Length < Length)
        {
            dst = src = default;
            etherType = 0;
            return false;
        }
        dst = MacAddress.Read(frame);
        src = MacAddress.Read(frame[6..]);
        etherType = BinaryPrimitives.ReadUInt16BigEndian(frame[12..]);
        return true;
    }
}
