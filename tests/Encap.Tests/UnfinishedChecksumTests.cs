using System.Buffers.Binary;
using Dataplane.Encap.Offload;
using PacketDotNet;

namespace Dataplane.Encap.Tests;

/// <summary>
/// Golden packets captured from a kernel flannel.1 over a veth with default offloads (tshark on the
/// receiving end: "incorrect, should be 0x7e4d" for the SYN, 0x97f0 for the UDP datagram), and
/// checksums that are simply wrong, which must never be "completed".
/// </summary>
public class UnfinishedChecksumTests
{
    /// <summary>VXLAN payloads as captured (VXLAN header, Ethernet, IPv4): a TCP SYN 10.244.2.0:45432 -> 10.244.1.7:80.</summary>
    public const string KernelTcpSyn = "08000000000001000e005e0000010e005e00000208004500003c915b4000400690720af402000af40107b1780050d95bd6a600000000a002fd5c191d0000020405820402080a6f27e2a3000000000103030a";
    /// <summary>...and a UDP datagram 10.244.2.0:40000 -> 10.244.1.7:9999 "hello partial udp checksum".</summary>
    public const string KernelUdp = "08000000000001000e005e0000010e005e000002080045000036968a400040118b3e0af402000af401079c40270f0022192268656c6c6f207061727469616c2075647020636865636b73756d";

    private const int Inner = 8 + 14; // VXLAN + Ethernet

    private static byte[] InnerOf(string hex) => Convert.FromHexString(hex)[Inner..];

    [Theory]
    [InlineData(KernelTcpSyn, 20, 16, 0x191d, 0x7e4d)]
    [InlineData(KernelUdp, 20, 6, 0x1922, 0x97f0)]
    public void A_kernel_peers_partial_checksum_is_recognised_and_completed_to_what_tshark_expects(string hex, int start, int offset, int partial, int expected)
    {
        byte[] ip = InnerOf(hex);
        Assert.True(UnfinishedChecksum.IsUnfinished(ip, out int s, out int o));
        Assert.Equal((start, offset), (s, o));
        Assert.Equal(partial, BinaryPrimitives.ReadUInt16BigEndian(ip.AsSpan(s + o)));
        Assert.True(UnfinishedChecksum.Complete(ip, s, o));
        Assert.Equal(expected, BinaryPrimitives.ReadUInt16BigEndian(ip.AsSpan(s + o)));
        Assert.True(Verifies(ip));
        Assert.False(UnfinishedChecksum.IsUnfinished(ip, out _, out _)); // finished now
    }

    /// <summary>PacketDotNet, an independent reader, judges the transport checksum.</summary>
    private static bool Verifies(byte[] ip)
    {
        var segment = new PacketDotNet.Utils.ByteArraySegment(ip);
        IPPacket packet = ip[0] >> 4 == 6 ? new IPv6Packet(segment) : new IPv4Packet(segment);
        return packet.PayloadPacket switch
        {
            TcpPacket tcp => tcp.ValidChecksum,
            UdpPacket udp => udp.ValidChecksum,
            _ => false,
        };
    }

    [Theory]
    [InlineData(KernelTcpSyn, 16)]
    [InlineData(KernelUdp, 6)]
    public void A_checksum_that_is_simply_wrong_is_never_completed(string hex, int offset)
    {
        byte[] ip = InnerOf(hex);
        ip[20 + offset + 1] ^= 0x01; // neither the pseudo-header sum nor right
        Assert.False(UnfinishedChecksum.IsUnfinished(ip, out _, out _));
        byte[] payloadCorrupt = InnerOf(hex);
        UnfinishedChecksum.Complete(payloadCorrupt, 20, offset);
        payloadCorrupt[^1] ^= 0x10; // a right checksum, then the data changed: wrong, not partial
        Assert.False(UnfinishedChecksum.IsUnfinished(payloadCorrupt, out _, out _));
        Assert.False(Verifies(payloadCorrupt));
    }

    [Fact]
    public void Fragments_udp_without_checksum_and_other_protocols_are_left_alone()
    {
        byte[] fragment = InnerOf(KernelUdp);
        fragment[6] |= 0x20; // MF
        Assert.False(UnfinishedChecksum.IsUnfinished(fragment, out _, out _));
        byte[] noChecksum = InnerOf(KernelUdp);
        noChecksum[26] = noChecksum[27] = 0;
        Assert.False(UnfinishedChecksum.IsUnfinished(noChecksum, out _, out _));
        byte[] icmp = InnerOf(KernelUdp);
        icmp[9] = 1;
        Assert.False(UnfinishedChecksum.TryLocate(icmp, out _, out _, out _, out _));
        Assert.False(UnfinishedChecksum.IsUnfinished(InnerOf(KernelTcpSyn)[..30], out _, out _)); // cut short
    }

