using System.Buffers.Binary;
using PacketDotNet;

namespace Dataplane.Encap.Tests;

public class IpHeaderTests
{
    [Fact]
    public void Ipv4_fields_are_read_as_PacketDotNet_reads_them()
    {
        byte[] p = TestPackets.Ipv4Echo();
        Assert.Equal(IpParseResult.Ok, Ipv4Header.TryRead(p, out Ipv4Header h));
        var reference = new IPv4Packet(new PacketDotNet.Utils.ByteArraySegment(p));
        Assert.Equal(reference.HeaderLength * 4, h.HeaderLength);
        Assert.Equal(reference.TotalLength, h.TotalLength);
        Assert.Equal(reference.Id, h.Identification);
        Assert.Equal(reference.TimeToLive, h.Ttl);
        Assert.Equal((byte)reference.Protocol, h.Protocol);
        Assert.Equal(reference.SourceAddress, Ipv4Prefix.ToIPAddress(h.Source));
        Assert.Equal(reference.DestinationAddress, Ipv4Prefix.ToIPAddress(h.Destination));
        Assert.True(h.DontFragment);
        Assert.False(h.IsFragment);
        Assert.Equal(0x0AF40907u, Ipv4Header.ReadDestination(p));
    }

    [Fact]
    public void Ipv4_write_produces_a_header_PacketDotNet_validates()
    {
        byte[] p = new byte[28];
        Ipv4Header.Write(p, 28, 0xBEEF, 0x2000 | 5, 17, Ipv4Header.ProtocolUdp, 0xC0000201, 0xC0000202);
        var reference = new IPv4Packet(new PacketDotNet.Utils.ByteArraySegment(p));
        Assert.True(reference.ValidIPChecksum);
        Assert.Equal(0xBEEF, reference.Id);
        Assert.Equal(40, reference.FragmentOffset * 8);
        Assert.Equal(17, reference.TimeToLive);
        Assert.Equal("192.0.2.1", reference.SourceAddress.ToString());
        Assert.Equal(IpParseResult.Ok, Ipv4Header.TryRead(p, out Ipv4Header h));
        Assert.True(h.MoreFragments);
        Assert.Equal(40, h.FragmentOffset);
        Assert.True(h.IsFragment);
    }

