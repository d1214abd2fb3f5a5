using System.Buffers.Binary;

namespace Dataplane.Encap.Offload;

/// <summary>
/// Generic receive offload for the TUN write side: consecutive TCP segments of one flow in a
/// batch, over IPv4 or IPv6, are merged into one superpacket that the kernel takes with a single
/// write and a virtio-net header (<c>GSO_TCPV4</c>/<c>GSO_TCPV6</c>, <c>NEEDS_CSUM</c>), as its own
/// GRO would merge them. With <c>mergeUdp</c>, consecutive UDP datagrams of one flow too
/// (<c>GSO_UDP_L4</c>, USO, Linux 6.2): the kernel cuts them apart again by the size of the first
/// before a socket that did not ask for UDP_GRO sees them, so datagram boundaries are kept; every
/// merged datagram is the size of the first except a shorter last one, at most 64 of them (the
/// kernel's UDP_MAX_SEGMENTS), IPv4 as for TCP (same TOS, TTL, DF, no options or fragments). A
/// datagram without a checksum (IPv4, zero) counts as valid; a UDP checksum that does not verify
/// is never merged, as for TCP.
///
/// The rules are the kernel's (tcp_gro_receive, inet_gro_receive, ipv6_gro_receive): same
/// addresses and ports, same ACK number, window and TCP options; IPv4: same TOS, TTL and DF, no IP
/// options, no fragments; IPv6: the same first word (version, traffic class, flow label) and hop
/// limit, no extension headers; flags ACK (PSH only on the last segment merged); the next sequence
/// number exactly; every merged segment the size of the first except a shorter last one; at most
/// 64 KiB in all. Only the flow's latest piece may take a packet, and a packet of the flow that
/// cannot merge (another TTL, a FIN, no payload) ends it, so nothing is merged ahead of a packet
/// of its flow that came before it. A segment whose TCP checksum does
/// not verify is never merged (the merged packet's checksum is computed anew by the kernel, which
/// would hide the corruption): it is written alone and the kernel drops it as it would anyway.
/// Checksums are verified only when a merge is about to happen (the head once, then each
/// newcomer), in the same pass that copies the bytes into the superpacket: a packet that merges
/// with nothing is written as it came and the kernel checks it.
///
/// Usage per batch: <see cref="Reset"/>, <see cref="Offer"/> each packet in order, then for each
/// packet not merged, <see cref="Superpacket"/> gives the merged packet it heads (or empty).
/// Buffers are allocated once, in the constructor.
/// </summary>
public sealed class GroCoalescer
{
    public const int MaxSuperpacket = 65535;
    /// <summary>UDP datagrams in one superpacket at most (the kernel's UDP_MAX_SEGMENTS).</summary>
    public const int MaxUdpSegments = 64;
    private const int TcpFlagsOffset = 13;
    private const int UdpHeaderLength = 8;
    private const byte TcpAck = 0x10, TcpPsh = 0x08;

    private readonly byte[][] _buffers;
    private readonly Item[] _items;
    private readonly int[] _itemOfPacket;
    private int _itemCount;
    private int _buffersUsed;
    private int _highestIndex = -1;
    private readonly bool _mergeUdp;

    /// <param name="mergeUdp">Merge UDP datagrams too (only where the device takes <c>GSO_UDP_L4</c>).</param>
    public GroCoalescer(int maxPackets, int maxSuperpackets = 8, bool mergeUdp = false)
    {
        _mergeUdp = mergeUdp;
        _buffers = new byte[maxSuperpackets][];
        for (int i = 0; i < maxSuperpackets; i++)
        {
            _buffers[i] = GC.AllocateArray<byte>(VirtioNetHeader.Length + MaxSuperpacket, pinned: true);
        }
        _items = new Item[maxPackets];
        _itemOfPacket = new int[maxPackets];
        Array.Fill(_itemOfPacket, -1);
    }

    /// <summary>Packets merged into another since <see cref="Reset"/>.</summary>
    public int Merged { get; private set; }

