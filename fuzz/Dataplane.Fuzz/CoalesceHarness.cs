using System.Buffers.Binary;
using Dataplane.Encap;
using Dataplane.Encap.Offload;

using static Dataplane.Fuzz.Property;

namespace Dataplane.Fuzz;

/// <summary>
/// The TCP/UDP coalescer on a batch built from the input (target <c>coalesce</c>): up to 48
/// packets of one to three flows, IPv4 or IPv6, TCP or UDP, mostly the next piece of their flow
/// and full-sized, some short, oversized, out of sequence, or differing in a header field the
/// kernel's GRO compares (TTL, TOS, DF, flow label, ACK number, window, TCP options, FIN, PSH), with
/// a checksum that does not verify, or left unfinished by a kernel peer. Then, as the kernel would
/// see the batch written:
///   - a packet written alone comes out as it went in, byte for byte;
///   - a superpacket is one the kernel takes: NEEDS_CSUM at the transport header, the GSO type of
///     its family and protocol, gso_size the first piece's payload, its IP and UDP lengths its
///     own, at most 64 KiB (and 64 UDP datagrams), the pseudo-header sum in its checksum field
///     (completed, the checksum verifies);
///   - segmented again as the kernel's GSO would, it gives back the packets merged, each byte
///     for byte but the IPv4 identification and header checksum (and a checksum that was
///     unfinished or absent), so every payload byte comes out once, in its flow's order;
///   - a packet whose checksum does not verify is never merged (the kernel must drop it).
/// </summary>
internal static class CoalesceHarness
{
    private const int MaxPackets = 48;
    private static readonly GroCoalescer Coalescer = new(MaxPackets, mergeUdp: true);
    private static readonly byte[] Scratch = new byte[GroCoalescer.MaxSuperpacket], Expected = new byte[GroCoalescer.MaxSuperpacket];

    private sealed record Built(byte[] Bytes, byte[] Pristine, int Flow, int Ip, int L4, bool Unfinished, bool Bad);

    public static void Run(byte[] input)
    {
        List<Built> batch = Build(input);
        Coalescer.Reset();
        bool[] merged = new bool[batch.Count];
        for (int i = 0; i < batch.Count; i++)
        {
            merged[i] = Coalescer.Offer(batch[i].Bytes, i, batch[i].Unfinished);
            Check(!merged[i] || !batch[i].Bad, $"packet {i}, whose checksum does not verify, was merged");
        }
        Check(Coalescer.Merged == merged.Count(m => m), "Merged counts the packets merged");
        // Each flow's packets in batch order; a packet the kernel drops (bad checksum) may come out anywhere, once.
        var expected = new Queue<int>[3];
        for (int f = 0; f < expected.Length; f++)
        {
            expected[f] = new Queue<int>(Enumerable.Range(0, batch.Count).Where(i => batch[i].Flow == f && !batch[i].Bad));
        }
        var bad = new HashSet<int>(Enumerable.Range(0, batch.Count).Where(i => batch[i].Bad));
        for (int i = 0; i < batch.Count; i++)
        {
            if (merged[i])
            {
                continue;
            }
            ReadOnlySpan<byte> sp = Coalescer.Superpacket(i);
            if (sp.IsEmpty)
            {
                Check(batch[i].Bytes.AsSpan().SequenceEqual(batch[i].Pristine), $"packet {i} was changed but written alone");
                Check(batch[i].Bad ? bad.Remove(i) : expected[batch[i].Flow].TryDequeue(out int next) && next == i, $"packet {i} came out of its flow's order");
                continue;
            }
            Superpacket(sp, i, batch, expected[batch[i].Flow]);
        }
        Check(bad.Count == 0 && expected.All(q => q.Count == 0), "a packet did not come out");
    }

