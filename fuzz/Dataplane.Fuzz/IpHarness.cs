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
                Coalescer.Offer(packet.AsMemory(at, len), pieces);
                at += len;
            }
            for (int i = 0; i < pieces; i++)
            {
                _ = Coalescer.Superpacket(i).Length;
            }
        }
    }
}