    [Fact]
    public void Ipv4_golden_vector()
    {
        // 45 00 0073 0000 4000 40 11 b861 c0a80001 c0a800c7 (+ 95 bytes of payload)
        byte[] p = new byte[0x73];
        Convert.FromHexString("450000730000400040110000c0a80001c0a800c7").CopyTo(p, 0);
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(10), 0xb861);
        Assert.Equal(IpParseResult.Ok, Ipv4Header.TryRead(p, out Ipv4Header h));
        Assert.Equal(0x73, h.TotalLength);
        Assert.Equal(0xC0A80001u, h.Source);
        Assert.Equal(0xC0A800C7u, h.Destination);
        Assert.Equal(17, h.Protocol);
        Assert.Equal(64, h.Ttl);
    }

    [Theory]
    [InlineData(0, IpParseResult.TooShort)]
    [InlineData(19, IpParseResult.TooShort)]
    public void Ipv4_refuses_short_buffers(int length, IpParseResult expected)
    {
        byte[] p = TestPackets.Ipv4Echo();
        Assert.Equal(expected, Ipv4Header.TryRead(p.AsSpan(0, length), out _));
    }

    [Fact]
    public void Ipv4_refuses_bad_version_length_and_checksum()
    {
        byte[] p = TestPackets.Ipv4Echo();
        byte[] v = (byte[])p.Clone();
        v[0] = 0x55;
        Assert.Equal(IpParseResult.BadVersion, Ipv4Header.TryRead(v, out _));

        byte[] ihl = (byte[])p.Clone();
        ihl[0] = 0x44; // 16-byte header
        Assert.Equal(IpParseResult.BadHeaderLength, Ipv4Header.TryRead(ihl, out _));
        ihl[0] = 0x4F; // a 60-byte header in a 40-byte buffer
        Assert.Equal(IpParseResult.BadHeaderLength, Ipv4Header.TryRead(ihl.AsSpan(0, 40), out _));

        byte[] total = (byte[])p.Clone();
        BinaryPrimitives.WriteUInt16BigEndian(total.AsSpan(2), (ushort)(p.Length + 1));
        Assert.Equal(IpParseResult.BadTotalLength, Ipv4Header.TryRead(total, out _, verifyChecksum: false));
        BinaryPrimitives.WriteUInt16BigEndian(total.AsSpan(2), 19);
        Assert.Equal(IpParseResult.BadTotalLength, Ipv4Header.TryRead(total, out _, verifyChecksum: false));

        byte[] sum = (byte[])p.Clone();
        sum[8] = 63; // TTL changed, checksum stale
        Assert.Equal(IpParseResult.BadHeaderChecksum, Ipv4Header.TryRead(sum, out _));
        Assert.Equal(IpParseResult.Ok, Ipv4Header.TryRead(sum, out _, verifyChecksum: false));
    }

    [Fact]
    public void Ipv4_total_length_shorter_than_buffer_is_accepted_padding()
    {
        byte[] p = TestPackets.Ipv4Echo();
        byte[] padded = [.. p, 0, 0, 0, 0];
        Assert.Equal(IpParseResult.Ok, Ipv4Header.TryRead(padded, out Ipv4Header h));
        Assert.Equal(p.Length, h.TotalLength);
    }

    [Fact]
    public void Ipv6_fields_are_read_as_PacketDotNet_reads_them()
    {
        byte[] p = TestPackets.Ipv6Echo();
        p[1] = 0xA5; // traffic class low nibble + flow label high bits
        p[2] = 0x43;
        p[3] = 0x21;
        Assert.Equal(IpParseResult.Ok, Ipv6Header.TryRead(p, out Ipv6Header h));
        var reference = new IPv6Packet(new PacketDotNet.Utils.ByteArraySegment(p));
        Assert.Equal(reference.PayloadLength, h.PayloadLength);
        Assert.Equal(reference.HopLimit, h.HopLimit);
        Assert.Equal((byte)reference.NextHeader, h.NextHeader);
        Assert.Equal(reference.FlowLabel, (int)h.FlowLabel);
        Assert.Equal(reference.TrafficClass, h.TrafficClass);
        Assert.Equal(UInt128.Parse("FD000000000000000000000000000001", System.Globalization.NumberStyles.HexNumber), h.Source);
        Assert.Equal(p.Length, h.TotalLength);
    }

    [Fact]
    public void Ipv6_refuses_short_bad_version_and_overlong_payload()
    {
        byte[] p = TestPackets.Ipv6Echo();
        Assert.Equal(IpParseResult.TooShort, Ipv6Header.TryRead(p.AsSpan(0, 39), out _));
        byte[] v = (byte[])p.Clone();
        v[0] = 0x40;
        Assert.Equal(IpParseResult.BadVersion, Ipv6Header.TryRead(v, out _));
        byte[] len = (byte[])p.Clone();
        BinaryPrimitives.WriteUInt16BigEndian(len.AsSpan(4), (ushort)(p.Length - 39));
        Assert.Equal(IpParseResult.BadTotalLength, Ipv6Header.TryRead(len, out _));
    }

    [Fact]
    public void Ipv6_write_round_trips()
    {
        byte[] p = new byte[48];
        UInt128 src = UInt128.Parse("fd000000000000000000000000000001", System.Globalization.NumberStyles.HexNumber);
        UInt128 dst = UInt128.Parse("fd000009000000000000000000000007", System.Globalization.NumberStyles.HexNumber);
        Ipv6Header.Write(p, 8, 58, 64, src, dst);
        Assert.Equal(IpParseResult.Ok, Ipv6Header.TryRead(p, out Ipv6Header h));
        Assert.Equal(src, h.Source);
        Assert.Equal(dst, h.Destination);
        Assert.Equal(8, h.PayloadLength);
        var reference = new IPv6Packet(new PacketDotNet.Utils.ByteArraySegment(p));
        Assert.Equal("fd00:9::7", reference.DestinationAddress.ToString());
    }

    [Fact]
    public void Garbage_is_refused_or_read_consistently()
    {
        var rng = new Random(42);
        byte[] buf = new byte[128];
        int v4Ok = 0, v6Ok = 0;
        for (int i = 0; i < 20_000; i++)
        {
            int len = rng.Next(0, buf.Length);
            rng.NextBytes(buf);
            if (i % 2 == 0)
            {
                buf[0] = (byte)(i % 4 == 0 ? 0x45 : 0x60);
                if (i % 4 == 0 && len >= 20)
                {
                    // A quarter of the inputs: a plausible header with a correct checksum, so the Ok branch is exercised.
                    System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(buf.AsSpan(2), (ushort)rng.Next(20, len + 1));
                    buf[10] = buf[11] = 0;
                    System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(buf.AsSpan(10), InternetChecksum.Compute(buf.AsSpan(0, 20)));
                }
                if (i % 4 == 2 && len >= 40)
                {
                    System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(buf.AsSpan(4), (ushort)rng.Next(0, len - 39));
                }
            }
            ReadOnlySpan<byte> input = buf.AsSpan(0, len);
            if (Ipv4Header.TryRead(input, out Ipv4Header v4) == IpParseResult.Ok)
            {
                v4Ok++;
                Assert.Equal(4, input[0] >> 4);
                Assert.InRange(v4.HeaderLength, 20, 60);
                Assert.InRange(v4.TotalLength, v4.HeaderLength, len);
                Assert.Equal(0, InternetChecksum.Compute(input[..v4.HeaderLength]));
            }
            if (Ipv6Header.TryRead(input, out Ipv6Header v6) == IpParseResult.Ok)
            {
                v6Ok++;
                Assert.Equal(6, input[0] >> 4);
                Assert.InRange(v6.TotalLength, 40, len);
            }
        }
        Assert.True(v4Ok > 1000 && v6Ok > 1000, $"only {v4Ok} IPv4 and {v6Ok} IPv6 inputs read: the consistency checks barely ran");
    }
}