    [Theory]
    [InlineData(6)]
    [InlineData(17)]
    public void Ipv6_partial_checksums_are_completed_too(byte protocol)
    {
        // An IPv6 packet as a kernel peer would send it: the field holds the folded pseudo-header sum.
        int l4 = protocol == 6 ? 20 + 100 : 8 + 100;
        byte[] ip = new byte[40 + l4];
        ip[0] = 0x60;
        BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(4), (ushort)l4);
        ip[6] = protocol;
        ip[7] = 64;
        Convert.FromHexString("20010db8024400020000000000000005").CopyTo(ip, 8);
        Convert.FromHexString("20010db8024400010000000000000007").CopyTo(ip, 24);
        BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(40), 40000);
        BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(42), 9999);
        if (protocol == 6)
        {
            ip[40 + 12] = 5 << 4;
            ip[40 + 13] = 0x18;
        }
        else
        {
            BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(44), (ushort)l4);
        }
        for (int k = 40 + (protocol == 6 ? 20 : 8); k < ip.Length; k++)
        {
            ip[k] = (byte)(k * 7);
        }
        int offset = protocol == 6 ? 16 : 6;
        ulong pseudo = InternetChecksum.PseudoHeaderIpv6(ip.AsSpan(8, 16), ip.AsSpan(24, 16), protocol, l4);
        BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(40 + offset), (ushort)~InternetChecksum.Finish(pseudo));
        Assert.False(Verifies(ip));
        Assert.True(UnfinishedChecksum.IsUnfinished(ip, out int s, out int o));
        Assert.Equal((40, offset), (s, o));
        Assert.True(UnfinishedChecksum.Complete(ip, s, o));
        Assert.True(Verifies(ip));
    }

    /// <summary>
    /// A UDP/IPv6 datagram whose checksum computes to zero (one in 65,536: numbered datagrams met
    /// it within a few thousand), finished from the kernel's partial sum (NEEDS_CSUM, as a TUN or
    /// packet socket hands it over): written as 0xFFFF, never 0, which IPv6 receivers refuse as "no
    /// checksum" (the pod's kernel counted it in Udp6InErrors). The same through the completion of a
    /// kernel peer's unfinished checksum.
    /// </summary>
    [Fact]
    public void A_udp_checksum_that_computes_to_zero_is_written_as_all_ones()
    {
        byte[] ip = ZeroChecksumUdp6(out ushort seed);
        ip.AsSpan(40 + 6, 2).Clear();
        BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(40 + 6), seed);
        Assert.True(Segmenter.FinishChecksum(ip, 40, 6));
        Assert.Equal(0xFFFF, BinaryPrimitives.ReadUInt16BigEndian(ip.AsSpan(40 + 6)));
        Assert.True(Verifies(ip));

        byte[] unfinished = ZeroChecksumUdp6(out seed);
        BinaryPrimitives.WriteUInt16BigEndian(unfinished.AsSpan(40 + 6), seed);
        Assert.True(UnfinishedChecksum.Complete(unfinished, 40, 6));
        Assert.Equal(0xFFFF, BinaryPrimitives.ReadUInt16BigEndian(unfinished.AsSpan(40 + 6)));
        Assert.True(Verifies(unfinished));
    }

    /// <summary>
    /// A UDP/IPv6 datagram (2001:db8:244:2::2 to 2001:db8:244:1::2, 64 bytes of payload) whose last
    /// payload word is chosen so that its checksum computes to 0; <paramref name="seed"/> is the
    /// pseudo-header sum a kernel leaves in the field for NEEDS_CSUM.
    /// </summary>
    private static byte[] ZeroChecksumUdp6(out ushort seed)
    {
        byte[] ip = new byte[40 + 8 + 64];
        ip[0] = 0x60;
        BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(4), 8 + 64);
        ip[6] = 17;
        ip[7] = 64;
        Convert.FromHexString("20010db8024400020000000000000002").CopyTo(ip, 8);
        Convert.FromHexString("20010db8024400010000000000000002").CopyTo(ip, 24);
        BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(40), 40000);
        BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(42), 5402);
        BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(44), 8 + 64);
        BinaryPrimitives.WriteInt32BigEndian(ip.AsSpan(48), 2020); // a datagram's number, as pod-udp-send writes it
        ulong pseudo = InternetChecksum.PseudoHeaderIpv6(ip.AsSpan(8, 16), ip.AsSpan(24, 16), 17, 8 + 64);
        seed = (ushort)~InternetChecksum.Finish(pseudo);
        for (int word = 0; word <= 0xFFFF; word++)
        {
            BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(ip.Length - 2), (ushort)word);
            if (InternetChecksum.Finish(InternetChecksum.Sum(ip.AsSpan(40), pseudo)) == 0)
            {
                return ip;
            }
        }
        throw new InvalidOperationException("no payload word makes the checksum zero");
    }
}
