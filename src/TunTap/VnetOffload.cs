using Dataplane.Encap.Offload;
using Dataplane.TunTap.Native;
using static Tmds.Linux.LibC;

namespace Dataplane.TunTap;

/// <summary>
/// The offload half of a device whose frames carry a virtio-net header (as wireguard-go keeps
/// <c>tun/offload_linux.go</c> apart from <c>tun/tun_linux.go</c>): a TUN opened with
/// <c>IFF_VNET_HDR</c> and <c>TUNSETOFFLOAD</c>, or a packet socket with <c>PACKET_VNET_HDR</c>
/// (where an Ethernet header sits between the virtio header and the packet: <c>linkHeader</c>).
/// The kernel hands over TCP/UDP superpackets of up to 64 KiB and takes them back.
///
///  1. Read (<see cref="Take"/>): a superpacket is split into ordinary packets, one per batch slot
///     (<see cref="Segmenter"/>); a partial checksum of a plain packet is finished. A superpacket
///     that does not fit the batch's free slots stays pending and goes first at the next read. The
///     engine only ever sees ordinary packets.
///  2. Write (<see cref="Write"/>): consecutive segments of one TCP flow (and, with
///     <see cref="MergesUdp"/>, datagrams of one UDP flow) are merged (<see cref="GroCoalescer"/>)
///     and handed to the device's <see cref="IFrameSink"/> as one superpacket; everything else goes alone with a header that is empty, or <c>NEEDS_CSUM</c> for
///     a packet whose checksum a kernel peer left unfinished (<see cref="PacketBatch.FlagNeedsChecksum"/>),
///     so the kernel completes it as it would have on the peer.
/// Headers given to and taken from this class count offsets from the IP header; the device
/// shifts them by its link header. The wire does not change: the engine still sends one ordinary
/// packet per datagram. Not thread-safe: the device calls <see cref="Take"/> from its reading loop
/// and <see cref="Write"/> under its write lock.
/// </summary>
internal sealed unsafe class VnetOffload
{
    /// <summary>Room for the largest frame: virtio header, a link header and a 64 KiB packet.</summary>
    public const int FrameRoom = VirtioNetHeader.Length + 16 + 65535 + 48;

    /// <summary>Where a device writes frames: each call gets one packet or superpacket and its header.</summary>
    public interface IFrameSink
    {
        /// <summary>
        /// Hands over <paramref name="length"/> bytes at <paramref name="packet"/> (at least
        /// <see cref="VirtioNetHeader.Length"/> writable bytes in front of it) with header
        /// <paramref name="header"/>. Returns false if the device refused it at once.
        /// </summary>
        bool Add(in VirtioNetHeader header, byte* packet, int length, int segments);

        /// <summary>Ends the batch: returns how many of the packets (segments) accepted by <see cref="Add"/> the device refused after all.</summary>
        int Flush();
    }

    private readonly GroCoalescer _coalescer;
    private readonly bool[] _merged;
    private byte[] _pendingFrame = [];       // the buffer holding a superpacket still to split
    private int _pendingStart;               // where its packet starts in that buffer
    private int _pendingLength;              // its bytes (0: none pending)
    private int _pendingNext;                // its next segment
    private int _pendingCount, _pendingL4, _pendingHeaders;
    private VirtioNetHeader _pendingHeader;

    /// <param name="mergeUdp">Also merge UDP datagrams (<c>GSO_UDP_L4</c>): only where the device takes USO.</param>
    public VnetOffload(int maxBatch, bool mergeUdp = false)
    {
        _merged = new bool[maxBatch];
        _coalescer = new GroCoalescer(maxBatch, mergeUdp: mergeUdp);
        MergesUdp = mergeUdp;
    }

    /// <summary>Whether UDP datagrams of a flow are written merged (<c>GSO_UDP_L4</c>).</summary>
    public bool MergesUdp { get; }

