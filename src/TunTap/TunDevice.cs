using System.Runtime.InteropServices;
using System.Text;
using Dataplane.Encap.Offload;
using Dataplane.TunTap.Native;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace Dataplane.TunTap;

/// <summary>
/// A Linux TUN device: each read returns an IP packet the host routed into the device, each write
/// injects one into the host stack as if it arrived on the device. The device is not persistent:
/// closing the descriptor deletes it, with its addresses and routes, so a stopped or killed node
/// leaves nothing behind.
///
/// Plain mode (<c>IFF_TUN|IFF_NO_PI</c>): one packet per read or write.
///
/// Offload mode adds <c>IFF_VNET_HDR</c> and <c>TUNSETOFFLOAD</c> (checksum, TSO4/6, USO4/6 where
/// the kernel takes them), as wireguard-go does. The kernel then hands over TCP/UDP superpackets of
/// up to 64 KiB with a virtio-net header; the segmentation happens here, in the edge:
///  1. Read: a superpacket is split into ordinary packets, one per batch slot (<see cref="Segmenter"/>);
///     a partial checksum of a plain packet is finished. A superpacket that does not fit the
///     batch's free slots waits for the next read. The engine only ever sees ordinary packets.
///  2. Write: consecutive segments of one TCP flow are merged (<see cref="TcpCoalescer"/>) and
///     written as one superpacket; everything else is written alone with an empty virtio header.
/// The wire does not change: the engine still sends one ordinary packet per datagram.
///
/// Reads are batch-shaped: wait in poll() with a timeout (so the loop can notice a stop), then read
/// until EAGAIN or the batch is full.
/// </summary>
public sealed unsafe class TunDevice : IPacketDevice
{
    public const string ClonePath = "/dev/net/tun";
    private const int SuperpacketRoom = VirtioNetHeader.Length + 65535 + 64;

    private readonly byte[]? _super;        // offload: one superpacket as read, virtio header first
    private readonly TcpCoalescer? _coalescer;
    private readonly bool[] _merged = new bool[512];
    // The write path (coalescer, merge flags) is shared by the inbound loop and the outbound
    // loop's rare ICMP errors: one uncontended lock per batch keeps them apart.
    private readonly Lock _writeGate = new();
    private int _fd;
    private int _pendingLength;              // offload: bytes of a superpacket still to split (0: none)
    private int _pendingNext;                // its next segment
    private int _pendingCount, _pendingL4, _pendingHeaders;
    private VirtioNetHeader _pendingHeader;

    private TunDevice(int fd, string name, bool offload, string offloads)
    {
        _fd = fd;
        Name = name;
        Offloads = offloads;
        if (offload)
        {
            _super = GC.AllocateArray<byte>(SuperpacketRoom, pinned: true);
            _coalescer = new TcpCoalescer(_merged.Length);
        }
    }

    public string Name { get; }

    /// <summary>What the kernel accepted: "off", or for example "csum tso4 tso6 uso4 uso6".</summary>
    public string Offloads { get; }
    public bool VnetHeader => _super is not null;

    /// <summary>Read errors other than EAGAIN since open (for example the device was deleted).</summary>
    public long ReadErrors { get; private set; }

    /// <summary>The device was deleted under us: poll reports an error, reads fail with EBADFD.</summary>
    public bool Gone { get; private set; }
    /// <summary>Superpackets we could not segment (dropped), and packets merged on write.</summary>
    public long SegmentationErrors { get; private set; }
    /// <summary>Superpackets read (split into <see cref="SegmentsOut"/> packets) and written (merged from <see cref="Coalesced"/> + 1 each).</summary>
    public long SuperpacketsIn { get; private set; }
    public long SegmentsOut { get; private set; }
    public long SuperpacketsOut { get; private set; }
    public long Coalesced { get; private set; }