    /// <summary>What the kernel checks of a superpacket, then its segments against the packets merged, in order.</summary>
    private static void Superpacket(ReadOnlySpan<byte> sp, int head, List<Built> batch, Queue<int> flow)
    {
        Built first = batch[head];
        var h = VirtioNetHeader.Read(sp);
        byte[] pkt = sp[VirtioNetHeader.Length..].ToArray();
        bool udp = SegmentCheck.Protocol(pkt) == Ipv4Header.ProtocolUdp;
        byte gso = udp ? VirtioNetHeader.GsoUdpL4 : first.Ip == Ipv6Header.Length ? VirtioNetHeader.GsoTcpV6 : VirtioNetHeader.GsoTcpV4;
        Check(h.Flags == VirtioNetHeader.FlagNeedsChecksum && h.GsoType == gso, $"superpacket {head}: flags {h.Flags}, GSO type {h.GsoType}");
        Check(h.ChecksumStart == first.Ip && h.ChecksumOffset == (udp ? 6 : 16) && h.HeaderLength == first.Ip + first.L4, $"superpacket {head}: checksum at {h.ChecksumStart}+{h.ChecksumOffset}, headers {h.HeaderLength}");
        Check(h.GsoSize == first.Pristine.Length - first.Ip - first.L4, $"superpacket {head}: gso_size {h.GsoSize} is not its first piece's payload");
        Check(pkt.Length <= GroCoalescer.MaxSuperpacket, $"superpacket {head} of {pkt.Length} bytes");
        int ipLength = first.Ip == 20 ? BinaryPrimitives.ReadUInt16BigEndian(pkt.AsSpan(2)) : Ipv6Header.Length + BinaryPrimitives.ReadUInt16BigEndian(pkt.AsSpan(4));
        Check(ipLength == pkt.Length, $"superpacket {head}: IP length {ipLength} of {pkt.Length} bytes");
        Check(first.Ip != 20 || InternetChecksum.Compute(pkt.AsSpan(0, 20)) == 0, $"superpacket {head}: IPv4 header checksum");
        Check(!udp || BinaryPrimitives.ReadUInt16BigEndian(pkt.AsSpan(first.Ip + 4)) == pkt.Length - first.Ip, $"superpacket {head}: UDP length");
        byte[] completed = (byte[])pkt.Clone();
        Check(Segmenter.FinishChecksum(completed, h.ChecksumStart, h.ChecksumOffset) && SegmentCheck.L4ChecksumVerifies(completed, first.Ip),
            $"superpacket {head}: its checksum field is not the pseudo-header sum");
        Check(Segmenter.TryDescribe(pkt, h, out int l4, out int headers, out int segments), $"superpacket {head} cannot be segmented");
        Check(segments >= 2 && segments == Coalescer.SegmentsOf(head) && (!udp || segments <= GroCoalescer.MaxUdpSegments), $"superpacket {head}: {segments} segments, {Coalescer.SegmentsOf(head)} said");
        SegmentCheck.All(pkt, h, l4, headers, segments, Scratch, (k, seg) =>
        {
            Check(flow.TryDequeue(out int j), $"superpacket {head}'s segment {k} is no packet of its flow");
            Built b = batch[j];
            Check(seg.Length == b.Pristine.Length, $"superpacket {head}'s segment {k} is not packet {j}");
            int checksumAt = b.Ip + (udp ? 6 : 16);
            bool sameChecksum = !b.Unfinished && !(udp && b.Ip == 20 && BinaryPrimitives.ReadUInt16BigEndian(b.Pristine.AsSpan(checksumAt)) == 0);
            // Byte for byte, but where the segmenter writes its own: the fields it may, taken from the packet.
            Span<byte> like = Expected.AsSpan(0, seg.Length);
            seg.CopyTo(like);
            if (b.Ip == 20)
            {
                b.Pristine.AsSpan(4, 2).CopyTo(like[4..]);
                b.Pristine.AsSpan(10, 2).CopyTo(like[10..]);
            }
            if (!sameChecksum)
            {
                b.Pristine.AsSpan(checksumAt, 2).CopyTo(like[checksumAt..]);
            }
            Check(like.SequenceEqual(b.Pristine), $"superpacket {head}'s segment {k} differs from packet {j} at byte {like.CommonPrefixLength(b.Pristine)}");
        });
    }

    /// <summary>The batch the input describes (see the class summary).</summary>
    private static List<Built> Build(byte[] input)
    {
        var r = new Reader(input);
        byte shape = r.Next();
        bool v6 = (shape & 1) != 0, udp = (shape & 2) != 0;
        int flows = 1 + (shape >> 2) % 3;
        int mss = 1 + (r.Next() | r.Next() << 8) % 1460;
        uint[] seq = [1000, 2000, 3000];
        var batch = new List<Built>();
        while (!r.Done && batch.Count < MaxPackets)
        {
            byte c = r.Next();
            int flow = c % flows, kind = (c >> 2) & 7, payload = mss, mutation = -1;
            switch (kind)
            {
                case 4: payload = 1 + r.Next() % mss; break;
                case 5: seq[flow] += (uint)(r.Next() - 128); break;
                case 6: mutation = r.Next() % 10; break;
                case 7: payload = mss + 1 + r.Next() % 64; break;
            }
            batch.Add(Packet(batch.Count, flow, v6, udp, seq[flow], payload, mutation));
            seq[flow] += (uint)payload;
        }
        return batch;
    }

