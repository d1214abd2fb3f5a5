using Dataplane.Encap.Offload;
using Dataplane.TunTap.Native;
using static Tmds.Linux.LibC;

namespace Dataplane.TunTap;

/// <summary>
/// The offload half of a TUN device (as wireguard-go keeps <c>tun/offload_linux.go</c> apart from
/// <c>tun/tun_linux.go</c>): with <c>IFF_VNET_HDR</c> and <c>TUNSETOFFLOAD</c> every read and write
/// carries a virtio-net header, and the kernel hands over TCP/UDP superpackets of up to 64 KiB.
///
///  1. Read: a superpacket is split into ordinary packets, one per batch slot (<see cref="Segmenter"/>);
///     a partial checksum of a plain packet is finished. A superpacket that does not fit the
///     batch's free slots stays pending and goes first at the next read. The engine only ever
///     sees ordinary packets.
///  2. Write: consecutive segments of one TCP flow are merged (<see cref="TcpCoalescer"/>) and
///     written as one superpacket; everything else is written alone with a virtio header put in
///     the headroom in front of it: empty, or <c>NEEDS_CSUM</c> for a packet whose checksum a
///     kernel peer left unfinished (<see cref="PacketBatch.FlagNeedsChecksum"/>), so the kernel
///     completes it as it would have on the peer.
/// The wire does not change: the engine still sends one ordinary packet per datagram.
/// Not thread-safe: the device calls <see cref="Read"/> from its reading loop and <see cref="Write"/>
/// under its write lock.
/// </summary>
internal sealed unsafe class TunOffload
{
    private const int SuperpacketRoom = VirtioNetHeader.Length + 65535 + 64;

    private readonly byte[] _super = GC.AllocateArray<byte>(SuperpacketRoom, pinned: true); // one superpacket as read, virtio header first
    private readonly TcpCoalescer _coalescer;
    private readonly bool[] _merged;
    private int _pendingLength;              // bytes of a superpacket still to split (0: none)
    private int _pendingNext;                // its next segment
    private int _pendingCount, _pendingL4, _pendingHeaders;
    private VirtioNetHeader _pendingHeader;

    public TunOffload(int maxBatch)
    {
        _merged = new bool[maxBatch];
        _coalescer = new TcpCoalescer(maxBatch);
    }

    /// <summary>Superpackets we could not segment (dropped).</summary>
    public long SegmentationErrors { get; private set; }
    /// <summary>Superpackets read (split into <see cref="SegmentsOut"/> packets) and written (merged from <see cref="Coalesced"/> + 1 each).</summary>
    public long SuperpacketsIn { get; private set; }
    public long SegmentsOut { get; private set; }
    public long SuperpacketsOut { get; private set; }
    public long Coalesced { get; private set; }

    /// <summary>A superpacket read earlier still has segments to hand out.</summary>
    public bool HasPending => _pendingLength > 0;

    /// <summary>
    /// Turns on what the kernel takes, newest first (USO needs Linux 6.2; older kernels refuse the
    /// unknown bits with EINVAL). Returns what is in use: "csum tso4 tso6 uso4 uso6", or less.
    /// </summary>
    public static string Enable(int fd)
    {
        uint[] attempts =
        [
            NativeMethods.TUN_F_CSUM | NativeMethods.TUN_F_TSO4 | NativeMethods.TUN_F_TSO6 | NativeMethods.TUN_F_USO4 | NativeMethods.TUN_F_USO6,
            NativeMethods.TUN_F_CSUM | NativeMethods.TUN_F_TSO4 | NativeMethods.TUN_F_TSO6,
            NativeMethods.TUN_F_CSUM,
        ];
        foreach (uint flags in attempts)
        {
            if (NativeMethods.ioctl_value(fd, NativeMethods.TUNSETOFFLOAD, flags) == 0)
            {
                return Describe(flags);
            }
        }
        return "vnet-header only";
    }

    private static string Describe(uint flags)
    {
        var parts = new List<string>();
        if ((flags & NativeMethods.TUN_F_CSUM) != 0) { parts.Add("csum"); }
        if ((flags & NativeMethods.TUN_F_TSO4) != 0) { parts.Add("tso4"); }
        if ((flags & NativeMethods.TUN_F_TSO6) != 0) { parts.Add("tso6"); }
        if ((flags & NativeMethods.TUN_F_USO4) != 0) { parts.Add("uso4"); }
        if ((flags & NativeMethods.TUN_F_USO6) != 0) { parts.Add("uso6"); }
        return string.Join(' ', parts);
    }

