using System.Text;
using Dataplane.Encap.Offload;
using Dataplane.TunTap.Native;
using static Tmds.Linux.LibC;

namespace Dataplane.TunTap;

/// <summary>
/// A Linux TUN device: each read returns an IP packet the host routed into the device, each write
/// injects one into the host stack as if it arrived on the device. Unless made persistent
/// (<see cref="SetPersistent"/>, <c>TUNSETPERSIST</c>), closing the last descriptor deletes it with
/// its addresses and routes, so a stopped or killed node leaves nothing behind; a persistent device
/// stays, address and route included (without a queue attached it has no carrier and drops what
/// the host routes into it), and a later open of the same name and flags attaches to it again.
///
/// Plain mode (<c>IFF_TUN|IFF_NO_PI</c>): one packet per read or write. Offload mode adds
/// <c>IFF_VNET_HDR</c> and <c>TUNSETOFFLOAD</c>; the virtio-net header, superpacket splitting and
/// coalescing live in <see cref="VnetOffload"/>.
///
/// Reads are batch-shaped: wait in poll() on the device and the <see cref="WakeEvent"/> (so a stop
/// wakes the loop at once), then read until EAGAIN or the batch is full. The descriptor is a
/// <see cref="FileDescriptor"/>: disposing the device while a loop is inside a read defers the
/// close until the read returns (<see cref="EdgeDescriptor"/>, the skeleton every edge shares).
/// </summary>
public sealed unsafe class TunDevice : IPacketDevice
{
    public const string ClonePath = "/dev/net/tun";

    /// <summary>The most slots one write may carry (the coalescer tracks this many packets).</summary>
    public const int MaxWriteBatch = 512;

    private readonly EdgeDescriptor _edge;
    private readonly VnetOffload? _offload;
    private readonly TunSink? _sink;
    private readonly byte[] _frame = [];
    // The write path (coalescer, merge flags) is shared by the inbound loop and the outbound
    // loop's rare ICMP errors: one uncontended lock per batch keeps them apart.
    private readonly Lock _writeGate = new();

    /// <param name="offloadFlags">The TUN_F_* flags the kernel accepted (with <paramref name="offload"/>).</param>
    private TunDevice(int fd, string name, bool offload, uint offloadFlags)
    {
        _edge = new EdgeDescriptor(fd);
        Name = name;
        OffloadFlags = offloadFlags;
        Offloads = offload ? VnetOffload.Describe(offloadFlags) : "off";
        if (offload)
        {
            // A kernel that takes USO from us (TUN_F_USO4/6, Linux 6.2) also takes it on writes.
            _offload = new VnetOffload(MaxWriteBatch, mergeUdp: (offloadFlags & NativeMethods.TUN_F_USO4) != 0);
            _sink = new TunSink();
            _frame = GC.AllocateArray<byte>(VnetOffload.FrameRoom, pinned: true); // one frame as read, virtio header first
        }
    }

    public string Name { get; }

    /// <summary>The TUN_F_* flags the kernel accepted (0 without offloads): what a successor adopting this queue is told (<see cref="Adopt"/>).</summary>
    public uint OffloadFlags { get; }

    /// <summary>What the kernel accepted: "off", or for example "csum tso4 tso6 uso4 uso6".</summary>
    public string Offloads { get; }
    public bool VnetHeader => _offload is not null;

    /// <summary>With the virtio-net header the kernel completes flagged checksums (<c>NEEDS_CSUM</c>).</summary>
    public bool CompletesChecksums => VnetHeader;

    /// <summary>Read errors other than EAGAIN since open (for example the device was deleted).</summary>
    public long ReadErrors { get; private set; }