    public void Reset()
    {
        Array.Fill(_itemOfPacket, -1, 0, Math.Min(_highestIndex + 1, _itemOfPacket.Length));
        _highestIndex = -1;
        _itemCount = 0;
        _buffersUsed = 0;
        Merged = 0;
    }

    /// <summary>
    /// Offers packet number <paramref name="index"/> (indexes increase within a batch). True when
    /// its payload was merged into an earlier packet's superpacket: the caller must not write it.
    /// <paramref name="checksumUnfinished"/>: its TCP checksum is one a kernel peer left unfinished
    /// and the kernel is to complete (<see cref="UnfinishedChecksum"/>); it counts as valid, since the
    /// merged packet's checksum is computed anew anyway.
    /// </summary>
    public bool Offer(Memory<byte> packet, int index, bool checksumUnfinished = false)
    {
        ReadOnlySpan<byte> p = packet.Span;
        _highestIndex = Math.Max(_highestIndex, index);
        if (!IsCandidate(p, _mergeUdp, out int ipLength, out int l4Length, out int payload, out bool udp))
        {
            CloseFlowOf(p);
            return false;
        }
        int hdrs = ipLength + l4Length;
        uint seq = udp ? 0 : BinaryPrimitives.ReadUInt32BigEndian(p[(ipLength + 4)..]);
        bool psh = !udp && (p[ipLength + TcpFlagsOffset] & TcpPsh) != 0;
        for (int k = _itemCount - 1; k >= 0; k--)
        {
            ref Item item = ref _items[k];
            if (!item.SameTuple(p, ipLength))
            {
                continue;
            }
            // The flow's latest piece: only it may take this packet. Merging into an older one would
            // put this packet ahead of the one between them (UDP has no sequence number to stop it).
            if (item.Closed || !item.SameFlow(p, ipLength, l4Length, udp) || seq != item.NextSeq || payload > item.GsoSize || item.Length + payload > MaxSuperpacket
                || (udp && item.Segments == MaxUdpSegments))
            {
                break; // same flow but not the next piece: start afresh below
            }
            // Checksums are verified in the pass that copies (head, then newcomer) into the buffer;
            // the buffer is taken for the head only once the newcomer verified too.
            int buffer = item.Buffer;
            if (buffer < 0)
            {
                if (_buffersUsed == _buffers.Length)
                {
                    break;
                }
                buffer = _buffersUsed;
                if (!CopyVerified(item.Head.Span[..item.Length], ipLength, 0, udp, item.ChecksumUnfinished, _buffers[buffer].AsSpan(VirtioNetHeader.Length)))
                {
                    item.Closed = true; // a broken head merges nothing; this packet may head its own
                    break;
                }
            }
            // Copied past the superpacket's end: ignored unless it verifies.
            if (!CopyVerified(p, ipLength, hdrs, udp, checksumUnfinished, _buffers[buffer].AsSpan(VirtioNetHeader.Length + item.Length)))
            {
                return false; // not merged: written alone, and the kernel judges it
            }
            if (item.Buffer < 0)
            {
                item.Buffer = buffer;
                _buffersUsed++;
            }
            item.Length += payload;
            item.NextSeq = udp ? 0 : seq + (uint)payload; // UDP has no sequence: order is the batch's
            item.Segments++;
            item.Psh |= psh;
            item.Closed = psh || payload < item.GsoSize;
            Merged++;
            return true;
        }
        if (_itemCount < _items.Length && index < _itemOfPacket.Length)
        {
            _itemOfPacket[index] = _itemCount;
            _items[_itemCount++] = new Item(packet, p.Length, ipLength, l4Length, payload, udp ? 0 : seq + (uint)payload, psh) { ChecksumUnfinished = checksumUnfinished, Udp = udp };
        }
        return false;
    }

