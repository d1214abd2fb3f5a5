using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Dataplane.Encap.Offload;
using Dataplane.TunTap.Native;
using Tmds.Linux;
using static Tmds.Linux.LibC;
#pragma warning disable CS8981
using sockaddr_ll = Dataplane.TunTap.Native.sockaddr_ll;
#pragma warning restore CS8981

namespace Dataplane.TunTap;

/// <summary>
/// The device side without <c>/dev/net/tun</c>: one end of a veth pair, read and written with an
/// <c>AF_PACKET</c> socket. The other end carries the device name (<c>flannel0</c>,
/// <c>flannel.1</c>) with the address, MTU and route a TUN would get, so the host sees the same
/// thing; whatever the host routes into it comes out of our end as an Ethernet frame, and a frame
/// we send into our end arrives on the host's end as if received there.
///
/// Why the kernel never also routes what we read: the host's end is NOARP, so the kernel addresses
/// every frame to that end's own MAC; on our end (another MAC) the frame is <c>PACKET_OTHERHOST</c>,
/// which the IP stack drops on input, while packet sockets still see it. Our end has no address
/// and no IPv6 link-local address, so it sends nothing of its own. No sysctl is involved (a
/// container's /proc/sys is often read-only).
///
/// The socket: bound to our end with <c>ETH_P_ALL</c>; <c>PACKET_IGNORE_OUTGOING</c> (our own sends
/// are not read back), <c>PACKET_QDISC_BYPASS</c> (sends go straight to the veth), one socket per
/// queue joined in a <c>PACKET_FANOUT_HASH</c> group (a flow stays on one queue). Batched both ways
/// with recvmmsg/sendmmsg. With offloads, <c>PACKET_VNET_HDR</c> puts a virtio-net header in front of
/// every frame as <c>IFF_VNET_HDR</c> does on a TUN: superpackets arrive and leave whole and
/// <see cref="VnetOffload"/> splits and merges them (its offsets count from the IP header; the
/// kernel's here count from the Ethernet header, 14 bytes earlier). Each message of a receive batch
/// then gets a whole 64 KiB frame buffer (a superpacket's size is unknown until it arrives).
/// Without offloads the host end's checksum and segmentation offloads are turned off (ethtool), so
/// every frame is one finished packet, received straight into a batch slot behind a 14-byte
/// scratch for its Ethernet header. The TPACKET rings are not used: with the virtio header the
/// kernel's rings copy just as recvmmsg does, and their frames would have to be 64 KiB each.
/// </summary>
public sealed unsafe class PacketSocketDevice : IPacketDevice
{
    /// <summary>The most frames one receive or send call carries.</summary>
    public const int MaxBatch = 64;
    private const int HeaderScratch = 32; // per message: virtio header (10) + Ethernet header (14), rounded

    /// <summary>A full device queue (the veth's, or the socket's buffer): three waits of 1 ms for room; ENOBUFS means full here.</summary>
    private static readonly RoomPolicy SendRoom = new(Waits: 3, WaitMs: 1, NoBuffersMeansFull: true);

    private readonly EdgeDescriptor _edge;
    private readonly VnetOffload? _offload;
    private readonly Lock _writeGate = new();
    private readonly int _ifIndex;
    private readonly byte[] _ethernet = new byte[NativeMethods.ETH_HLEN]; // host end's MAC, ours, type set per frame

    // Receive side: with offloads each message owns a whole frame buffer (one iovec); without,
    // two iovecs: the Ethernet header into the message's scratch, the packet into a batch slot.
    private readonly MessageVector _rx;
    private readonly byte[] _rxFrames;
    private int _received;   // messages of the last recvmmsg
    private int _nextFrame;  // the next of them to hand out

    // Send side: two iovecs per message, a header scratch (virtio + Ethernet) and the packet;
    // MessageSlots counts the packets (segments) each message carries.
    private readonly MessageVector _tx;
    private readonly PacketSink _sink;

