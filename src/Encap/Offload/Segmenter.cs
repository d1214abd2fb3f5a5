using System.Buffers.Binary;

namespace Dataplane.Encap.Offload;

/// <summary>
/// Splits a segmentation-offload superpacket from a TUN (TSO for TCP over IPv4/IPv6, USO for UDP)
/// into ordinary packets of at most <c>GsoSize</c> payload bytes, as the kernel's own GSO would:
///   IPv4: total length, identification (+1 per segment) and header checksum per segment;
///   IPv6: payload length per segment;
///   TCP: sequence number advances by the payload; CWR only on the first segment, FIN and PSH
///        only on the last; the checksum is computed in full per segment, the payload summed in
///        the same pass that copies it;
///   UDP: its own header with the segment's length and a full checksum.
/// Also finishes the partial checksum of a non-segmented packet. Pure; no allocation.
/// </summary>
public static class Segmenter
{
    private const int TcpFlagsOffset = 13;
    private const byte TcpFin = 0x01, TcpPsh = 0x08, TcpCwr = 0x80;

    /// <summary>
    /// Checks a superpacket and describes it: where the L4 header starts, how long all headers
    /// are, and how many segments it makes. False for anything we cannot segment safely.
    /// </summary>
    public static bool TryDescribe(ReadOnlySpan<byte> packet, in VirtioNetHeader h, out int l4Start, out int headersLength, out int segments)
    {
        l4Start = headersLength = segments = 0;
        byte gso = (byte)(h.GsoType & ~VirtioNetHeader.GsoEcn);
        if (h.GsoSize == 0 || packet.Length < 20)
        {
            return false;
        }
        int version = packet[0] >> 4;
        if (version == 4)
        {
            l4Start = (packet[0] & 0x0F) * 4;
            if (l4Start < 20 || gso == VirtioNetHeader.GsoTcpV6)
            {
                return false;
            }
        }
        else if (version == 6)
        {
            l4Start = Ipv6Header.Length;
            if (gso == VirtioNetHeader.GsoTcpV4)
            {
                return false;
            }
        }
        else
        {
            return false;
        }
        if (h.ChecksumStart != l4Start)
        {
            return false; // extension headers or options we did not expect: refuse rather than guess
        }
        byte protocol = version == 4 ? packet[Ipv4Header.ProtocolOffset] : packet[Ipv6Header.NextHeaderOffset]; // no IPv6 extension headers: checked above
        if (gso is VirtioNetHeader.GsoTcpV4 or VirtioNetHeader.GsoTcpV6)
        {
            int tcpLength = packet.Length >= l4Start + 20 ? (packet[l4Start + 12] >> 4) * 4 : 0;
            if (protocol != Ipv4Header.ProtocolTcp || tcpLength < 20 || h.ChecksumOffset != 16)
            {
                return false;
            }
            headersLength = l4Start + tcpLength;
        }
        else if (gso == VirtioNetHeader.GsoUdpL4)
        {
            if (protocol != Ipv4Header.ProtocolUdp || h.ChecksumOffset != 6)
            {
                return false;
            }
            headersLength = l4Start + 8;
        }
        else
        {
            return false;
        }
        if (headersLength > packet.Length)
        {
            return false;
        }
        int payload = packet.Length - headersLength;
        segments = payload == 0 ? 1 : (payload + h.GsoSize - 1) / h.GsoSize;
        return true;
    }