    /// <summary>Creates (or attaches to) the TUN device <paramref name="name"/>. Throws <see cref="NativeException"/> with what failed.</summary>
    /// <remarks>
    /// With <paramref name="multiQueue"/> (<c>IFF_MULTI_QUEUE</c>) each call on the same name attaches
    /// one more queue: the kernel spreads flows over the queues' descriptors, and the device lives
    /// until the last one is closed.
    /// </remarks>
    public static TunDevice Open(string name, bool offload = false, bool multiQueue = false)
    {
        if (Encoding.UTF8.GetByteCount(name) is 0 or >= ifreq.IFNAMSIZ)
        {
            throw new ArgumentException($"device name '{name}' must be 1 to {ifreq.IFNAMSIZ - 1} bytes");
        }
        if (!File.Exists(ClonePath))
        {
            throw new NativeException($"open {ClonePath}", Errno.ENOENT);
        }
        byte[] path = Encoding.ASCII.GetBytes(ClonePath + "\0");
        int fd;
        fixed (byte* p = path)
        {
            fd = open(p, O_RDWR | O_NONBLOCK | O_CLOEXEC, 0);
        }
        if (fd < 0)
        {
            throw new NativeException($"open {ClonePath}", errno);
        }
        ifreq req = default;
        byte[] nameBytes = Encoding.UTF8.GetBytes(name);
        for (int i = 0; i < nameBytes.Length; i++)
        {
            req.ifr_name[i] = nameBytes[i];
        }
        req.ifr_flags = (short)(NativeMethods.IFF_TUN | NativeMethods.IFF_NO_PI | (offload ? NativeMethods.IFF_VNET_HDR : 0)
            | (multiQueue ? NativeMethods.IFF_MULTI_QUEUE : 0));
        if (NativeMethods.ioctl_ifreq(fd, NativeMethods.TUNSETIFF, &req) < 0)
        {
            int err = Marshal.GetLastPInvokeError();
            close(fd);
            throw new NativeException($"TUNSETIFF {name}", err);
        }
        string offloads = "off";
        if (offload)
        {
            // Newest first: USO needs Linux 6.2; older kernels refuse the unknown bits with EINVAL.
            uint[] attempts =
            [
                NativeMethods.TUN_F_CSUM | NativeMethods.TUN_F_TSO4 | NativeMethods.TUN_F_TSO6 | NativeMethods.TUN_F_USO4 | NativeMethods.TUN_F_USO6,
                NativeMethods.TUN_F_CSUM | NativeMethods.TUN_F_TSO4 | NativeMethods.TUN_F_TSO6,
                NativeMethods.TUN_F_CSUM,
            ];
            offloads = "vnet-header only";
            foreach (uint flags in attempts)
            {
                if (NativeMethods.ioctl_value(fd, NativeMethods.TUNSETOFFLOAD, flags) == 0)
                {
                    offloads = Describe(flags);
                    break;
                }
            }
        }
        return new TunDevice(fd, name, offload, offloads);
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

    public int ReadBatch(PacketBatch batch, int timeoutMs)
    {
        batch.Count = 0;
        int fd = _fd;
        if (fd < 0)
        {
            return 0;
        }
        int n = 0;
        if (_pendingLength > 0)
        {
            n = EmitPending(batch, 0);
            if (_pendingLength > 0)
            {
                batch.Count = n;
                return n;
            }
        }
        if (n == 0 && !WaitReadable(fd, timeoutMs))
        {
            return 0;
        }
        n = _super is null ? ReadPlain(fd, batch, n) : ReadOffload(fd, batch, n);
        batch.Count = n;
        return n;
    }

    private bool WaitReadable(int fd, int timeoutMs)
    {
        pollfd pfd = new() { fd = fd, events = POLLIN };
        if (poll(&pfd, 1, timeoutMs) <= 0)
        {
            return false;
        }
        int revents = (ushort)pfd.revents;
        const int failure = 0x008 | 0x010 | 0x020; // POLLERR | POLLHUP | POLLNVAL
        if ((revents & failure) != 0 && (revents & 0x001) == 0)
        {
            ReadErrors++;
            Gone = true; // a deleted TUN device polls as POLLERR forever
            return false;
        }
        return true;
    }

    private int ReadPlain(int fd, PacketBatch batch, int n)
    {
        int room = batch.SlotSize - PacketBatch.Headroom;
        while (n < batch.Capacity)
        {
            long got = read(fd, batch.SlotPointer(n) + PacketBatch.Headroom, room);
            if (got < 0)
            {
                NoteReadError(errno);
                break;
            }
            batch.Offsets[n] = PacketBatch.Headroom;
            batch.Lengths[n] = (int)got;
            batch.Flags[n] = 0;
            n++;
        }
        return n;
    }

    private int ReadOffload(int fd, PacketBatch batch, int n)
    {
        int room = batch.SlotSize - PacketBatch.Headroom;
        fixed (byte* super = _super)
        {
            while (n < batch.Capacity)
            {
                long got = read(fd, super, SuperpacketRoom);
                if (got < 0)
                {
                    NoteReadError(errno);
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
    private int EmitPending(PacketBatch batch, int n)
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

    private void NoteReadError(int err)
    {
        if (err != Errno.EAGAIN && err != Errno.EINTR)
        {
            ReadErrors++;
            Gone |= err is Errno.EBADFD or Errno.ENODEV or Errno.ENXIO;
        }
    }

    /// <summary>Writes slots 0..Count-1 whose length is non-zero; returns how many packets the device took (merged ones included).</summary>
    public int WriteBatch(PacketBatch batch)
    {
        if (_coalescer is null)
        {
            return WritePlain(batch); // stateless: write() per packet
        }
        lock (_writeGate)
        {
            return WriteOffload(batch);
        }
    }

    private int WritePlain(PacketBatch batch)
    {
        int written = 0;
        int fd = _fd;
        for (int i = 0; i < batch.Count; i++)
        {
            int len = batch.Lengths[i];
            if (len > 0 && write(fd, batch.SlotPointer(i) + batch.Offsets[i], len) == len)
            {
                written++;
            }
        }
        return written;
    }

    private int WriteOffload(PacketBatch batch)
    {
        TcpCoalescer c = _coalescer!;
        int count = Math.Min(batch.Count, _merged.Length);
        c.Reset();
        for (int i = 0; i < count; i++)
        {
            _merged[i] = batch.Lengths[i] > 0 && c.Offer(batch.PacketMemory(i), i);
        }
        int written = 0;
        int fd = _fd;
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
                    if (NativeMethods.write(fd, p, (nuint)super.Length) == super.Length)
                    {
                        written += c.SegmentsOf(i);
                        SuperpacketsOut++;
                    }
                }
                continue;
            }
            // Alone: an empty virtio header in the headroom just in front of the packet.
            int offset = batch.Offsets[i] - VirtioNetHeader.Length;
            VirtioNetHeader.WriteNone(batch.Slot(i)[offset..]);
            if (write(fd, batch.SlotPointer(i) + offset, len + VirtioNetHeader.Length) == len + VirtioNetHeader.Length)
            {
                written++;
            }
        }
        Coalesced += c.Merged;
        return written;
    }

    /// <summary>Writes one packet (tests, single replies). Returns false if the device refused it.</summary>
    public bool Write(ReadOnlySpan<byte> packet)
    {
        byte[] buffer = new byte[VirtioNetHeader.Length + packet.Length];
        int offset = VnetHeader ? VirtioNetHeader.Length : 0;
        packet.CopyTo(buffer.AsSpan(offset));
        fixed (byte* p = buffer)
        {
            return write(_fd, p, offset + packet.Length) == offset + packet.Length;
        }
    }

    public void Dispose()
    {
        int fd = Interlocked.Exchange(ref _fd, -1);
        if (fd >= 0)
        {
            close(fd);
        }
    }
}