    /// <summary>
    /// The superpacket headed by packet <paramref name="index"/>, virtio-net header included, ready
    /// to write; empty when that packet merged nothing (write it alone).
    /// </summary>
    public ReadOnlySpan<byte> Superpacket(int index)
    {
        int k = index < _itemOfPacket.Length ? _itemOfPacket[index] : -1;
        if (k < 0 || _items[k].Buffer < 0)
        {
            return default;
        }
        ref Item item = ref _items[k];
        Span<byte> buf = _buffers[item.Buffer].AsSpan(0, VirtioNetHeader.Length + item.Length);
        Span<byte> pkt = buf[VirtioNetHeader.Length..];
        int ip = item.IpLength;
        if (item.Psh)
        {
            pkt[ip + TcpFlagsOffset] |= TcpPsh;
        }
        // NEEDS_CSUM: the field holds the folded pseudo-header sum; the kernel adds the rest.
        byte protocol = item.Udp ? Ipv4Header.ProtocolUdp : Ipv4Header.ProtocolTcp;
        ulong pseudo;
        if (ip == Ipv6Header.Length)
        {
            BinaryPrimitives.WriteUInt16BigEndian(pkt[4..], (ushort)(item.Length - ip));
            pseudo = InternetChecksum.PseudoHeaderIpv6(pkt.Slice(8, 16), pkt.Slice(24, 16), protocol, item.Length - ip);
        }
        else
        {
            BinaryPrimitives.WriteUInt16BigEndian(pkt[2..], (ushort)item.Length);
            pkt[10] = pkt[11] = 0;
            BinaryPrimitives.WriteUInt16BigEndian(pkt[10..], InternetChecksum.Compute(pkt[..20]));
            pseudo = InternetChecksum.PseudoHeaderIpv4(BinaryPrimitives.ReadUInt32BigEndian(pkt[12..]),
                BinaryPrimitives.ReadUInt32BigEndian(pkt[16..]), protocol, item.Length - ip);
        }
        int checksumOffset = item.Udp ? 6 : 16;
        byte gso = item.Udp ? VirtioNetHeader.GsoUdpL4 : ip == Ipv6Header.Length ? VirtioNetHeader.GsoTcpV6 : VirtioNetHeader.GsoTcpV4;
        if (item.Udp)
        {
            BinaryPrimitives.WriteUInt16BigEndian(pkt[(ip + 4)..], (ushort)(item.Length - ip)); // the UDP length: all of it
        }
        BinaryPrimitives.WriteUInt16BigEndian(pkt[(ip + checksumOffset)..], (ushort)~InternetChecksum.Finish(pseudo));
        new VirtioNetHeader(VirtioNetHeader.FlagNeedsChecksum, gso,
            (ushort)(ip + item.L4Length), (ushort)item.GsoSize, (ushort)ip, (ushort)checksumOffset).Write(buf);
        return buf;
    }

    /// <summary>How many packets the superpacket headed by packet <paramref name="index"/> holds (1 when none were merged).</summary>
    public int SegmentsOf(int index)
    {
        int k = index < _itemOfPacket.Length ? _itemOfPacket[index] : -1;
        return k < 0 ? 1 : _items[k].Segments;
    }

