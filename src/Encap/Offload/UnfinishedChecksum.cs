using System.Buffers.Binary;

namespace Dataplane.Encap.Offload;

/// <summary>
/// Inner TCP/UDP checksums a kernel peer left unfinished. A kernel VXLAN node whose underlay is a
/// veth or virtio device (a kind-style cluster, containers as nodes, VMs on one host) sends the
/// inner packet with CHECKSUM_PARTIAL that no NIC completes: the field holds the folded
/// pseudo-header sum (what <c>tcp_v4_send_check</c>/<c>udp4_hwcsum</c> leave for the hardware) and
/// the receiving pod's stack would drop the packet. Two kernel nodes never notice, because the
/// kernel keeps the checksum state with the packet; a userspace receiver has to recognise it.
///
/// Rule: a checksum that does not verify <b>and</b> equals the folded pseudo-header sum is
/// unfinished, and is completed (by the kernel through a virtio-net header, or here). A checksum
/// that is simply wrong is never "fixed". Checking costs one pseudo-header sum per TCP/UDP packet;
/// the whole-packet sum is computed only for packets whose field matches it.
/// </summary>
public static class UnfinishedChecksum
{
    /// <summary>Offset of the checksum field inside the TCP header (RFC 9293).</summary>
    public const int TcpChecksumOffset = 16;
    /// <summary>Offset of the checksum field inside the UDP header (RFC 768).</summary>
    public const int UdpChecksumOffset = 6;

    /// <summary>
    /// Where the checksum of a whole (unfragmented) TCP or UDP packet over IPv4 or IPv6 (no
    /// extension headers) lies: the L4 header's offset in the packet, the field's offset in the L4
    /// header, the L4 length, and the pseudo-header sum. False for anything else or anything short.
    /// The IP header is assumed checked (version, header length, total length).
    /// </summary>
    public static bool TryLocate(ReadOnlySpan<byte> ip, out int start, out int offset, out int length, out ulong pseudo)
    {
        start = offset = length = 0;
        pseudo = 0;
        if (ip.Length < Ipv4Header.MinLength)
        {
            return false;
        }
        byte protocol;
        switch (ip[0] >> 4)
        {
            case 4:
                if ((BinaryPrimitives.ReadUInt16BigEndian(ip[6..]) & 0x3FFF) != 0)
                {
                    return false; // a fragment (MF set or an offset): the checksum covers the whole datagram
                }
                start = (ip[0] & 0x0F) * 4;
                protocol = ip[Ipv4Header.ProtocolOffset];
                length = BinaryPrimitives.ReadUInt16BigEndian(ip[2..]) - start;
                if (length < 0 || start + length > ip.Length)
                {
                    return false;
                }
                pseudo = InternetChecksum.PseudoHeaderIpv4(BinaryPrimitives.ReadUInt32BigEndian(ip[12..]), BinaryPrimitives.ReadUInt32BigEndian(ip[16..]), protocol, length);
                break;
            case 6:
                if (ip.Length < Ipv6Header.Length)
                {
                    return false;
                }
                start = Ipv6Header.Length;
                protocol = ip[6];
                length = BinaryPrimitives.ReadUInt16BigEndian(ip[4..]);
                if (start + length > ip.Length)
                {
                    return false;
                }
                pseudo = InternetChecksum.PseudoHeaderIpv6(ip.Slice(8, 16), ip.Slice(24, 16), protocol, length);
                break;
            default:
                return false;
        }
        switch (protocol)
        {
            case Ipv4Header.ProtocolTcp when length >= 20:
                offset = TcpChecksumOffset;
                return true;
            case Ipv4Header.ProtocolUdp when length >= 8:
                offset = UdpChecksumOffset;
                return true;
            default:
                return false;
        }
    }

    /// <summary>
    /// True when the packet's TCP/UDP checksum was left unfinished: the field holds the folded
    /// pseudo-header sum and the packet does not verify. <paramref name="start"/> and
    /// <paramref name="offset"/> are then what <c>NEEDS_CSUM</c> or <see cref="Complete"/> needs.
    /// </summary>
    public static bool IsUnfinished(ReadOnlySpan<byte> ip, out int start, out int offset)
    {
        if (!TryLocate(ip, out start, out offset, out int length, out ulong pseudo))
        {
            return false;
        }
        ushort field = BinaryPrimitives.ReadUInt16BigEndian(ip[(start + offset)..]);
        if (field == 0 && offset == UdpChecksumOffset && ip[0] >> 4 == 4)
        {
            return false; // UDP over IPv4 without a checksum: nothing to finish
        }
        if (field != (ushort)~InternetChecksum.Finish(pseudo))
        {
            return false; // not the pseudo-header sum: finished (right or wrong), leave it
        }
        // The field matches the pseudo-header sum; it is unfinished unless it also happens to verify.
        return InternetChecksum.Finish(InternetChecksum.Sum(ip.Slice(start, length), pseudo)) != 0;
    }

    /// <summary>
    /// Completes an unfinished checksum in place, as the kernel does for <c>NEEDS_CSUM</c>: the sum
    /// over the L4 header and payload, seeded with the pseudo-header sum already in the field.
    /// UDP's 0 is sent as 0xFFFF (RFC 768). Returns false when the packet cannot carry one.
    /// </summary>
    public static bool Complete(Span<byte> ip, int start, int offset)
    {
        if (!TryLocate(ip, out int s, out int o, out int length, out _) || s != start || o != offset)
        {
            return false;
        }
        Span<byte> l4 = ip.Slice(start, length);
        ushort seed = BinaryPrimitives.ReadUInt16BigEndian(l4[offset..]);
        l4[offset] = l4[offset + 1] = 0;
        ushort sum = InternetChecksum.Finish(InternetChecksum.Sum(l4, seed));
        if (sum == 0 && offset == UdpChecksumOffset)
        {
            sum = 0xFFFF;
        }
        BinaryPrimitives.WriteUInt16BigEndian(l4[offset..], sum);
        return true;
    }
}