    private static Built Packet(int index, int flow, bool v6, bool udp, uint seq, int payload, int mutation)
    {
        int ip = v6 ? Ipv6Header.Length : 20, l4 = udp ? 8 : mutation == 7 ? 32 : 20;
        byte[] p = new byte[ip + l4 + payload];
        if (v6)
        {
            p[0] = 0x60;
            p[1] = (byte)((mutation == 1 ? 0x10 : 0) | (mutation == 6 ? 0x01 : 0)); // traffic class, flow label
            BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(4), (ushort)(p.Length - ip));
            p[6] = udp ? Ipv4Header.ProtocolUdp : Ipv4Header.ProtocolTcp;
            p[7] = (byte)(mutation == 0 ? 63 : 64);
            BinaryPrimitives.WriteUInt64BigEndian(p.AsSpan(8), 0x2001_0DB8_0244_0001);
            p[23] = 2;
            BinaryPrimitives.WriteUInt64BigEndian(p.AsSpan(24), 0x2001_0DB8_0244_0002);
            p[39] = 3;
        }
        else
        {
            p[0] = 0x45;
            p[1] = (byte)(mutation == 1 ? 0x10 : 0);
            BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(2), (ushort)p.Length);
            BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(4), (ushort)index);
            p[6] = (byte)(mutation == 6 ? 0 : 0x40); // DF
            p[8] = (byte)(mutation == 0 ? 63 : 64);
            p[9] = udp ? Ipv4Header.ProtocolUdp : Ipv4Header.ProtocolTcp;
            BinaryPrimitives.WriteUInt32BigEndian(p.AsSpan(12), 0x0AF4_0102);
            BinaryPrimitives.WriteUInt32BigEndian(p.AsSpan(16), 0x0AF4_0203);
            BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(10), InternetChecksum.Compute(p.AsSpan(0, 20)));
        }
        Span<byte> t = p.AsSpan(ip);
        BinaryPrimitives.WriteUInt16BigEndian(t, (ushort)(40000 + flow));
        BinaryPrimitives.WriteUInt16BigEndian(t[2..], 5201);
        for (int j = 0; j < payload; j++)
        {
            t[l4 + j] = j == 0 ? (byte)index : (byte)(index * 31 + j * 7 + flow); // the first byte names the packet
        }
        int checksumAt = udp ? 6 : 16;
        if (udp)
        {
            BinaryPrimitives.WriteUInt16BigEndian(t[4..], (ushort)(mutation == 5 ? t.Length + 1 : t.Length));
        }
        else
        {
            BinaryPrimitives.WriteUInt32BigEndian(t[4..], seq);
            BinaryPrimitives.WriteUInt32BigEndian(t[8..], mutation == 9 ? 0x0102_0305u : 0x0102_0304u);
            t[12] = (byte)((l4 / 4) << 4);
            t[13] = (byte)(0x10 | (mutation == 3 ? 0x08 : 0) | (mutation == 4 ? 0x01 : 0)); // ACK, PSH, FIN
            BinaryPrimitives.WriteUInt16BigEndian(t[14..], (ushort)(mutation == 5 ? 1024 : 512));
            if (l4 == 32)
            {
                t[20] = t[21] = 1; // NOP NOP, then a timestamp option
                t[22] = 8;
                t[23] = 10;
            }
        }
        ulong pseudo = SegmentCheck.PseudoHeader(p, ip);
        ushort checksum = InternetChecksum.Finish(InternetChecksum.Sum(t, pseudo));
        if (mutation == 8)
        {
            checksum = (ushort)~InternetChecksum.Finish(pseudo); // left unfinished: the pseudo-header sum, for the kernel to complete
        }
        else if (mutation == 3 && udp && !v6)
        {
            checksum = 0; // an IPv4 datagram without a checksum
        }
        else if (mutation == 2)
        {
            checksum ^= (ushort)(udp && !v6 && checksum == 0x0100 ? 0x0200 : 0x0100); // never 0, which is "no checksum"
        }
        else if (udp && checksum == 0)
        {
            checksum = 0xFFFF;
        }
        BinaryPrimitives.WriteUInt16BigEndian(t[checksumAt..], checksum);
        return new Built(p, (byte[])p.Clone(), flow, ip, l4, mutation == 8, mutation == 2);
    }

    private ref struct Reader(byte[] input)
    {
        private int _at;

        public readonly bool Done => _at >= input.Length;

        public byte Next() => _at < input.Length ? input[_at++] : (byte)0;
    }
}
