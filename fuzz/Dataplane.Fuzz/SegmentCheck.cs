using System.Buffers.Binary;
using Dataplane.Encap;
using Dataplane.Encap.Offload;

using static Dataplane.Fuzz.Property;

namespace Dataplane.Fuzz;

/// <summary>
/// What a segmented superpacket must be, checked on every segment the segmenter writes: each
/// payload byte comes out once and in order (segment i carries bytes [i*gso_size, (i+1)*gso_size)
/// of the payload), the IP length field is the segment's, the TCP sequence number advances by the
/// bytes before it, and the TCP/UDP checksum verifies against the pseudo-header of the segment's
/// own addresses and length.
/// </summary>
internal static class SegmentCheck
{
    /// <summary>Segments <paramref name="packet"/> (TryDescribe accepted it) into <paramref name="scratch"/> and calls <paramref name="each"/> with every segment.</summary>
    public static void All(ReadOnlySpan<byte> packet, in VirtioNetHeader h, int l4, int headers, int segments, Span<byte> scratch, SegmentAction? each = null)
    {
        int payload = packet.Length - headers;
        int carried = 0;
        for (int i = 0; i < segments; i++)
        {
            int len = Segmenter.WriteSegment(packet, h, l4, headers, i, scratch);
            ReadOnlySpan<byte> seg = scratch[..len];
            int expected = Math.Min(h.GsoSize, payload - carried);
            Check(len == headers + Math.Max(expected, 0), $"segment {i} of {segments}: {len} bytes, expected headers {headers} + {expected}");
            Check(seg[headers..].SequenceEqual(packet.Slice(headers + carried, len - headers)), $"segment {i}'s payload is not bytes {carried}.. of the superpacket's");
            carried += len - headers;
            Lengths(seg, i);
            Check(L4ChecksumVerifies(seg, l4), $"segment {i}'s {(seg[l4 == 40 ? 6 : 9] == Ipv4Header.ProtocolTcp ? "TCP" : "UDP")} checksum does not verify");
            if (Protocol(seg) == Ipv4Header.ProtocolTcp)
            {
                uint seq0 = BinaryPrimitives.ReadUInt32BigEndian(packet[(l4 + 4)..]);
                Check(BinaryPrimitives.ReadUInt32BigEndian(seg[(l4 + 4)..]) == seq0 + (uint)(i * h.GsoSize), $"segment {i}'s sequence number");
            }
            each?.Invoke(i, seg);
        }
        Check(carried == payload, $"{carried} of {payload} payload bytes came out");
    }

    public delegate void SegmentAction(int index, ReadOnlySpan<byte> segment);

    public static byte Protocol(ReadOnlySpan<byte> ip) => ip[0] >> 4 == 4 ? ip[Ipv4Header.ProtocolOffset] : ip[Ipv6Header.NextHeaderOffset];

    /// <summary>The IPv4 total length (and a verifying header checksum) or the IPv6 payload length is the packet's.</summary>
    private static void Lengths(ReadOnlySpan<byte> seg, int i)
    {
        if (seg[0] >> 4 == 4)
        {
            Check(BinaryPrimitives.ReadUInt16BigEndian(seg[2..]) == seg.Length, $"segment {i}'s IPv4 total length");
            Check(InternetChecksum.Compute(seg[..((seg[0] & 0x0F) * 4)]) == 0, $"segment {i}'s IPv4 header checksum does not verify");
        }
        else
        {
            Check(BinaryPrimitives.ReadUInt16BigEndian(seg[4..]) == seg.Length - Ipv6Header.Length, $"segment {i}'s IPv6 payload length");
        }
    }

    /// <summary>The TCP or UDP checksum of a whole packet whose transport header starts at <paramref name="l4"/>, against its pseudo-header.</summary>
    public static bool L4ChecksumVerifies(ReadOnlySpan<byte> ip, int l4) =>
        InternetChecksum.Finish(InternetChecksum.Sum(ip[l4..], PseudoHeader(ip, l4))) == 0;

    public static ulong PseudoHeader(ReadOnlySpan<byte> ip, int l4) => ip[0] >> 4 == 4
        ? InternetChecksum.PseudoHeaderIpv4(BinaryPrimitives.ReadUInt32BigEndian(ip[12..]), BinaryPrimitives.ReadUInt32BigEndian(ip[16..]), Protocol(ip), ip.Length - l4)
        : InternetChecksum.PseudoHeaderIpv6(ip.Slice(8, 16), ip.Slice(24, 16), Protocol(ip), ip.Length - l4);
}