    /// <summary>The device was deleted under us: poll reports an error, reads fail with EBADFD.</summary>
    public bool Gone { get; private set; }
    /// <summary>Superpackets split and merged, segmentation and read errors.</summary>
    public DeviceCounters Counters => _offload?.Counters(ReadErrors) ?? new(0, 0, 0, 0, 0, ReadErrors);

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
            throw new NativeException($"open {ClonePath}", Errno.Last);
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
            int err = Errno.Last;
            close(fd);
            throw new NativeException($"TUNSETIFF {name}", err);
        }
        return new TunDevice(fd, name, offload, offload ? VnetOffload.EnableTun(fd) : 0);
    }

    /// <summary>
    /// <c>TUNSETPERSIST</c>: whether the device outlives its last descriptor (kept across a crash or
    /// a restart, as a kernel device is), or goes with it.
    /// </summary>
    public void SetPersistent(bool persistent)
    {
        using DescriptorEntry entry = _edge.Enter();
        if (!entry.IsOpen)
        {
            throw new ObjectDisposedException(nameof(TunDevice));
        }
        if (NativeMethods.ioctl_value(entry.Fd, NativeMethods.TUNSETPERSIST, persistent ? 1u : 0u) < 0)
        {
            throw new NativeException($"TUNSETPERSIST {Name} {(persistent ? 1 : 0)}", Errno.Last);
        }
    }

    /// <summary>
    /// A TUN queue whose descriptor another process passed us (<see cref="DescriptorPassing"/>): already
    /// attached to <paramref name="name"/>, with the packets queued in it, configured as that process
    /// opened it (<paramref name="offload"/>: IFF_VNET_HDR with the TUN_F_* <paramref name="offloadFlags"/>
    /// it set). Checked with TUNGETIFF: a descriptor of another device or mode is refused (and closed).
    /// </summary>
    public static TunDevice Adopt(int fd, string name, bool offload, uint offloadFlags)
    {
        ifreq req = default;
        if (NativeMethods.ioctl_ifreq(fd, NativeMethods.TUNGETIFF, &req) < 0)
        {
            int err = Errno.Last;
            close(fd);
            throw new NativeException($"TUNGETIFF (adopting {name})", err);
        }
        var raw = new ReadOnlySpan<byte>(req.ifr_name, ifreq.IFNAMSIZ);
        string attached = Encoding.UTF8.GetString(raw.IndexOf((byte)0) is int end and >= 0 ? raw[..end] : raw);
        bool vnet = (req.ifr_flags & NativeMethods.IFF_VNET_HDR) != 0;
        if (attached != name || vnet != offload)
        {
            close(fd);
            throw new NativeException($"adopting {name}: the descriptor is a queue of {attached}{(vnet ? " with" : " without")} a virtio-net header", Errno.EINVAL);
        }
        return new TunDevice(fd, name, offload, offloadFlags);
    }

    /// <summary>The descriptor's number, to pass it to another process (<see cref="DescriptorPassing"/>); the device stays ours.</summary>
    public int DescriptorNumber => _edge.Handle.Number;

    /// <summary>Null when <see cref="ClonePath"/> opens for reading and writing; else what failed ("open /dev/net/tun: No such file or directory").</summary>
    public static string? CanOpen()
    {
        byte[] path = Encoding.ASCII.GetBytes(ClonePath + "\0");
        int fd;
        fixed (byte* p = path)
        {
            fd = open(p, O_RDWR | O_CLOEXEC, 0);
        }
        if (fd < 0)
        {
            return new NativeException($"open {ClonePath}", Errno.Last).Message;
        }
        close(fd);
        return null;
    }

    public int ReadBatch(PacketBatch batch, int timeoutMs)
    {
        batch.Count = 0;
        using DescriptorEntry entry = _edge.Enter();
        if (!entry.IsOpen)
        {
            return 0; // closed: the loop is stopping
        }
        int n = 0;
        if (_offload is not null && _offload.EmitPendingFirst(batch, out n))
        {
            return n;
        }
        if (n == 0 && timeoutMs > 0 && Wait(entry.Fd, timeoutMs) != Readiness.Ready)
        {
            return 0;
        }
        int readErrno;
        n = _offload is null ? ReadPlain(entry.Fd, batch, n, out readErrno) : _offload.ReadTun(entry.Fd, _frame, batch, n, out readErrno);
        NoteReadError(readErrno);
        batch.Count = n;
        return n;
    }

    private Readiness Wait(int fd, int timeoutMs)
    {
        Readiness r = _edge.WaitReadable(fd, timeoutMs);
        if (r == Readiness.Failed)
        {
            ReadErrors++;
            Gone = true; // a deleted TUN device polls as POLLERR forever
        }
        return r;
    }

    public Readiness WaitReadable(int timeoutMs)
    {
        if (_offload is { HasPending: true })
        {
            return Readiness.Ready;
        }
        using DescriptorEntry entry = _edge.Enter();
        return entry.IsOpen ? Wait(entry.Fd, timeoutMs) : Readiness.Woken; // closed: the loop is stopping
    }

    private static int ReadPlain(int fd, PacketBatch batch, int n, out int readErrno)
    {
        readErrno = 0;
        int room = batch.SlotSize - PacketBatch.Headroom;
        while (n < batch.Capacity)
        {
            long got = read(fd, batch.SlotPointer(n) + PacketBatch.Headroom, room);
            if (got < 0)
            {
                readErrno = Errno.Last;
                break;
            }
            batch.Offsets[n] = PacketBatch.Headroom;
            batch.Lengths[n] = (int)got;
            batch.Flags[n] = 0;
            n++;
        }
        return n;
    }

    private void NoteReadError(int err)
    {
        if (err is not (0 or Errno.EAGAIN or Errno.EINTR))
        {
            ReadErrors++;
            Gone |= err is Errno.EBADFD or Errno.ENODEV or Errno.ENXIO;
        }
    }

    /// <summary>Writes slots 0..Count-1 whose length is non-zero; returns how many packets the device took (merged ones included).</summary>
    public int WriteBatch(PacketBatch batch)
    {
        using DescriptorEntry entry = _edge.Enter();
        if (!entry.IsOpen)
        {
            return 0;
        }
        if (_offload is null)
        {
            return WritePlain(entry.Fd, batch); // stateless: write() per packet
        }
        lock (_writeGate)
        {
            _sink!.Fd = entry.Fd;
            return _offload.Write(batch, _sink);
        }
    }

    private static int WritePlain(int fd, PacketBatch batch)
    {
        int written = 0;
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

    /// <summary>A TUN takes each frame with one write(): the virtio header just in front of the packet.</summary>
    private sealed class TunSink : VnetOffload.IFrameSink
    {
        public int Fd;

        public bool Add(in VirtioNetHeader header, byte* packet, int length, int segments)
        {
            header.Write(new Span<byte>(packet - VirtioNetHeader.Length, VirtioNetHeader.Length));
            return write(Fd, packet - VirtioNetHeader.Length, length + VirtioNetHeader.Length) == length + VirtioNetHeader.Length;
        }

        public int Flush() => 0;
    }

    /// <summary>Writes one packet (tests, single replies). Returns false if the device refused it.</summary>
    public bool Write(ReadOnlySpan<byte> packet)
    {
        byte[] buffer = new byte[VirtioNetHeader.Length + packet.Length];
        int offset = VnetHeader ? VirtioNetHeader.Length : 0;
        packet.CopyTo(buffer.AsSpan(offset));
        using DescriptorEntry entry = _edge.Enter();
        if (!entry.IsOpen)
        {
            return false;
        }
        fixed (byte* p = buffer)
        {
            return write(entry.Fd, p, offset + packet.Length) == offset + packet.Length;
        }
    }

    /// <summary>The descriptor (tests check when it closes).</summary>
    internal FileDescriptor Descriptor => _edge.Handle;

    /// <summary>Wakes a loop waiting in <see cref="ReadBatch"/>; later waits return at once.</summary>
    public void StopWaiting() => _edge.StopWaiting();

    public void ResumeWaiting() => _edge.ResumeWaiting();

    /// <summary>Closes the device (after any read or write in progress has returned).</summary>
    public void Dispose() => _edge.Dispose();
}
