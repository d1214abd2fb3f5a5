using System.Buffers.Binary;
using PacketDotNet;

namespace Dataplane.Encap.Tests;

public class IcmpErrorTests
{
    [Fact]
    public void Ipv4_net_unreachable_is_a_valid_icmp_error_quoting_the_original()
    {
        byte[] original = TestPackets.Ipv4Echo(payload: 1000);
        Assert.Equal(IpParseResult.Ok, Ipv4Header.TryRead(original, out Ipv4Header h));
        Assert.True(IcmpErrors.ShouldAnswerIpv4(original, h));
        byte[] buf = new byte[600];
        int len = IcmpErrors.WriteIpv4NetUnreachable(buf, original, h, source: 0x0AF40900);
        Assert.Equal(576, len); // capped at 576 like Linux

        var ip = new IPv4Packet(new PacketDotNet.Utils.ByteArraySegment(buf[..len]));
        Assert.True(ip.ValidIPChecksum);
        Assert.Equal("10.244.9.0", ip.SourceAddress.ToString());
        Assert.Equal("10.244.1.2", ip.DestinationAddress.ToString());
        Assert.Equal(PacketDotNet.ProtocolType.Icmp, ip.Protocol);
        var icmp = ip.Extract<IcmpV4Packet>();
        Assert.Equal(IcmpV4TypeCode.UnreachableNet, icmp.TypeCode);
        Assert.True(icmp.ValidIcmpChecksum);
        Assert.Equal(0, TestPackets.NaiveChecksum(buf.AsSpan(20, len - 20)));
        // The quote starts with the original header: the sender's stack matches it to the socket.
        Assert.Equal(original.AsSpan(0, 28).ToArray(), buf.AsSpan(28, 28).ToArray());
    }

    [Fact]
    public void Ipv4_short_original_is_quoted_whole()
    {
        byte[] original = TestPackets.Ipv4Echo(payload: 0);
        Assert.Equal(IpParseResult.Ok, Ipv4Header.TryRead(original, out Ipv4Header h));
        byte[] buf = new byte[600];
        int len = IcmpErrors.WriteIpv4NetUnreachable(buf, original, h, 1);
        Assert.Equal(20 + 8 + 28, len);
    }

    [Fact]
    public void No_icmp_error_about_an_icmp_error_a_fragment_or_multicast()
    {
        byte[] error = TestPackets.Ipv4Echo(icmpType: 3);
        Assert.Equal(IpParseResult.Ok, Ipv4Header.TryRead(error, out Ipv4Header h));
        Assert.False(IcmpErrors.ShouldAnswerIpv4(error, h));

        byte[] fragment = TestPackets.Ipv4Echo(flagsAndOffset: 0x0010);
        Assert.Equal(IpParseResult.Ok, Ipv4Header.TryRead(fragment, out h));
        Assert.False(IcmpErrors.ShouldAnswerIpv4(fragment, h));

        byte[] firstFragment = TestPackets.Ipv4Echo(flagsAndOffset: 0x2000);
        Assert.Equal(IpParseResult.Ok, Ipv4Header.TryRead(firstFragment, out h));
        Assert.True(IcmpErrors.ShouldAnswerIpv4(firstFragment, h));

        byte[] multicast = TestPackets.Ipv4Echo(dst: 0xE0000001);
        Assert.Equal(IpParseResult.Ok, Ipv4Header.TryRead(multicast, out h));
        Assert.False(IcmpErrors.ShouldAnswerIpv4(multicast, h));

        byte[] fromZero = TestPackets.Ipv4Echo(src: 0);
        Assert.Equal(IpParseResult.Ok, Ipv4Header.TryRead(fromZero, out h));
        Assert.False(IcmpErrors.ShouldAnswerIpv4(fromZero, h));
    }

    [Fact]
    public void Ipv6_no_route_is_valid_with_pseudo_header_checksum()
    {
        byte[] original = TestPackets.Ipv6Echo(payload: 2000);
        Assert.Equal(IpParseResult.Ok, Ipv6Header.TryRead(original, out Ipv6Header h));
        Assert.True(IcmpErrors.ShouldAnswerIpv6(original, h));
        byte[] buf = new byte[1400];
        UInt128 src = h.Destination & (UInt128.MaxValue << 64);
        int len = IcmpErrors.WriteIpv6NoRoute(buf, original, h, src);
        Assert.Equal(1280, len);
        var ip = new IPv6Packet(new PacketDotNet.Utils.ByteArraySegment(buf[..len]));
        Assert.Equal("fd00:9::", ip.SourceAddress.ToString());
        Assert.Equal("fd00::1", ip.DestinationAddress.ToString());
        var icmp = ip.Extract<IcmpV6Packet>();
        Assert.Equal(IcmpV6Type.DestinationUnreachable, icmp.Type);
        Assert.Equal(0, icmp.Code);
        // Independent checksum: pseudo-header (src, dst, length, next header) + message sums to zero.
        byte[] pseudo = new byte[40 + len - 40];
        buf.AsSpan(8, 32).CopyTo(pseudo);
        BinaryPrimitives.WriteUInt32BigEndian(pseudo.AsSpan(32), (uint)(len - 40));
        pseudo[39] = 58;
        byte[] all = [.. pseudo.AsSpan(0, 40), .. buf.AsSpan(40, len - 40)];
        Assert.Equal(0, TestPackets.NaiveChecksum(all));
    }

    [Fact]
    public void No_icmpv6_error_about_an_error_or_multicast()
    {
        byte[] error = TestPackets.Ipv6Echo(icmpType: 1);
        Assert.Equal(IpParseResult.Ok, Ipv6Header.TryRead(error, out Ipv6Header h));
        Assert.False(IcmpErrors.ShouldAnswerIpv6(error, h));
        byte[] mcast = TestPackets.Ipv6Echo(dst: "ff02::1");
        Assert.Equal(IpParseResult.Ok, Ipv6Header.TryRead(mcast, out h));
        Assert.False(IcmpErrors.ShouldAnswerIpv6(mcast, h));
    }
}
