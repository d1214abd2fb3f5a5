using Dataplane.Encap;
using Dataplane.Encap.Offload;

namespace Dataplane.Fuzz;

/// <summary>The packet views and the code that rewrites packets, on arbitrary bytes.</summary>
internal static class IpHarness
{
    private static readonly byte[] Out = new byte[70_000];
    private static readonly TcpCoalescer Coalescer = new(8);

    public static void Run(byte[] input)
    {
        if (Ipv4Header.TryRead(input, out Ipv4Header v4) == IpParseResult.Ok)
        {
            if (IcmpErrors.ShouldAnswerIpv4(input, v4))
            {
                IcmpErrors.WriteIpv4NetUnreachable(Out, input, v4, 0x0AF4_0900);
            }
        }
        if (Ipv6Header.TryRead(input, out Ipv6Header v6) == IpParseResult.Ok && IcmpErrors.ShouldAnswerIpv6(input, v6))
        {
            IcmpErrors.WriteIpv6NoRoute(Out, input, v6, UInt128.One);
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
            if (Segmenter.TryDescribe(packet, h, out int l4, out int hdrs, out int n) && hdrs + h.GsoSize <= 9000)
            {
                for (int i = 0; i < Math.Min(n, 64); i++)
                {
                    Segmenter.WriteSegment(packet, h, l4, hdrs, i, Out);
                }
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