    private PacketSocketDevice(int fd, string name, string link, int ifIndex, byte[] hostMac, byte[] ourMac, bool offload)
    {
        _rx = new MessageVector(MaxBatch, iovecs: 2 * MaxBatch, addresses: false, control: false, scratchRoom: HeaderScratch);
        _tx = new MessageVector(TunDevice.MaxWriteBatch, iovecs: 2 * TunDevice.MaxWriteBatch, addresses: false, control: false, scratchRoom: HeaderScratch);
        _edge = new EdgeDescriptor(fd, afterClose: () =>
        {
            _rx.Dispose();
            _tx.Dispose();
        });
        Name = name;
        Link = link;
        _ifIndex = ifIndex;
        hostMac.CopyTo(_ethernet, 0);
        ourMac.CopyTo(_ethernet, 6);
        if (offload)
        {
            // UDP datagrams of a flow leave as one GSO_UDP_L4 frame where the kernel's virtio-net
            // header code takes it (Linux 6.2, as for a TUN's USO); a packet socket cannot be asked.
            _offload = new VnetOffload(TunDevice.MaxWriteBatch, mergeUdp: KernelRelease.AtLeast(6, 2));
            _rxFrames = GC.AllocateArray<byte>(MaxBatch * VnetOffload.FrameRoom, pinned: true);
            byte* frames = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_rxFrames));
            for (int i = 0; i < MaxBatch; i++)
            {
                _rx.Iov[i].iov_base = frames + (nint)i * VnetOffload.FrameRoom;
                _rx.Iov[i].iov_len = (size_t)(ulong)VnetOffload.FrameRoom;
                _rx.PrepareGather(i, i, 1);
            }
        }
        else
        {
            _rxFrames = [];
        }
        _sink = new PacketSink(this);
        Offloads = !offload ? "off"
            : _offload!.MergesUdp ? "vnet header (the veth's csum, tso, uso; small UDP datagrams written merged)"
            : "vnet header (the veth's csum, tso, uso)";
    }

    /// <summary>The device the host sees: the host's end of the veth pair.</summary>
    public string Name { get; }
    /// <summary>The end of the veth pair we own, where the socket is bound.</summary>
    public string Link { get; }
    public string Offloads { get; }
    public bool CompletesChecksums => _offload is not null;
    public bool Gone { get; private set; }
    public long ReadErrors { get; private set; }
    /// <summary>Frames that were neither IPv4 nor IPv6, or cut short (more than a slot without offloads).</summary>
    public long FramesSkipped { get; private set; }
    /// <summary>
    /// The offload counters, the frames skipped, and the frames the kernel dropped at this socket
    /// since it opened (its receive buffer was full while the loop was behind): PACKET_STATISTICS,
    /// which resets on every read, summed here. A report's call, not the packet path's.
    /// </summary>
    public DeviceCounters Counters =>
        (_offload?.Counters(ReadErrors) ?? new(0, 0, 0, 0, 0, ReadErrors)) with { FramesSkipped = FramesSkipped, KernelDrops = ReadKernelDrops() };

    private long _kernelDrops;

    private long ReadKernelDrops()
    {
        using (DescriptorEntry entry = _edge.Enter())
        {
            tpacket_stats stats = default;
            socklen_t size = (socklen_t)sizeof(tpacket_stats);
            if (entry.IsOpen && getsockopt(entry.Fd, NativeMethods.SOL_PACKET, NativeMethods.PACKET_STATISTICS, &stats, &size) == 0)
            {
                Interlocked.Add(ref _kernelDrops, stats.tp_drops);
            }
        }
        return Interlocked.Read(ref _kernelDrops);
    }

    /// <summary>
    /// Opens a packet socket on <paramref name="link"/> (our end of the pair whose host end is
    /// <paramref name="name"/>) that writes frames addressed to <paramref name="hostMac"/> (the
    /// host's end) from <paramref name="ourMac"/>, joined to fanout group <paramref name="fanoutGroup"/>.
    /// Throws <see cref="NativeException"/> with what failed.
    /// </summary>
    public static PacketSocketDevice Open(string name, string link, byte[] hostMac, byte[] ourMac, bool offload, int fanoutGroup)
    {
        int ifIndex = RouteNetlink.LinkIndex(link);
        if (ifIndex <= 0)
        {
            throw new NativeException($"packet socket on {link}", Errno.ENODEV);
        }
        // Protocol 0 until bound: the socket sees no frame of any other interface in between.
        int fd = socket(NativeMethods.AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
        {
            throw new NativeException("socket(AF_PACKET, SOCK_RAW)", Errno.Last);
        }
        try
        {
            SetOption(fd, NativeMethods.SOL_PACKET, NativeMethods.PACKET_VNET_HDR, offload ? 1 : 0, "PACKET_VNET_HDR");
            SetOption(fd, NativeMethods.SOL_PACKET, NativeMethods.PACKET_IGNORE_OUTGOING, 1, "PACKET_IGNORE_OUTGOING");
            SetOption(fd, NativeMethods.SOL_PACKET, NativeMethods.PACKET_QDISC_BYPASS, 1, "PACKET_QDISC_BYPASS");
            // Room for bursts: 64 KiB superpackets, or thousands of small frames, while a loop sleeps.
            SetOption(fd, SOL_SOCKET, NativeMethods.SO_RCVBUFFORCE, 8 << 20, "SO_RCVBUFFORCE");
            SetOption(fd, SOL_SOCKET, NativeMethods.SO_SNDBUFFORCE, 4 << 20, "SO_SNDBUFFORCE");
            sockaddr_ll addr = default;
            addr.sll_family = NativeMethods.AF_PACKET;
            addr.sll_protocol = BinaryPrimitives.ReverseEndianness(NativeMethods.ETH_P_ALL);
            addr.sll_ifindex = ifIndex;
            if (bind(fd, (sockaddr*)&addr, (uint)sizeof(sockaddr_ll)) < 0)
            {
                throw new NativeException($"bind packet socket to {link}", Errno.Last);
            }
            SetOption(fd, NativeMethods.SOL_PACKET, NativeMethods.PACKET_FANOUT,
                (fanoutGroup & 0xFFFF) | (NativeMethods.PACKET_FANOUT_HASH << 16), "PACKET_FANOUT");
        }
        catch
        {
            close(fd);
            throw;
        }
        return new PacketSocketDevice(fd, name, link, ifIndex, hostMac, ourMac, offload);
    }

    /// <summary>
    /// A packet socket whose descriptor another process passed us (<see cref="DescriptorPassing"/>),
    /// with the frames queued in it: bound to <paramref name="link"/>, our end of the pair whose host
    /// end is <paramref name="name"/>, configured as that process opened it (<paramref name="offload"/>:
    /// PACKET_VNET_HDR). Checked: a socket bound elsewhere or in the other mode is refused (and closed).
    /// </summary>
    public static PacketSocketDevice Adopt(int fd, string name, string link, bool offload)
    {
        int ifIndex = RouteNetlink.LinkIndex(link);
        sockaddr_ll bound = default;
        socklen_t length = (socklen_t)sizeof(sockaddr_ll);
        int vnet = 0;
        socklen_t size = sizeof(int);
        if (getsockname(fd, (sockaddr*)&bound, &length) < 0 || getsockopt(fd, NativeMethods.SOL_PACKET, NativeMethods.PACKET_VNET_HDR, &vnet, &size) < 0)
        {
            int err = Errno.Last;
            close(fd);
            throw new NativeException($"adopting the packet socket on {link}", err);
        }
        if (ifIndex <= 0 || bound.sll_ifindex != ifIndex || vnet != 0 != offload)
        {
            close(fd);
            throw new NativeException($"adopting the packet socket on {link}: it is bound to link {bound.sll_ifindex}{(vnet != 0 ? " with" : " without")} "
                + "a virtio-net header", Errno.EINVAL);
        }
        return new PacketSocketDevice(fd, name, link, ifIndex, RouteNetlink.GetMac(name), RouteNetlink.GetMac(link), offload);
    }

    /// <summary>The descriptor's number, to pass it to another process (<see cref="DescriptorPassing"/>); the socket stays ours.</summary>
    public int DescriptorNumber => _edge.Handle.Number;

    private static void SetOption(int fd, int level, int option, int value, string what)
    {
        if (setsockopt(fd, level, option, &value, sizeof(int)) < 0)
        {
            throw new NativeException($"setsockopt {what}", Errno.Last);
        }
    }

    /// <summary>
    /// Turns off the checksum and segmentation offloads of <paramref name="hostEnd"/> (ethtool -K
    /// tx off tso off gso off), so the kernel finishes and segments every packet before our end
    /// sees it: what a packet socket without the virtio header needs.
    /// </summary>
    public static void TurnOffOffloads(string hostEnd)
    {
        foreach (uint cmd in (ReadOnlySpan<uint>)[NativeMethods.ETHTOOL_STXCSUM, NativeMethods.ETHTOOL_STSO, NativeMethods.ETHTOOL_SGSO])
        {
            ethtool_value value = new() { cmd = cmd, data = 0 };
            RouteNetlink.InterfaceRequest(hostEnd, NativeMethods.SIOCETHTOOL, $"ethtool (command 0x{cmd:x}) off:", &value);
        }
    }

    public int ReadBatch(PacketBatch batch, int timeoutMs)
    {
        batch.Count = 0;
        using DescriptorEntry entry = _edge.Enter();
        if (!entry.IsOpen)
        {
            return 0;
        }
        int fd = entry.Fd;
        int n = 0;
        if (_offload is not null && _offload.EmitPendingFirst(batch, out n))
        {
            return n;
        }
        if (_offload is not null)
        {
            n = TakeReceived(batch, n);
        }
        if (n == 0 && timeoutMs > 0 && Wait(fd, timeoutMs) != Readiness.Ready)
        {
            return 0;
        }
        while (n < batch.Capacity && _received == 0 && !(_offload is { HasPending: true }))
        {
            int want = Math.Min(MaxBatch, batch.Capacity - n);
            int got = _offload is null ? ReceivePlain(fd, batch, n, want) : ReceiveFrames(fd, want);
            if (got <= 0)
            {
                if (got < 0)
                {
                    NoteError(fd, Errno.Last);
                }
                break;
            }
            n = _offload is null ? n + got : TakeReceived(batch, n);
        }
        batch.Count = n;
        return n;
    }

    private Readiness Wait(int fd, int timeoutMs)
    {
        Readiness r = _edge.WaitReadable(fd, timeoutMs);
        if (r == Readiness.Failed)
        {
            NoteError(fd); // the link went down or away: the socket reports ENETDOWN once
        }
        return r;
    }

    public Readiness WaitReadable(int timeoutMs)
    {
        if (_offload is { HasPending: true } || _nextFrame < _received)
        {
            return Readiness.Ready;
        }
        using DescriptorEntry entry = _edge.Enter();
        return entry.IsOpen ? Wait(entry.Fd, timeoutMs) : Readiness.Woken;
    }

    /// <summary>Offloads: receives up to <paramref name="want"/> frames, each into its own frame buffer.</summary>
    private int ReceiveFrames(int fd, int want)
    {
        // The messages point at the frame buffers for good (constructor); the kernel sets msg_len and msg_flags.
        int got = NativeMethods.recvmmsg(fd, _rx.Msgs, (uint)want, MSG_DONTWAIT, null);
        if (got > 0)
        {
            _received = got;
            _nextFrame = 0;
        }
        return got;
    }

    /// <summary>Offloads: hands the received frames to the offload code until the batch is full.</summary>
    private int TakeReceived(PacketBatch batch, int n)
    {
        while (_nextFrame < _received && n < batch.Capacity)
        {
            int i = _nextFrame++;
            int length = (int)_rx.Msgs[i].msg_len;
            int start = i * VnetOffload.FrameRoom;
            if ((_rx.Msgs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0 || !IsIp(_rxFrames.AsSpan(start + VirtioNetHeader.Length), length - VirtioNetHeader.Length))
            {
                FramesSkipped++;
                continue;
            }
            if (!_offload!.Take(_rxFrames, start, length, NativeMethods.ETH_HLEN, batch, ref n))
            {
                break; // full, with segments pending: the rest of the frames wait in their buffers
            }
        }
        if (_nextFrame >= _received && !_offload!.HasPending)
        {
            _received = _nextFrame = 0;
        }
        return n;
    }

    /// <summary>No offloads: receives up to <paramref name="want"/> frames straight into slots from <paramref name="n"/>.</summary>
    private int ReceivePlain(int fd, PacketBatch batch, int n, int want)
    {
        int room = batch.SlotSize - PacketBatch.Headroom;
        for (int i = 0; i < want; i++)
        {
            _rx.Iov[2 * i].iov_base = _rx.ScratchOf(i);
            _rx.Iov[2 * i].iov_len = (size_t)(ulong)NativeMethods.ETH_HLEN;
            _rx.Iov[2 * i + 1].iov_base = batch.SlotPointer(n + i) + PacketBatch.Headroom;
            _rx.Iov[2 * i + 1].iov_len = (size_t)(ulong)room;
            _rx.PrepareGather(i, 2 * i, 2);
        }
        int got = NativeMethods.recvmmsg(fd, _rx.Msgs, (uint)want, MSG_DONTWAIT, null);
        int kept = 0;
        for (int i = 0; i < got; i++)
        {
            int length = (int)_rx.Msgs[i].msg_len;
            if ((_rx.Msgs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0 || !IsIp(new ReadOnlySpan<byte>(_rx.ScratchOf(i), NativeMethods.ETH_HLEN), length))
            {
                FramesSkipped++;
                continue;
            }
            int slot = n + kept;
            if (slot != n + i)
            {
                batch.Slot(n + i).Slice(PacketBatch.Headroom, length - NativeMethods.ETH_HLEN).CopyTo(batch.Slot(slot)[PacketBatch.Headroom..]);
            }
            batch.Offsets[slot] = PacketBatch.Headroom;
            batch.Lengths[slot] = length - NativeMethods.ETH_HLEN;
            batch.Flags[slot] = 0;
            kept++;
        }
        return got < 0 ? got : kept;
    }

    /// <summary>An IPv4 or IPv6 frame with at least a byte of packet (<paramref name="frame"/> starts at the Ethernet header).</summary>
    internal static bool IsIp(ReadOnlySpan<byte> frame, int length)
    {
        if (length <= NativeMethods.ETH_HLEN)
        {
            return false;
        }
        ushort type = BinaryPrimitives.ReadUInt16BigEndian(frame[12..]);
        return type is NativeMethods.ETH_P_IP or NativeMethods.ETH_P_IPV6;
    }

    private void NoteError(int fd, int err = 0)
    {
        if (err == 0)
        {
            // Collect the pending socket error (ENETDOWN when the link went down or away).
            int value = 0;
            socklen_t size = sizeof(int);
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &value, &size);
            err = value;
        }
        if (err is 0 or Errno.EAGAIN or Errno.EINTR)
        {
            return;
        }
        ReadErrors++;
        Gone |= RouteNetlink.LinkIndex(Link) != _ifIndex; // deleted (a link set down comes back)
    }

    /// <summary>Writes slots 0..Count-1 whose length is non-zero; returns how many packets the link took (merged ones included).</summary>
    public int WriteBatch(PacketBatch batch)
    {
        using DescriptorEntry entry = _edge.Enter();
        if (!entry.IsOpen)
        {
            return 0;
        }
        lock (_writeGate)
        {
            _sink.Begin(entry.Fd);
            if (_offload is not null)
            {
                return _offload.Write(batch, _sink);
            }
            int accepted = 0;
            for (int i = 0; i < batch.Count; i++)
            {
                if (batch.Lengths[i] > 0 && _sink.Add(default, batch.SlotPointer(i) + batch.Offsets[i], batch.Lengths[i], 1))
                {
                    accepted++;
                }
            }
            return accepted - _sink.Flush();
        }
    }

    /// <summary>
    /// Gathers frames into the send vector (header scratch + packet per message) and sends them
    /// with sendmmsg when the batch ends (or the vector is full).
    /// </summary>
    private sealed class PacketSink(PacketSocketDevice device) : VnetOffload.IFrameSink
    {
        private int _fd;
        private int _count;
        private int _refused;

        public void Begin(int fd)
        {
            _fd = fd;
            _count = 0;
            _refused = 0;
        }

        public bool Add(in VirtioNetHeader header, byte* packet, int length, int segments)
        {
            if (_count == TunDevice.MaxWriteBatch)
            {
                Send();
            }
            int i = _count++;
            MessageVector tx = device._tx;
            byte* scratch = tx.ScratchOf(i);
            int prefix = 0;
            if (device._offload is not null)
            {
                // The kernel counts a packet socket's offsets from the Ethernet header.
                VirtioNetHeader h = header.NeedsChecksum || header.GsoType != VirtioNetHeader.GsoNone
                    ? header with
                    {
                        ChecksumStart = (ushort)(header.NeedsChecksum ? header.ChecksumStart + NativeMethods.ETH_HLEN : header.ChecksumStart),
                        HeaderLength = (ushort)(header.HeaderLength > 0 ? header.HeaderLength + NativeMethods.ETH_HLEN : 0),
                    }
                    : header;
                h.Write(new Span<byte>(scratch, VirtioNetHeader.Length));
                prefix = VirtioNetHeader.Length;
            }
            var ethernet = new Span<byte>(scratch + prefix, NativeMethods.ETH_HLEN);
            device._ethernet.CopyTo(ethernet);
            BinaryPrimitives.WriteUInt16BigEndian(ethernet[12..], (packet[0] >> 4) == 6 ? NativeMethods.ETH_P_IPV6 : NativeMethods.ETH_P_IP);
            tx.Iov[2 * i].iov_base = scratch;
            tx.Iov[2 * i].iov_len = (size_t)(ulong)(prefix + NativeMethods.ETH_HLEN);
            tx.Iov[2 * i + 1].iov_base = packet;
            tx.Iov[2 * i + 1].iov_len = (size_t)(ulong)length;
            tx.PrepareGather(i, 2 * i, 2);
            tx.MessageSlots[i] = segments;
            return true;
        }

        public int Flush()
        {
            Send();
            return _refused;
        }

        /// <summary>Sends the gathered messages; one the kernel refuses (or still no room after waiting) is skipped and its packets counted.</summary>
        private void Send()
        {
            for (int next = 0; next < _count;)
            {
                int stop = MessageSender.SendUntilFailure(_fd, device._tx, next, _count, SendRoom, gso: false, out _, out _);
                if (stop == _count)
                {
                    break;
                }
                _refused += device._tx.MessageSlots[stop];
                next = stop + 1;
            }
            _count = 0;
        }
    }

    public void StopWaiting() => _edge.StopWaiting();

    public void ResumeWaiting() => _edge.ResumeWaiting();

    /// <summary>Closes the socket (after any call in progress has returned; the message vectors go with it).</summary>
    public void Dispose() => _edge.Dispose();
}