    /// <summary>
    /// TCP (or, with <paramref name="mergeUdp"/>, UDP) over IPv4 without options or fragmentation,
    /// or over IPv6 without extension headers; TCP: ACK or ACK+PSH; UDP: its length field exactly
    /// the rest of the packet; some payload; the IP length exactly the packet's.
    /// <paramref name="l4Length"/> is the transport header's length (8 for UDP).
    /// </summary>
    private static bool IsCandidate(ReadOnlySpan<byte> p, bool mergeUdp, out int ipLength, out int l4Length, out int payload, out bool udp)
    {
        ipLength = l4Length = payload = 0;
        udp = false;
        if (p.Length >= 28 && p[0] == 0x45 && (p[Ipv4Header.ProtocolOffset] == Ipv4Header.ProtocolTcp || (mergeUdp && p[Ipv4Header.ProtocolOffset] == Ipv4Header.ProtocolUdp))
            && BinaryPrimitives.ReadUInt16BigEndian(p[2..]) == p.Length
            && (BinaryPrimitives.ReadUInt16BigEndian(p[6..]) & 0x3FFF) == 0)
        {
            ipLength = Ipv4Header.MinLength;
            udp = p[Ipv4Header.ProtocolOffset] == Ipv4Header.ProtocolUdp;
        }
        else if (p.Length >= 48 && p[0] >> 4 == 6 && (p[Ipv6Header.NextHeaderOffset] == Ipv4Header.ProtocolTcp || (mergeUdp && p[Ipv6Header.NextHeaderOffset] == Ipv4Header.ProtocolUdp))
            && Ipv6Header.Length + BinaryPrimitives.ReadUInt16BigEndian(p[4..]) == p.Length)
        {
            ipLength = Ipv6Header.Length;
            udp = p[Ipv6Header.NextHeaderOffset] == Ipv4Header.ProtocolUdp;
        }
        else
        {
            return false;
        }
        if (udp)
        {
            l4Length = UdpHeaderLength;
            payload = p.Length - ipLength - UdpHeaderLength;
            return payload > 0 && BinaryPrimitives.ReadUInt16BigEndian(p[(ipLength + 4)..]) == p.Length - ipLength;
        }
        if (p.Length < ipLength + 20)
        {
            return false;
        }
        l4Length = (p[ipLength + 12] >> 4) * 4;
        if (l4Length < 20 || ipLength + l4Length >= p.Length)
        {
            return false;
        }
        byte flags = p[ipLength + TcpFlagsOffset];
        if (flags is not (TcpAck or (TcpAck | TcpPsh)))
        {
            return false;
        }
        payload = p.Length - ipLength - l4Length;
        return true;
    }

    /// <summary>
    /// Below this many bytes a copy and a separate sum are cheaper than the fused pass's extra calls
    /// (measured with 64-byte datagrams: bench/README.md, "Fewer passes per byte").
    /// </summary>
    private const int FusedCopyMinimum = 256;

    /// <summary>
    /// Copies <paramref name="p"/> from <paramref name="copyFrom"/> on to <paramref name="destination"/>
    /// and tells whether its TCP/UDP checksum verifies, summed in the same pass as the copy (the IP
    /// header or the L4 header, whichever is not copied, is summed or copied alone). An unfinished
    /// checksum, and IPv4 UDP without one, count as valid (nothing to verify).
    /// </summary>
    private static bool CopyVerified(ReadOnlySpan<byte> p, int ipLength, int copyFrom, bool udp, bool unfinished, Span<byte> destination)
    {
        if (unfinished || (udp && ipLength == Ipv4Header.MinLength && p[ipLength + 6] == 0 && p[ipLength + 7] == 0))
        {
            p[copyFrom..].CopyTo(destination);
            return true;
        }
        byte protocol = udp ? Ipv4Header.ProtocolUdp : Ipv4Header.ProtocolTcp;
        ulong sum = ipLength == Ipv6Header.Length
            ? InternetChecksum.PseudoHeaderIpv6(p.Slice(8, 16), p.Slice(24, 16), protocol, p.Length - ipLength)
            : InternetChecksum.PseudoHeaderIpv4(BinaryPrimitives.ReadUInt32BigEndian(p[12..]),
                BinaryPrimitives.ReadUInt32BigEndian(p[16..]), protocol, p.Length - ipLength);
        if (p.Length - copyFrom < FusedCopyMinimum)
        {
            p[copyFrom..].CopyTo(destination);
            return InternetChecksum.Finish(InternetChecksum.Sum(p[ipLength..], sum)) == 0;
        }
        // A head is copied whole (its IP header alone, the rest fused); a newcomer from its payload
        // on (its L4 header summed alone). The L4 header's length is even: the words line up.
        int fusedFrom = Math.Max(copyFrom, ipLength);
        p[copyFrom..fusedFrom].CopyTo(destination);
        sum = InternetChecksum.Sum(p[ipLength..fusedFrom], sum);
        sum = InternetChecksum.CopyAndSum(p[fusedFrom..], destination[(fusedFrom - copyFrom)..], sum);
        return InternetChecksum.Finish(sum) == 0;
    }

