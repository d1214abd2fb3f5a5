using System.Buffers.Binary;
using Dataplane.Encap.Offload;
using PacketDotNet;

namespace Dataplane.Encap.Tests;

public class OffloadTests
{
    private const uint Src = 0x0AF40102, Dst = 0x0AF40202;

    /// <summary>A TCP/IPv4 superpacket as a TUN hands it over: checksum field holds the pseudo-header sum (NEEDS_CSUM).</summary>
    private static (byte[] Packet, VirtioNetHeader Header) TcpSuperpacket(int payload, int mss = 1400, byte flags = 0x18, int options = 12, uint seq = 1000)
    {
        int tcpLen = 20 + options;
        byte[] p = new byte[20 + tcpLen + payload];
        Ipv4Header.Write(p, p.Length, 0x1000, 0x4000, 64, Ipv4Header.ProtocolTcp, Src, Dst);
        Span<byte> t = p.AsSpan(20);
        BinaryPrimitives.WriteUInt16BigEndian(t, 40000);
        BinaryPrimitives.WriteUInt16BigEndian(t[2..], 5201);
        BinaryPrimitives.WriteUInt32BigEndian(t[4..], seq);
        BinaryPrimitives.WriteUInt32BigEndian(t[8..], 777);
        t[12] = (byte)(tcpLen / 4 << 4);
        t[13] = flags;
        BinaryPrimitives.WriteUInt16BigEndian(t[14..], 512);
        for (int i = 0; i < options; i++)
        {
            t[20 + i] = i % 4 == 0 ? (byte)1 : (byte)(i * 7); // NOPs and bytes
        }
        for (int i = 0; i < payload; i++)
        {
            p[20 + tcpLen + i] = (byte)(i * 31 + 7);
        }
        ulong pseudo = InternetChecksum.PseudoHeaderIpv4(Src, Dst, 6, tcpLen + payload);
        BinaryPrimitives.WriteUInt16BigEndian(t[16..], (ushort)~InternetChecksum.Finish(pseudo));
        var h = new VirtioNetHeader(VirtioNetHeader.FlagNeedsChecksum, VirtioNetHeader.GsoTcpV4, (ushort)(20 + tcpLen), (ushort)mss, 20, 16);
        return (p, h);
    }

    private static List<byte[]> Split(byte[] p, VirtioNetHeader h)
    {
        Assert.True(Segmenter.TryDescribe(p, h, out int l4, out int hdrs, out int n));
        var segments = new List<byte[]>();
        byte[] buf = new byte[2048];
        for (int i = 0; i < n; i++)
        {
            int len = Segmenter.WriteSegment(p, h, l4, hdrs, i, buf);
            segments.Add(buf[..len]);
        }
        return segments;
    }

    [Fact]
    public void Tso_split_makes_valid_segments_as_the_kernel_would()
    {
        var (p, h) = TcpSuperpacket(10_000, flags: 0x18 | 0x80 | 0x01); // ACK PSH CWR FIN
        List<byte[]> segs = Split(p, h);
        Assert.Equal(8, segs.Count); // 7 x 1400 + 200
        var payload = new List<byte>();
        for (int i = 0; i < segs.Count; i++)
        {
            var ip = new IPv4Packet(new PacketDotNet.Utils.ByteArraySegment(segs[i]));
            Assert.True(ip.ValidIPChecksum, $"segment {i} IP checksum");
            Assert.Equal(segs[i].Length, ip.TotalLength);
            Assert.Equal(0x1000 + i, ip.Id);
            var tcp = ip.Extract<TcpPacket>();
            Assert.True(tcp.ValidTcpChecksum, $"segment {i} TCP checksum");
            Assert.Equal(1000u + (uint)(i * 1400), tcp.SequenceNumber);
            Assert.Equal(i == 0, tcp.CongestionWindowReduced);
            Assert.Equal(i == segs.Count - 1, tcp.Push);
            Assert.Equal(i == segs.Count - 1, tcp.Finished);
            Assert.True(tcp.Acknowledgment);
            Assert.Equal(i < 7 ? 1400 : 200, tcp.PayloadData.Length);
            payload.AddRange(tcp.PayloadData);
        }
        Assert.Equal(p[52..], payload.ToArray());
    }