    /// <summary>
    /// Step 1: reads until EAGAIN or the batch is full, splitting superpackets into slots from
    /// <paramref name="n"/>. Returns the slots filled; <paramref name="readErrno"/> is the errno that
    /// ended the reads (EAGAIN when the device was simply drained).
    /// </summary>
    public int Read(int fd, PacketBatch batch, int n, out int readErrno)
    {
        readErrno = 0;
        int room = batch.SlotSize - PacketBatch.Headroom;
        fixed (byte* super = _super)
        {
            while (n < batch.Capacity)
            {
                long got = read(fd, super, SuperpacketRoom);
                if (got < 0)
                {
                    readErrno = Errno.Last;
                    break;
                }
                if (got <= VirtioNetHeader.Length)
                {
                    continue;
                }
                var h = VirtioNetHeader.Read(_super);
                Span<byte> packet = _super.AsSpan(VirtioNetHeader.Length, (int)got - VirtioNetHeader.Length);
                if (h.GsoType == VirtioNetHeader.GsoNone)
                {
                    if (h.NeedsChecksum && !Segmenter.FinishChecksum(packet, h.ChecksumStart, h.ChecksumOffset)
                        || packet.Length > room)
                    {
                        SegmentationErrors++;
                        continue;
                    }
                    packet.CopyTo(batch.Slot(n)[PacketBatch.Headroom..]);
                    batch.Offsets[n] = PacketBatch.Headroom;
                    batch.Lengths[n] = packet.Length;
                    batch.Flags[n] = 0;
                    n++;
                    continue;
                }
                if (!Segmenter.TryDescribe(packet, h, out _pendingL4, out _pendingHeaders, out _pendingCount)
                    || _pendingHeaders + h.GsoSize > room)
                {
                    SegmentationErrors++;
                    continue;
                }
                _pendingHeader = h;
                _pendingLength = packet.Length;
                SuperpacketsIn++;
                SegmentsOut += _pendingCount;
                _pendingNext = 0;
                n = EmitPending(batch, n);
                if (_pendingLength > 0)
                {
                    break; // the batch is full; the rest of this superpacket goes first next time
                }
            }
        }
        return n;
    }

    /// <summary>Writes the pending superpacket's next segments into free slots from <paramref name="n"/>.</summary>
    public int EmitPending(PacketBatch batch, int n)
    {
        ReadOnlySpan<byte> packet = _super.AsSpan(VirtioNetHeader.Length, _pendingLength);
        while (_pendingNext < _pendingCount && n < batch.Capacity)
        {
            int len = Segmenter.WriteSegment(packet, _pendingHeader, _pendingL4, _pendingHeaders, _pendingNext, batch.Slot(n)[PacketBatch.Headroom..]);
            batch.Offsets[n] = PacketBatch.Headroom;
            batch.Lengths[n] = len;
            batch.Flags[n] = 0;
            n++;
            _pendingNext++;
        }
        if (_pendingNext == _pendingCount)
        {
            _pendingLength = 0;
        }
        return n;
    }

    /// <summary>Step 2: writes slots 0..Count-1 whose length is non-zero; returns how many packets the device took (merged ones included).</summary>
    public int Write(int fd, PacketBatch batch)
    {
        TcpCoalescer c = _coalescer;
        int count = Math.Min(batch.Count, _merged.Length);
        c.Reset();
        for (int i = 0; i < count; i++)
        {
            _merged[i] = batch.Lengths[i] > 0 && c.Offer(batch.PacketMemory(i), i, (batch.Flags[i] & PacketBatch.FlagNeedsChecksum) != 0);
        }
        int written = 0;
        for (int i = 0; i < count; i++)
        {
            int len = batch.Lengths[i];
            if (len == 0 || _merged[i])
            {
                continue;
            }
            ReadOnlySpan<byte> super = c.Superpacket(i);
            if (super.Length > 0)
            {
                fixed (byte* p = super)
                {
                    if (write(fd, p, super.Length) == super.Length)
                    {
                        written += c.SegmentsOf(i);
                        SuperpacketsOut++;
                    }
                }
                continue;
            }
            // Alone: a virtio header in the headroom just in front of the packet, empty unless the
            // packet's checksum is to be completed by the kernel.
            int offset = batch.Offsets[i] - VirtioNetHeader.Length;
            if ((batch.Flags[i] & PacketBatch.FlagNeedsChecksum) != 0
                && UnfinishedChecksum.TryLocate(batch.Packet(i), out int l4Start, out int csumOffset, out _, out _))
            {
                new VirtioNetHeader(VirtioNetHeader.FlagNeedsChecksum, VirtioNetHeader.GsoNone, 0, 0, (ushort)l4Start, (ushort)csumOffset)
                    .Write(batch.Slot(i)[offset..]);
            }
            else
            {
                VirtioNetHeader.WriteNone(batch.Slot(i)[offset..]);
            }
            if (write(fd, batch.SlotPointer(i) + offset, len + VirtioNetHeader.Length) == len + VirtioNetHeader.Length)
            {
                written++;
            }
        }
        Coalesced += c.Merged;
        return written;
    }
}
