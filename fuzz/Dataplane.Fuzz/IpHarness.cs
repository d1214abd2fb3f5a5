using Dataplane.Encap;
using Dataplane.Encap.Offload;

using static Dataplane.Fuzz.Property;

namespace Dataplane.Fuzz;

/// <summary>
/// The packet views and the code that rewrites packets, on arbitrary bytes, writing into buffers
/// of the sizes the loops really give them (an ICMP slot of 1,280 bytes, a packet slot of 9,216),
/// and checking what comes out: it fits its slot, and its checksums verify. A violated property
/// is an exception, which AFL++ records as a crash. The segmenter: every payload byte comes out
/// once and in order, and every segment's lengths and checksums verify (<see cref="SegmentCheck"/>).
/// </summary>
internal static class IpHarness
{
    private const int PacketSlot = 9216; // EngineSettings.DefaultSlotSize less the headroom
    private static readonly byte[] IcmpSlot = new byte[IcmpErrors.Ipv6MaxErrorLength];
    private static readonly byte[] Out = new byte[PacketSlot];
    private static readonly GroCoalescer Coalescer = new(8, mergeUdp: true);
    // A superpacket of more segments is not segmented (a 1-byte gso_size over a long input): time, not coverage.
    private const int MaxSegmentsChecked = 1024;

    public static void Run(byte[] input)
    {
        if (Ipv4Header.TryRead(input, out Ipv4Header v4) == IpParseResult.Ok)
        {
            if (IcmpErrors.ShouldAnswerIpv4(input, v4))
            {
                int n = IcmpErrors.WriteIpv4NetUnreachable(IcmpSlot, input, v4, 0x0AF4_0900);
                Check(n is > 28 and <= IcmpErrors.Ipv4MaxErrorLength, $"an ICMP error of {n} bytes");
                Check(InternetChecksum.Compute(IcmpSlot.AsSpan(0, 20)) == 0, "the ICMP error's IP header checksum does not verify");
                Check(InternetChecksum.Compute(IcmpSlot.AsSpan(20, n - 20)) == 0, "the ICMP error's checksum does not verify");
            }
        }
        if (Ipv6Header.TryRead(input, out Ipv6Header v6) == IpParseResult.Ok && IcmpErrors.ShouldAnswerIpv6(input, v6))
        {
            int n = IcmpErrors.WriteIpv6NoRoute(IcmpSlot, input, v6, UInt128.One);
            Check(n is > 48 and <= IcmpErrors.Ipv6MaxErrorLength, $"an ICMPv6 error of {n} bytes");
            Check(System.Buffers.Binary.BinaryPrimitives.ReadUInt16BigEndian(IcmpSlot.AsSpan(4)) == n - 40, "the ICMPv6 error's payload length is not its length");
            ulong pseudo = InternetChecksum.PseudoHeaderIpv6(IcmpSlot.AsSpan(8, 16), IcmpSlot.AsSpan(24, 16), 58, n - 40);
            Check(InternetChecksum.Finish(InternetChecksum.Sum(IcmpSlot.AsSpan(40, n - 40), pseudo)) == 0, "the ICMPv6 error's checksum does not verify");
        }
        _ = VxlanFrame.Decapsulate(input, 1, new MacAddress(1), out _, out _, out _);
        CompleteUnfinished(input);
        SplitTunnelSuperpacket(input);
        _ = Arp.TryReadRequest(input, out _, out _, out _);
        if (input.Length > VirtioNetHeader.Length)
        {
            // The first 10 bytes as a virtio-net header, the rest as the packet it describes.
            var h = VirtioNetHeader.Read(input);
            byte[] packet = input[VirtioNetHeader.Length..];
            if (Segmenter.TryDescribe(packet, h, out int l4, out int hdrs, out int n) && hdrs + h.GsoSize <= PacketSlot && n <= MaxSegmentsChecked)
            {
                SegmentCheck.All(packet, h, l4, hdrs, n, Out);
            }
            Segmenter.FinishChecksum((byte[])packet.Clone(), h.ChecksumStart, h.ChecksumOffset);
            // And the coalescer on the input cut into pieces.
            Coalescer.Reset();
            int pieces = 0;
            for (int at = 0; at < packet.Length && pieces < 8; pieces++)
            {
                int len = Math.Min(packet.Length - at, 40 + (packet[at] % 200));
                Coalescer.Offer(packet.AsMemory(at, len), pieces, checksumUnfinished: (pieces & 1) == 1);
                at += len;
            }
            for (int i = 0; i < pieces; i++)
            {
                _ = Coalescer.Superpacket(i).Length;
            }
        }
    }

    /// <summary>Checksum completion: what is judged unfinished must verify once completed, and is then finished.</summary>
    private static void CompleteUnfinished(byte[] input)
    {
        byte[] ip = (byte[])input.Clone();
        if (!UnfinishedChecksum.IsUnfinished(ip, out int start, out int offset))
        {
            return;
        }
        if (!UnfinishedChecksum.Complete(ip, start, offset)
            || !UnfinishedChecksum.TryLocate(ip, out _, out _, out int length, out ulong pseudo)
            || InternetChecksum.Finish(InternetChecksum.Sum(ip.AsSpan(start, length), pseudo)) != 0
            || UnfinishedChecksum.IsUnfinished(ip, out _, out _))
        {
            throw new InvalidOperationException("a completed checksum does not verify");
        }
    }

    /// <summary>The input as a VXLAN payload (22-byte prefix): a tunnel superpacket is split into datagrams no larger than the MTU.</summary>
    private static void SplitTunnelSuperpacket(byte[] input)
    {
        int reported = input.Length > 0 ? input[^1] * 8 : 0;
        if (!TunnelSuperpacket.TryDescribe(input, 22, reported, 1450, out VirtioNetHeader h, out int l4, out int headers, out int n))
        {
            return;
        }
        for (int i = 0; i < Math.Min(n, 64); i++)
        {
            int len = TunnelSuperpacket.WriteDatagram(input, 22, h, l4, headers, i, Out);
            if (h.GsoType != VirtioNetHeader.GsoUdpL4 && len - 22 > 1450)
            {
                throw new InvalidOperationException($"a TCP segment of {len - 22} bytes exceeds the tunnel MTU");
            }
        }
    }
}