    /// <summary>
    /// A TCP or UDP packet that cannot merge ends its flow's open superpacket: a later packet of
    /// the flow must not be merged ahead of it (the kernel's GRO flushes the flow there too).
    /// </summary>
    private void CloseFlowOf(ReadOnlySpan<byte> p)
    {
        if (_itemCount == 0)
        {
            return; // nothing open (a batch of pure ACKs, say): no per-packet work
        }
        int ipLength = p.Length >= 20 && p[0] >> 4 == 4 ? (p[0] & 0x0F) * 4 : p.Length >= Ipv6Header.Length && p[0] >> 4 == 6 ? Ipv6Header.Length : 0;
        if (ipLength < 20 || p.Length < ipLength + 4)
        {
            return;
        }
        for (int k = _itemCount - 1; k >= 0; k--)
        {
            if (_items[k].SameTuple(p, ipLength))
            {
                _items[k].Closed = true;
                return;
            }
        }
    }

    private struct Item(Memory<byte> head, int length, int ipLength, int l4Length, int gsoSize, uint nextSeq, bool psh)
    {
        public Memory<byte> Head = head;
        public int Length = length;
        public int IpLength = ipLength;
        public int L4Length = l4Length;
        public int GsoSize = gsoSize;
        public uint NextSeq = nextSeq;
        public bool Psh = psh;
        public bool Closed = psh;
        public int Segments = 1;
        public int Buffer = -1;
        public bool ChecksumUnfinished;
        public bool Udp;

        /// <summary>Same IP version, protocol, addresses and ports (<paramref name="p"/>'s transport header at <paramref name="ipLength"/>, at least 4 bytes of it there).</summary>
        public readonly bool SameTuple(ReadOnlySpan<byte> p, int ipLength)
        {
            ReadOnlySpan<byte> h = Head.Span;
            if (h[0] >> 4 != p[0] >> 4)
            {
                return false;
            }
            bool sameIp = IpLength == Ipv6Header.Length
                ? h[Ipv6Header.NextHeaderOffset] == p[Ipv6Header.NextHeaderOffset] && h.Slice(8, 32).SequenceEqual(p.Slice(8, 32))
                : h[Ipv4Header.ProtocolOffset] == p[Ipv4Header.ProtocolOffset] && h.Slice(12, 8).SequenceEqual(p.Slice(12, 8));
            return sameIp && h.Slice(IpLength, 4).SequenceEqual(p.Slice(ipLength, 4));
        }

        /// <summary>Of a flow with the same tuple (<see cref="SameTuple"/>): the same everything else the kernel's GRO requires to match.</summary>
        public readonly bool SameFlow(ReadOnlySpan<byte> p, int ipLength, int l4Length, bool udp)
        {
            ReadOnlySpan<byte> h = Head.Span;
            if (ipLength != IpLength || l4Length != L4Length || udp != Udp)
            {
                return false;
            }
            bool sameIp = ipLength == Ipv6Header.Length
                ? h[..4].SequenceEqual(p[..4])                      // version, traffic class, flow label
                  && h[7] == p[7]                                   // hop limit
                : h[1] == p[1]                                      // TOS
                  && h[8] == p[8]                                   // TTL
                  && (h[6] & 0x40) == (p[6] & 0x40);                // DF
            int t = ipLength;
            return sameIp && (udp
                || (h.Slice(t + 8, 4).SequenceEqual(p.Slice(t + 8, 4))          // ACK number
                    && h.Slice(t + 14, 2).SequenceEqual(p.Slice(t + 14, 2))     // window
                    && h.Slice(t + 20, l4Length - 20).SequenceEqual(p.Slice(t + 20, l4Length - 20)))); // options
        }
    }
}