    /// <summary>Writes segment <paramref name="index"/> of <paramref name="packet"/> into <paramref name="destination"/>; returns its length.</summary>
    public static int WriteSegment(ReadOnlySpan<byte> packet, in VirtioNetHeader h, int l4Start, int headersLength, int index, Span<byte> destination)
    {
        int payloadStart = headersLength + index * h.GsoSize;
        int payloadLength = Math.Min(h.GsoSize, packet.Length - payloadStart);
        if (payloadLength < 0)
        {
            payloadLength = 0;
        }
        int total = headersLength + payloadLength;
        packet[..headersLength].CopyTo(destination);
        if (destination.Length < total)
        {
            throw new ArgumentException("destination is shorter than the segment", nameof(destination));
        }
        // The payload is copied below, in the same pass as its checksum is summed.
        Span<byte> seg = destination[..total];
        bool v4 = seg[0] >> 4 == 4;
        byte proto;
        if (v4)
        {
            BinaryPrimitives.WriteUInt16BigEndian(seg[2..], (ushort)total);
            ushort id = BinaryPrimitives.ReadUInt16BigEndian(packet[4..]);
            BinaryPrimitives.WriteUInt16BigEndian(seg[4..], (ushort)(id + index));
            seg[10] = seg[11] = 0;
            BinaryPrimitives.WriteUInt16BigEndian(seg[10..], InternetChecksum.Compute(seg[..l4Start]));
            proto = seg[Ipv4Header.ProtocolOffset];
        }
        else
        {
            BinaryPrimitives.WriteUInt16BigEndian(seg[4..], (ushort)(total - Ipv6Header.Length));
            proto = seg[6];
        }
        Span<byte> l4 = seg[l4Start..];
        int checksumAt;
        if (proto == Ipv4Header.ProtocolTcp)
        {
            uint seq = BinaryPrimitives.ReadUInt32BigEndian(packet[(l4Start + 4)..]);
            BinaryPrimitives.WriteUInt32BigEndian(l4[4..], seq + (uint)(index * h.GsoSize));
            bool last = payloadStart + payloadLength >= packet.Length;
            if (index > 0)
            {
                l4[TcpFlagsOffset] &= unchecked((byte)~TcpCwr);
            }
            if (!last)
            {
                l4[TcpFlagsOffset] &= unchecked((byte)~(TcpFin | TcpPsh));
            }
            checksumAt = 16;
        }
        else
        {
            BinaryPrimitives.WriteUInt16BigEndian(l4[4..], (ushort)l4.Length);
            checksumAt = 6;
        }
        l4[checksumAt] = l4[checksumAt + 1] = 0;
        ulong sum = v4
            ? InternetChecksum.PseudoHeaderIpv4(BinaryPrimitives.ReadUInt32BigEndian(seg[12..]), BinaryPrimitives.ReadUInt32BigEndian(seg[16..]), proto, l4.Length)
            : InternetChecksum.PseudoHeaderIpv6(seg.Slice(8, 16), seg.Slice(24, 16), proto, l4.Length);
        // The L4 header's length is a multiple of 4 (TCP) or 8 (UDP): the payload's words line up.
        sum = InternetChecksum.Sum(l4[..(headersLength - l4Start)], sum);
        sum = InternetChecksum.CopyAndSum(packet.Slice(payloadStart, payloadLength), seg[headersLength..], sum);
        ushort checksum = InternetChecksum.Finish(sum);
        if (checksum == 0 && proto == Ipv4Header.ProtocolUdp)
        {
            checksum = 0xFFFF; // a computed zero is sent as all ones in UDP
        }
        BinaryPrimitives.WriteUInt16BigEndian(l4[checksumAt..], checksum);
        return total;
    }

    /// <summary>
    /// Finishes a partial checksum in place (<c>NEEDS_CSUM</c> without segmentation): the field
    /// holds the pseudo-header sum; the sum from <paramref name="start"/> to the end goes in it. A
    /// computed zero is written as 0xFFFF, as the kernel's skb_checksum_help does: UDP must (a zero
    /// there means "no checksum", which IPv6 refuses: the datagram would be dropped), and for TCP
    /// the two are the same ones' complement value.
    /// </summary>
    public static bool FinishChecksum(Span<byte> packet, int start, int offset)
    {
        int at = start + offset;
        if (start < 0 || at + 2 > packet.Length)
        {
            return false;
        }
        ushort initial = BinaryPrimitives.ReadUInt16BigEndian(packet[at..]);
        packet[at] = packet[at + 1] = 0;
        ushort checksum = InternetChecksum.Finish(InternetChecksum.Sum(packet[start..], initial));
        BinaryPrimitives.WriteUInt16BigEndian(packet[at..], checksum == 0 ? (ushort)0xFFFF : checksum);
        return true;
    }
}