    /// <summary>Superpackets we could not segment (dropped).</summary>
    public long SegmentationErrors { get; private set; }
    /// <summary>Superpackets read (split into <see cref="SegmentsOut"/> packets) and written (merged from <see cref="Coalesced"/> + 1 each).</summary>
    public long SuperpacketsIn { get; private set; }
    public long SegmentsOut { get; private set; }
    public long SuperpacketsOut { get; private set; }
    public long Coalesced { get; private set; }

    /// <summary>A superpacket read earlier still has segments to hand out.</summary>
    public bool HasPending => _pendingLength > 0;

    /// <summary>The offload counters as a device reports them, beside its read errors.</summary>
    public DeviceCounters Counters(long readErrors) =>
        new(SuperpacketsIn, SegmentsOut, SuperpacketsOut, Coalesced, SegmentationErrors, readErrors);

    /// <summary>
    /// Turns on what a TUN takes, newest first (USO needs Linux 6.2; older kernels refuse the
    /// unknown bits with EINVAL). Returns the TUN_F_* flags in use (0: none; see <see cref="Describe"/>).
    /// </summary>
    public static uint EnableTun(int fd)
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
                return flags;
            }
        }
        return 0;
    }

    /// <summary>TUN_F_* flags as logged: "csum tso4 tso6 uso4 uso6", or less; "vnet-header only" for none.</summary>
    public static string Describe(uint flags)
    {
        if (flags == 0)
        {
            return "vnet-header only";
        }
        var parts = new List<string>();
        if ((flags & NativeMethods.TUN_F_CSUM) != 0) { parts.Add("csum"); }
        if ((flags & NativeMethods.TUN_F_TSO4) != 0) { parts.Add("tso4"); }
        if ((flags & NativeMethods.TUN_F_TSO6) != 0) { parts.Add("tso6"); }
        if ((flags & NativeMethods.TUN_F_USO4) != 0) { parts.Add("uso4"); }
        if ((flags & NativeMethods.TUN_F_USO6) != 0) { parts.Add("uso6"); }
        return string.Join(' ', parts);
    }

    /// <summary>
    /// A TUN's reads: until EAGAIN or the batch is full, one frame per read() into
    /// <paramref name="frame"/>, split into slots from <paramref name="n"/>. Returns the slots
    /// filled; <paramref name="readErrno"/> is the errno that ended the reads (EAGAIN when the
    /// device was simply drained).
    /// </summary>
    public int ReadTun(int fd, byte[] frame, PacketBatch batch, int n, out int readErrno)
    {
        readErrno = 0;
        fixed (byte* p = frame)
        {
            while (n < batch.Capacity)
            {
                long got = read(fd, p, frame.Length);
                if (got < 0)
                {
                    readErrno = Errno.Last;
                    break;
                }
                if (!Take(frame, 0, (int)got, 0, batch, ref n))
                {
                    break; // the batch is full; the rest of this superpacket goes first next time
                }
            }
        }
        return n;
    }

    /// <summary>
    /// Takes one received frame: <paramref name="length"/> bytes at <paramref name="start"/> of
    /// <paramref name="frame"/>, a virtio header, <paramref name="linkHeader"/> bytes, then the
    /// packet. Fills slots from <paramref name="n"/>; returns false when the batch filled up with
    /// segments still pending (the buffer must then stay untouched until they are emitted).
    /// </summary>
    public bool Take(byte[] frame, int start, int length, int linkHeader, PacketBatch batch, ref int n)
    {
        int prefix = VirtioNetHeader.Length + linkHeader;
        if (length <= prefix)
        {
            return true;
        }
        var h = VirtioNetHeader.Read(frame.AsSpan(start));
        if (linkHeader > 0)
        {
            // The kernel counts a packet socket's offsets from the link header; ours count from IP.
            h = h with
            {
                ChecksumStart = (ushort)(h.NeedsChecksum ? h.ChecksumStart - linkHeader : h.ChecksumStart),
                HeaderLength = (ushort)Math.Max(0, h.HeaderLength - linkHeader),
            };
        }
        Span<byte> packet = frame.AsSpan(start + prefix, length - prefix);
        int room = batch.SlotSize - PacketBatch.Headroom;
        if (h.GsoType == VirtioNetHeader.GsoNone)
        {
            if (h.NeedsChecksum && !Segmenter.FinishChecksum(packet, h.ChecksumStart, h.ChecksumOffset)
                || packet.Length > room)
            {
                SegmentationErrors++;
                return true;
            }
            packet.CopyTo(batch.Slot(n)[PacketBatch.Headroom..]);
            batch.Offsets[n] = PacketBatch.Headroom;
            batch.Lengths[n] = packet.Length;
            batch.Flags[n] = 0;
            n++;
            return true;
        }
        if (!Segmenter.TryDescribe(packet, h, out _pendingL4, out _pendingHeaders, out _pendingCount)
            || _pendingHeaders + h.GsoSize > room)
        {
            SegmentationErrors++;
            return true;
        }
        _pendingHeader = h;
        _pendingFrame = frame;
        _pendingStart = start + prefix;
        _pendingLength = packet.Length;
        SuperpacketsIn++;
        SegmentsOut += _pendingCount;
        _pendingNext = 0;
        n = EmitPending(batch, n);
        return _pendingLength == 0;
    }

    /// <summary>
    /// The start of a device's read: segments of a superpacket read earlier go first, into slots from 0
    /// (<paramref name="n"/> says how many). True when some are still pending after that: the batch is
    /// full and the read ends there (its count set), without touching the device.
    /// </summary>
    public bool EmitPendingFirst(PacketBatch batch, out int n)
    {
        n = HasPending ? EmitPending(batch, 0) : 0;
        if (!HasPending)
        {
            return false;
        }
        batch.Count = n;
        return true;
    }

    /// <summary>Writes the pending superpacket's next segments into free slots from <paramref name="n"/>.</summary>
    public int EmitPending(PacketBatch batch, int n)
    {
        ReadOnlySpan<byte> packet = _pendingFrame.AsSpan(_pendingStart, _pendingLength);
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

    /// <summary>Step 2: hands slots 0..Count-1 whose length is non-zero to <paramref name="sink"/>; returns how many packets the device took (merged ones included).</summary>
    public int Write(PacketBatch batch, IFrameSink sink)
    {
        GroCoalescer c = _coalescer;
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
                    int segments = c.SegmentsOf(i);
                    if (sink.Add(VirtioNetHeader.Read(super), p + VirtioNetHeader.Length, super.Length - VirtioNetHeader.Length, segments))
                    {
                        written += segments;
                        SuperpacketsOut++;
                    }
                }
                continue;
            }
            // Alone: an empty header unless the packet's checksum is to be completed by the kernel.
            VirtioNetHeader h = default;
            if ((batch.Flags[i] & PacketBatch.FlagNeedsChecksum) != 0
                && UnfinishedChecksum.TryLocate(batch.Packet(i), out int l4Start, out int csumOffset, out _, out _))
            {
                h = new VirtioNetHeader(VirtioNetHeader.FlagNeedsChecksum, VirtioNetHeader.GsoNone, 0, 0, (ushort)l4Start, (ushort)csumOffset);
            }
            if (sink.Add(h, batch.SlotPointer(i) + batch.Offsets[i], len, 1))
            {
                written++;
            }
        }
        Coalesced += c.Merged;
        return written - sink.Flush();
    }
}

/// <summary>
/// A device's counters, for reports: superpackets split and merged (all zero without offloads),
/// segmentation and read errors, and what only the packet source sees: frames it skipped (not IP,
/// or cut short) and frames the kernel dropped at its socket before we read them.
/// </summary>
public readonly record struct DeviceCounters(long SuperpacketsIn, long SegmentsOut, long SuperpacketsOut, long Coalesced, long SegmentationErrors,
    long ReadErrors, long FramesSkipped = 0, long KernelDrops = 0);