    [Fact]
    public void Tso_split_of_tcp_over_ipv6()
    {
        int payload = 3000;
        byte[] p = new byte[40 + 20 + payload];
        UInt128 s = UInt128.Parse("fd000000000000000000000000000001", System.Globalization.NumberStyles.HexNumber);
        UInt128 d = UInt128.Parse("fd000000000000000000000000000002", System.Globalization.NumberStyles.HexNumber);
        Ipv6Header.Write(p, 20 + payload, 6, 64, s, d);
        p[40 + 12] = 0x50;
        p[40 + 13] = 0x10;
        for (int i = 0; i < payload; i++)
        {
            p[60 + i] = (byte)i;
        }
        var h = new VirtioNetHeader(1, VirtioNetHeader.GsoTcpV6, 60, 1200, 40, 16);
        List<byte[]> segs = Split(p, h);
        Assert.Equal(3, segs.Count);
        foreach (byte[] seg in segs)
        {
            var ip = new IPv6Packet(new PacketDotNet.Utils.ByteArraySegment(seg));
            Assert.Equal(seg.Length - 40, ip.PayloadLength);
            Assert.True(ip.Extract<TcpPacket>().ValidTcpChecksum);
        }
    }

    [Fact]
    public void Uso_split_gives_udp_datagrams_with_their_own_length_and_checksum()
    {
        int payload = 4000;
        byte[] p = new byte[28 + payload];
        Ipv4Header.Write(p, p.Length, 9, 0, 64, Ipv4Header.ProtocolUdp, Src, Dst);
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(20), 5000);
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(22), 6000);
        new Random(3).NextBytes(p.AsSpan(28));
        var h = new VirtioNetHeader(1, VirtioNetHeader.GsoUdpL4, 28, 1000, 20, 6);
        List<byte[]> segs = Split(p, h);
        Assert.Equal(4, segs.Count);
        for (int i = 0; i < 4; i++)
        {
            var ip = new IPv4Packet(new PacketDotNet.Utils.ByteArraySegment(segs[i]));
            Assert.True(ip.ValidIPChecksum);
            var udp = ip.Extract<UdpPacket>();
            Assert.Equal(1008, udp.Length);
            Assert.True(udp.ValidUdpChecksum);
            Assert.Equal(p.AsSpan(28 + i * 1000, 1000).ToArray(), udp.PayloadData);
        }
    }

    [Fact]
    public void Describe_refuses_what_it_cannot_segment()
    {
        var (p, h) = TcpSuperpacket(3000);
        Assert.False(Segmenter.TryDescribe(p, h with { GsoSize = 0 }, out _, out _, out _));
        Assert.False(Segmenter.TryDescribe(p, h with { ChecksumStart = 24 }, out _, out _, out _));
        Assert.False(Segmenter.TryDescribe(p, h with { GsoType = VirtioNetHeader.GsoTcpV6 }, out _, out _, out _));
        Assert.False(Segmenter.TryDescribe(p, h with { GsoType = VirtioNetHeader.GsoUdp }, out _, out _, out _));
        Assert.False(Segmenter.TryDescribe(p.AsSpan(0, 30), h, out _, out _, out _));
        Assert.False(Segmenter.TryDescribe([0x75, .. p[1..]], h, out _, out _, out _));
        // Found by the fuzzer: a header that does not match the packet it describes.
        Assert.False(Segmenter.TryDescribe(p, h with { GsoType = VirtioNetHeader.GsoUdpL4, ChecksumOffset = 6 }, out _, out _, out _)); // TCP packet, USO header
        Assert.False(Segmenter.TryDescribe(p, h with { ChecksumOffset = 6 }, out _, out _, out _));
        byte[] icmp = (byte[])p.Clone();
        icmp[9] = Ipv4Header.ProtocolIcmp;
        Assert.False(Segmenter.TryDescribe(icmp, h, out _, out _, out _));
        byte[] shortTcp = (byte[])p.Clone();
        shortTcp[32] = 0x10; // data offset 1: a 4-byte TCP header
        Assert.False(Segmenter.TryDescribe(shortTcp, h, out _, out _, out _));
    }

    [Fact]
    public void Finish_checksum_completes_a_partial_one()
    {
        var (p, h) = TcpSuperpacket(500);
        Assert.True(Segmenter.FinishChecksum(p, h.ChecksumStart, h.ChecksumOffset));
        var tcp = new IPv4Packet(new PacketDotNet.Utils.ByteArraySegment(p)).Extract<TcpPacket>();
        Assert.True(tcp.ValidTcpChecksum);
        Assert.False(Segmenter.FinishChecksum(p, p.Length, 16));
    }

    /// <summary>A TCP/IPv6 superpacket as a TUN hands it over (no extension headers, NEEDS_CSUM), flow label 0x12345.</summary>
    private static (byte[] Packet, VirtioNetHeader Header) Tcp6Superpacket(int payload, int mss = 1380, int options = 12, uint seq = 1000)
    {
        int tcpLen = 20 + options;
        byte[] p = new byte[40 + tcpLen + payload];
        UInt128 s = UInt128.Parse("20010db8024400010000000000000002", System.Globalization.NumberStyles.HexNumber);
        UInt128 d = UInt128.Parse("20010db8024400020000000000000002", System.Globalization.NumberStyles.HexNumber);
        Ipv6Header.Write(p, tcpLen + payload, Ipv4Header.ProtocolTcp, 64, s, d);
        BinaryPrimitives.WriteUInt32BigEndian(p, (6u << 28) | 0x12345);
        Span<byte> t = p.AsSpan(40);
        BinaryPrimitives.WriteUInt16BigEndian(t, 40000);
        BinaryPrimitives.WriteUInt16BigEndian(t[2..], 5201);
        BinaryPrimitives.WriteUInt32BigEndian(t[4..], seq);
        BinaryPrimitives.WriteUInt32BigEndian(t[8..], 777);
        t[12] = (byte)(tcpLen / 4 << 4);
        t[13] = 0x18;
        BinaryPrimitives.WriteUInt16BigEndian(t[14..], 512);
        for (int i = 0; i < options; i++)
        {
            t[20 + i] = i % 4 == 0 ? (byte)1 : (byte)(i * 7);
        }
        for (int i = 0; i < payload; i++)
        {
            p[40 + tcpLen + i] = (byte)(i * 13 + 5);
        }
        ulong pseudo = InternetChecksum.PseudoHeaderIpv6(p.AsSpan(8, 16), p.AsSpan(24, 16), Ipv4Header.ProtocolTcp, tcpLen + payload);
        BinaryPrimitives.WriteUInt16BigEndian(t[16..], (ushort)~InternetChecksum.Finish(pseudo));
        return (p, new VirtioNetHeader(VirtioNetHeader.FlagNeedsChecksum, VirtioNetHeader.GsoTcpV6, (ushort)(40 + tcpLen), (ushort)mss, 40, 16));
    }

    [Fact]
    public void Coalescing_the_segments_of_an_ipv6_superpacket_gives_it_back()
    {
        var (p, h) = Tcp6Superpacket(20_000);
        List<byte[]> segs = Split(p, h);
        var c = new GroCoalescer(64);
        c.Reset();
        for (int i = 0; i < segs.Count; i++)
        {
            Assert.Equal(i > 0, c.Offer(segs[i], i));
        }
        Assert.Equal(segs.Count - 1, c.Merged);
        byte[] sp = c.Superpacket(0).ToArray();
        Assert.Equal(new VirtioNetHeader(VirtioNetHeader.FlagNeedsChecksum, VirtioNetHeader.GsoTcpV6, 72, 1380, 40, 16), VirtioNetHeader.Read(sp));
        byte[] merged = sp[VirtioNetHeader.Length..];
        Assert.Equal(p.Length, merged.Length);
        Assert.True(Segmenter.FinishChecksum(merged, 40, 16));
        Assert.True(Segmenter.FinishChecksum(p, 40, 16));
        var ip = new IPv6Packet(new PacketDotNet.Utils.ByteArraySegment(merged));
        Assert.Equal(merged.Length - 40, ip.PayloadLength);
        Assert.True(ip.Extract<TcpPacket>().ValidTcpChecksum);
        Assert.Equal(p, merged); // byte for byte the superpacket the segments came from
    }

    [Theory]
    [InlineData("flow label")]
    [InlineData("hop limit")]
    [InlineData("address")]
    [InlineData("extension header")]
    public void Ipv6_segments_that_the_kernel_would_not_merge_are_not(string difference)
    {
        var (p, h) = Tcp6Superpacket(4000);
        List<byte[]> segs = Split(p, h);
        byte[] second = segs[1];
        switch (difference)
        {
            case "flow label": second[3] ^= 1; break;
            case "hop limit": second[7] = 63; break;
            case "address": second[39] ^= 1; break;
            case "extension header": second[6] = 0; break; // hop-by-hop options first: not a plain TCP segment
        }
        if (difference is "address")
        {
            // keep its TCP checksum right for the changed pseudo-header
            second[40 + 16] = second[40 + 17] = 0;
            ulong pseudo = InternetChecksum.PseudoHeaderIpv6(second.AsSpan(8, 16), second.AsSpan(24, 16), 6, second.Length - 40);
            BinaryPrimitives.WriteUInt16BigEndian(second.AsSpan(40 + 16), InternetChecksum.Finish(InternetChecksum.Sum(second.AsSpan(40), pseudo)));
        }
        var c = new GroCoalescer(64);
        c.Reset();
        Assert.False(c.Offer(segs[0], 0));
        Assert.False(c.Offer(second, 1));
        Assert.Equal(0, c.Merged);
    }

    /// <summary>UDP datagrams of one flow as a sender's socket makes them: their own IP ID, full checksums.</summary>
    private static List<byte[]> UdpDatagrams(int count, int size, bool ipv6 = false, ushort sourcePort = 5000, int lastSize = -1)
    {
        var list = new List<byte[]>();
        var rng = new Random(size + count);
        for (int n = 0; n < count; n++)
        {
            int payload = n == count - 1 && lastSize >= 0 ? lastSize : size;
            var udp = new UdpPacket(sourcePort, 6000) { PayloadData = new byte[payload] };
            rng.NextBytes(udp.PayloadData);
            IPPacket ip = ipv6
                ? new IPv6Packet(System.Net.IPAddress.Parse("2001:db8:244:1::2"), System.Net.IPAddress.Parse("2001:db8:244:2::2")) { HopLimit = 63 }
                : new IPv4Packet(System.Net.IPAddress.Parse("10.244.1.2"), System.Net.IPAddress.Parse("10.244.2.2")) { TimeToLive = 63, Id = (ushort)(100 + n) };
            ip.PayloadPacket = udp;
            udp.UpdateUdpChecksum();
            if (ip is IPv4Packet v4)
            {
                v4.UpdateIPChecksum();
            }
            list.Add(ip.Bytes);
        }
        return list;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Udp_datagrams_of_one_flow_merge_into_a_uso_superpacket_that_splits_back_into_them(bool ipv6)
    {
        List<byte[]> datagrams = UdpDatagrams(10, 36, ipv6, lastSize: 20);
        var c = new GroCoalescer(64, mergeUdp: true);
        c.Reset();
        for (int i = 0; i < datagrams.Count; i++)
        {
            Assert.Equal(i > 0, c.Offer(datagrams[i], i));
        }
        Assert.Equal(9, c.Merged);
        Assert.Equal(10, c.SegmentsOf(0));
        byte[] sp = c.Superpacket(0).ToArray();
        var v = VirtioNetHeader.Read(sp);
        int ip = ipv6 ? 40 : 20;
        Assert.Equal(new VirtioNetHeader(VirtioNetHeader.FlagNeedsChecksum, VirtioNetHeader.GsoUdpL4, (ushort)(ip + 8), 36, (ushort)ip, 6), v);
        byte[] merged = sp[VirtioNetHeader.Length..];
        Assert.Equal(ip + 8 + (9 * 36) + 20, merged.Length);
        Assert.Equal(merged.Length - ip, BinaryPrimitives.ReadUInt16BigEndian(merged.AsSpan(ip + 4)));
        // What the kernel does with it before a socket sees it: cut it by the first datagram's size.
        List<byte[]> back = Split(merged, v);
        Assert.Equal(10, back.Count);
        for (int i = 0; i < back.Count; i++)
        {
            IPPacket packet = ipv6 ? new IPv6Packet(new PacketDotNet.Utils.ByteArraySegment(back[i])) : new IPv4Packet(new PacketDotNet.Utils.ByteArraySegment(back[i]));
            var udp = packet.Extract<UdpPacket>();
            Assert.True(udp.ValidUdpChecksum, $"datagram {i}");
            Assert.Equal(5000, udp.SourcePort);
            Assert.Equal(6000, udp.DestinationPort);
            IPPacket original = ipv6 ? new IPv6Packet(new PacketDotNet.Utils.ByteArraySegment(datagrams[i])) : new IPv4Packet(new PacketDotNet.Utils.ByteArraySegment(datagrams[i]));
            Assert.Equal(original.Extract<UdpPacket>().PayloadData, udp.PayloadData);
            if (packet is IPv4Packet v4)
            {
                Assert.True(v4.ValidIPChecksum);
            }
        }
    }

    [Fact]
    public void Udp_datagrams_merge_only_where_the_kernel_would_cut_them_back_alike()
    {
        // Not asked to (the device takes no USO): nothing merges.
        List<byte[]> d = UdpDatagrams(4, 64);
        var off = new GroCoalescer(64);
        off.Reset();
        Assert.All(Enumerable.Range(0, d.Count), i => Assert.False(off.Offer(d[i], i)));

        var c = new GroCoalescer(256, maxSuperpackets: 16, mergeUdp: true);
        // A larger datagram after a smaller one, another flow between, a broken checksum: each heads anew.
        List<byte[]> small = UdpDatagrams(2, 32), large = UdpDatagrams(2, 64), other = UdpDatagrams(2, 64, sourcePort: 5001);
        byte[] broken = UdpDatagrams(2, 64)[1];
        broken[^1] ^= 0xFF;
        byte[][] batch = [small[0], small[1], large[0], other[0], large[1], broken];
        c.Reset();
        bool[] merged = [.. batch.Select((p, i) => c.Offer(p, i))];
        Assert.Equal([false, true, false, false, true, false], merged);
        Assert.Equal(2, c.SegmentsOf(0));
        Assert.Equal(2, c.SegmentsOf(2)); // large[1] joined large[0] across the other flow's datagram
        Assert.Equal(1, c.SegmentsOf(3));
        Assert.Equal(1, c.SegmentsOf(5));

        // At most 64 datagrams (UDP_MAX_SEGMENTS): the 65th heads a new superpacket.
        List<byte[]> many = UdpDatagrams(70, 16);
        c.Reset();
        for (int i = 0; i < many.Count; i++)
        {
            Assert.Equal(i is not (0 or 64), c.Offer(many[i], i));
        }
        Assert.Equal(GroCoalescer.MaxUdpSegments, c.SegmentsOf(0));
        Assert.Equal(6, c.SegmentsOf(64));

        // IPv4 without a checksum (zero) merges; IPv6 with a zero checksum (invalid there) does not.
        List<byte[]> none = UdpDatagrams(2, 64);
        none.ForEach(p => p[26] = p[27] = 0);
        c.Reset();
        Assert.False(c.Offer(none[0], 0));
        Assert.True(c.Offer(none[1], 1));
        List<byte[]> none6 = UdpDatagrams(2, 64, ipv6: true);
        none6.ForEach(p => p[46] = p[47] = 0);
        c.Reset();
        Assert.False(c.Offer(none6[0], 0));
        Assert.False(c.Offer(none6[1], 1));
    }

    [Fact]
    public void A_datagram_is_never_merged_ahead_of_one_of_its_flow_that_came_first()
    {
        // Found by the coalesce fuzz target: a datagram of the flow that could not join (another
        // TTL, a length that is not its own) was passed over and the next one merged into the
        // superpacket before it, so the receiver got them out of order.
        var c = new GroCoalescer(64, mergeUdp: true);
        List<byte[]> d = UdpDatagrams(3, 64);
        d[1][8] = 62; // TTL, header checksum not updated: the coalescer compares, the kernel would drop
        c.Reset();
        Assert.Equal([false, false, false], d.Select((p, i) => c.Offer(p, i)).ToArray());
        Assert.All(Enumerable.Range(0, 3), i => Assert.Equal(1, c.SegmentsOf(i)));

        d = UdpDatagrams(3, 64);
        BinaryPrimitives.WriteUInt16BigEndian(d[1].AsSpan(24), 9); // a UDP length that is not its own: no candidate
        c.Reset();
        Assert.Equal([false, false, false], d.Select((p, i) => c.Offer(p, i)).ToArray());
        Assert.True(c.Superpacket(0).IsEmpty);

        // Another flow between two datagrams of one flow does not stop them merging.
        List<byte[]> other = UdpDatagrams(1, 64, sourcePort: 5001);
        d = UdpDatagrams(2, 64);
        c.Reset();
        Assert.Equal([false, false, true], new[] { d[0], other[0], d[1] }.Select((p, i) => c.Offer(p, i)).ToArray());
    }

    [Fact]
    public void Coalescing_the_segments_of_a_superpacket_gives_it_back()
    {
        var (p, h) = TcpSuperpacket(20_000, flags: 0x18);
        List<byte[]> segs = Split(p, h);
        var c = new GroCoalescer(64);
        c.Reset();
        for (int i = 0; i < segs.Count; i++)
        {
            Assert.Equal(i > 0, c.Offer(segs[i], i));
        }
        Assert.Equal(segs.Count - 1, c.Merged);
        byte[] sp = c.Superpacket(0).ToArray();
        Assert.Equal(0, c.Superpacket(1).Length);
        Assert.Equal(new VirtioNetHeader(VirtioNetHeader.FlagNeedsChecksum, VirtioNetHeader.GsoTcpV4, 52, 1400, 20, 16), VirtioNetHeader.Read(sp));
        byte[] merged = sp[VirtioNetHeader.Length..];
        Assert.Equal(p.Length, merged.Length);
        // What the kernel does with NEEDS_CSUM: finish the sum. Then it is the original, byte for byte.
        Assert.True(Segmenter.FinishChecksum(merged, 20, 16));
        Assert.True(Segmenter.FinishChecksum(p, 20, 16));
        var ip = new IPv4Packet(new PacketDotNet.Utils.ByteArraySegment(merged));
        Assert.True(ip.ValidIPChecksum);
        Assert.True(ip.Extract<TcpPacket>().ValidTcpChecksum);
        Assert.True(ip.Extract<TcpPacket>().Push); // PSH of the last segment carried over
        Assert.Equal(p.AsSpan(20).ToArray(), merged.AsSpan(20).ToArray());
    }

    [Fact]
    public void Segments_whose_checksum_a_kernel_peer_left_unfinished_merge_when_flagged_and_only_then()
    {
        var (p, h) = TcpSuperpacket(8400, flags: 0x10);
        List<byte[]> segs = Split(p, h);
        // As a kernel peer sends them: each segment's checksum field back to its pseudo-header sum.
        foreach (byte[] seg in segs)
        {
            ulong pseudo = InternetChecksum.PseudoHeaderIpv4(Src, Dst, 6, seg.Length - 20);
            BinaryPrimitives.WriteUInt16BigEndian(seg.AsSpan(36), (ushort)~InternetChecksum.Finish(pseudo));
            Assert.True(UnfinishedChecksum.IsUnfinished(seg, out _, out _));
        }
        var c = new GroCoalescer(64);
        c.Reset();
        for (int i = 0; i < segs.Count; i++)
        {
            Assert.False(c.Offer(segs[i], i)); // unflagged they do not verify: never merged
        }
        c.Reset();
        for (int i = 0; i < segs.Count; i++)
        {
            Assert.Equal(i > 0, c.Offer(segs[i], i, checksumUnfinished: true));
        }
        byte[] merged = c.Superpacket(0)[VirtioNetHeader.Length..].ToArray();
        Assert.True(Segmenter.FinishChecksum(merged, 20, 16)); // what the kernel does with NEEDS_CSUM
        Assert.True(new IPv4Packet(new PacketDotNet.Utils.ByteArraySegment(merged)).Extract<TcpPacket>().ValidTcpChecksum);
    }

    [Fact]
    public void Two_interleaved_flows_coalesce_separately()
    {
        var (a, ha) = TcpSuperpacket(4200, flags: 0x10);
        var (b, hb) = TcpSuperpacket(4200, flags: 0x10, seq: 50_000);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(20), 40001); // other source port
        ulong pseudo = InternetChecksum.PseudoHeaderIpv4(Src, Dst, 6, b.Length - 20);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(36), (ushort)~InternetChecksum.Finish(pseudo));
        List<byte[]> sa = Split(a, ha), sb = Split(b, hb);
        var c = new GroCoalescer(64);
        c.Reset();
        int idx = 0;
        for (int i = 0; i < 3; i++)
        {
            c.Offer(sa[i], idx++);
            c.Offer(sb[i], idx++);
        }
        Assert.Equal(4, c.Merged);
        Assert.Equal(VirtioNetHeader.Length + a.Length, c.Superpacket(0).Length);
        Assert.Equal(VirtioNetHeader.Length + b.Length, c.Superpacket(1).Length);
    }

    [Fact]
    public void What_must_not_be_merged_is_not()
    {
        var (p, h) = TcpSuperpacket(5600, flags: 0x10);
        List<byte[]> segs = Split(p, h);
        var c = new GroCoalescer(64);

        // A gap in the sequence.
        c.Reset();
        Assert.False(c.Offer(segs[0], 0));
        Assert.False(c.Offer(segs[2], 1));
        Assert.Equal(0, c.Merged);

        // A segment whose checksum does not verify.
        c.Reset();
        byte[] bad = (byte[])segs[1].Clone();
        bad[^1] ^= 0xFF;
        Assert.False(c.Offer(segs[0], 0));
        Assert.False(c.Offer(bad, 1));
        Assert.Equal(0, c.Superpacket(0).Length);

        // A head whose checksum does not verify merges nothing; the next segment heads its own.
        c.Reset();
        byte[] badHead = (byte[])segs[0].Clone();
        badHead[^1] ^= 0xFF;
        Assert.False(c.Offer(badHead, 0));
        Assert.False(c.Offer(segs[1], 1));
        Assert.True(c.Offer(segs[2], 2));
        Assert.Equal(0, c.Superpacket(0).Length);
        Assert.Equal(VirtioNetHeader.Length + segs[1].Length + segs[2].Length - 52, c.Superpacket(1).Length);

        // SYN (or anything but ACK/PSH) and a different ACK number.
        c.Reset();
        byte[] syn = (byte[])segs[1].Clone();
        syn[33] = 0x12;
        Assert.False(c.Offer(segs[0], 0));
        Assert.False(c.Offer(syn, 1));
        byte[] otherAck = (byte[])segs[1].Clone();
        otherAck[31] ^= 1;
        Assert.False(c.Offer(otherAck, 2));

        // A shorter segment closes the superpacket; nothing is appended after it.
        var (q, hq) = TcpSuperpacket(2900, flags: 0x10); // 1400 + 1400 + 100
        List<byte[]> qs = Split(q, hq);
        var (r, hr) = TcpSuperpacket(1400, flags: 0x10, seq: 1000 + 2900);
        c.Reset();
        c.Offer(qs[0], 0);
        Assert.True(c.Offer(qs[1], 1));
        Assert.True(c.Offer(qs[2], 2));
        Assert.False(c.Offer(Split(r, hr)[0], 3));
    }

    [Fact]
    public void Never_more_than_64_KiB()
    {
        // 120 kB of one flow in sequence: more than one IPv4 packet can hold.
        var (a, ha) = TcpSuperpacket(60_000, flags: 0x10);
        var (b, hb) = TcpSuperpacket(60_000, flags: 0x10, seq: 61_000);
        List<byte[]> segs = [.. Split(a, ha), .. Split(b, hb)];
        var c = new GroCoalescer(256);
        c.Reset();
        for (int i = 0; i < segs.Count; i++)
        {
            c.Offer(segs[i], i);
        }
        for (int i = 0; i < segs.Count; i++)
        {
            Assert.True(c.Superpacket(i).Length <= VirtioNetHeader.Length + GroCoalescer.MaxSuperpacket);
        }
        Assert.True(c.Merged >= segs.Count - 3);
    }

    private static readonly byte[] VxlanPrefix = Convert.FromHexString("08000000000001000e005e0000010e005e0000020800"); // VXLAN VNI 1 + Ethernet, as captured

    [Theory]
    [InlineData(0, 1450 - 20 - 32)]   // no segment size reported: segments fill the tunnel MTU
    [InlineData(1390, 1390)]          // the kernel's UDP_GRO control message gave the inner MSS
    [InlineData(1440, 1450 - 20 - 32)] // an MSS the tunnel MTU cannot carry: TCP segments made smaller
    public void A_kernel_peers_tunnel_superpacket_is_split_into_ordinary_datagrams(int reported, int expectedSize)
    {
        var (inner, _) = TcpSuperpacket(20_000, flags: 0x18); // unfinished checksum, as a veth peer sends it
        byte[] message = [.. VxlanPrefix, .. inner];
        Assert.True(TunnelSuperpacket.TryDescribe(message, 22, reported, 1450, out VirtioNetHeader h, out int l4, out int headers, out int segments));
        Assert.Equal(expectedSize, h.GsoSize);
        Assert.Equal((20_000 + expectedSize - 1) / expectedSize, segments);
        var payload = new List<byte>();
        uint seq = 1000;
        for (int k = 0; k < segments; k++)
        {
            byte[] d = new byte[2048];
            int len = TunnelSuperpacket.WriteDatagram(message, 22, h, l4, headers, k, d);
            Assert.Equal(VxlanPrefix, d[..22]);
            Assert.True(len - 22 <= 1450, $"datagram {k}: inner {len - 22} bytes");
            var ip = new IPv4Packet(new PacketDotNet.Utils.ByteArraySegment(d[22..len]));
            var tcp = ip.Extract<TcpPacket>();
            Assert.True(ip.ValidIPChecksum);
            Assert.True(tcp.ValidTcpChecksum);
            Assert.Equal(seq, tcp.SequenceNumber);
            Assert.Equal(k == segments - 1, tcp.Push); // PSH on the last one only
            seq += (uint)tcp.PayloadData.Length;
            payload.AddRange(tcp.PayloadData);
        }
        Assert.Equal(inner[52..], payload.ToArray()); // 20 IP + 32 TCP headers, then the payload, whole
    }

    [Fact]
    public void Ordinary_datagrams_and_glued_runs_are_not_taken_for_tunnel_superpackets()
    {
        var (small, _) = TcpSuperpacket(1000);
        Assert.False(TunnelSuperpacket.TryDescribe([.. VxlanPrefix, .. small], 22, 0, 1450, out _, out _, out _, out _)); // fits the MTU
        var (segment, _) = TcpSuperpacket(1400);
        byte[] glued = [.. VxlanPrefix, .. segment, .. VxlanPrefix, .. segment]; // a UDP GRO run of two datagrams
        Assert.False(TunnelSuperpacket.TryDescribe(glued, 22, glued.Length / 2, 1450, out _, out _, out _, out _));
        byte[] udp = new byte[4000];
        Ipv4Header.Write(udp, udp.Length, 1, 0, 64, Ipv4Header.ProtocolUdp, Src, Dst);
        BinaryPrimitives.WriteUInt16BigEndian(udp.AsSpan(24), (ushort)(udp.Length - 20));
        Assert.False(TunnelSuperpacket.TryDescribe([.. VxlanPrefix, .. udp], 22, 0, 1450, out _, out _, out _, out _)); // a big datagram, not marked as GSO
        Assert.True(TunnelSuperpacket.TryDescribe([.. VxlanPrefix, .. udp], 22, 1400, 1450, out VirtioNetHeader h, out _, out _, out _)); // marked: USO
        Assert.Equal(VirtioNetHeader.GsoUdpL4, h.GsoType);
    }
}
