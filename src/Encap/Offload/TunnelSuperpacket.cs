using System.Buffers.Binary;

namespace Dataplane.Encap.Offload;

/// <summary>
/// A datagram from a kernel VXLAN peer that carries a whole inner superpacket. When the peer's
/// underlay is a veth or virtio device, its flannel.1 hands the device a GSO skb (an inner TCP or
/// UDP superpacket of up to 64 KiB, encapsulated once) and the device never segments it; arriving
/// at our UDP socket it is one datagram larger than the tunnel MTU, with one set of inner headers
/// and the inner checksum unfinished. Written to the TUN as it is, the pod could not take it.
///
/// It is recognised by its inner IP length: the inner packet fills the whole datagram and is larger
/// than an ordinary one (a run of datagrams glued by UDP GRO never looks like this: its first
/// datagram's inner length is one segment's). It is split, as the peer's NIC would have split it,
/// into ordinary datagrams: the encapsulation prefix copied, then each inner segment with its own
/// lengths, IP ID, TCP sequence and flags and a complete checksum (<see cref="Segmenter"/>).
/// </summary>
public static class TunnelSuperpacket
{
    /// <summary>
    /// Describes <paramref name="message"/> (a UDP payload: <paramref name="prefix"/> bytes of
    /// encapsulation, 22 for VXLAN, then the inner IP packet) as a tunnel superpacket, or false.
    /// <paramref name="gsoSize"/> is the segment size the kernel reported (UDP_GRO control message),
    /// 0 when it reported none: segments then fill <paramref name="maxInner"/> (the tunnel MTU).
    /// </summary>
    public static bool TryDescribe(ReadOnlySpan<byte> message, int prefix, int gsoSize, int maxInner,
        out VirtioNetHeader header, out int l4Start, out int headersLength, out int segments)
    {
        header = default;
        l4Start = headersLength = segments = 0;
        if (prefix < 0 || message.Length - prefix <= maxInner || message.Length - prefix < Ipv6Header.Length)
        {
            return false;
        }
        ReadOnlySpan<byte> inner = message[prefix..];
        int version = inner[0] >> 4;
        int innerLength = version switch
        {
            4 => BinaryPrimitives.ReadUInt16BigEndian(inner[2..]),
            6 => Ipv6Header.Length + BinaryPrimitives.ReadUInt16BigEndian(inner[4..]),
            _ => -1,
        };
        if (innerLength != inner.Length)
        {
            return false; // not one inner packet filling the datagram
        }
        if (!UnfinishedChecksum.TryLocate(inner, out int start, out int offset, out _, out _))
        {
            return false; // not TCP or UDP, or a fragment: nothing we may segment
        }
        bool tcp = offset == UnfinishedChecksum.TcpChecksumOffset;
        if (!tcp && gsoSize == 0)
        {
            return false; // a large UDP datagram the kernel did not mark as a superpacket: its boundaries are the application's
        }
        int l4Header = tcp ? (inner[start + 12] >> 4) * 4 : 8;
        byte gsoType = tcp ? (version == 4 ? VirtioNetHeader.GsoTcpV4 : VirtioNetHeader.GsoTcpV6) : VirtioNetHeader.GsoUdpL4;
        // TCP segments fill at most the tunnel MTU (smaller than the sender's MSS is harmless to TCP);
        // UDP segments keep the size the kernel reported: their boundaries are the application's.
        int fit = maxInner - start - l4Header;
        int size = gsoSize <= 0 ? fit : tcp ? Math.Min(gsoSize, fit) : gsoSize;
        if (size <= 0)
        {
            return false;
        }
        header = new VirtioNetHeader(VirtioNetHeader.FlagNeedsChecksum, gsoType, (ushort)(start + l4Header), (ushort)size, (ushort)start, (ushort)offset);
        return Segmenter.TryDescribe(inner, header, out l4Start, out headersLength, out segments);
    }

    /// <summary>Writes datagram <paramref name="index"/>: the prefix, then inner segment <paramref name="index"/>. Returns its length.</summary>
    public static int WriteDatagram(ReadOnlySpan<byte> message, int prefix, in VirtioNetHeader header, int l4Start, int headersLength, int index, Span<byte> destination)
    {
        message[..prefix].CopyTo(destination);
        return prefix + Segmenter.WriteSegment(message[prefix..], header, l4Start, headersLength, index, destination[prefix..]);
    }
}
