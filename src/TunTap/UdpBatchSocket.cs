using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Dataplane.TunTap.Native;
using Tmds.Linux;
using static Tmds.Linux.LibC;
#pragma warning disable CS8981
using mmsghdr = Dataplane.TunTap.Native.mmsghdr;
#pragma warning restore CS8981

namespace Dataplane.TunTap;

/// <summary>
/// An IPv4 UDP socket bound to the node's public address and the backend's port, moving
/// datagrams a batch at a time with recvmmsg/sendmmsg. The native message vectors are allocated
/// once per direction (the receive loop and the send loop each own theirs), so a batch costs one
/// system call and no allocation.
///
/// Offloads, detected at bind and used when asked for:
///  - UDP_SEGMENT (GSO): a run of consecutive slots to one peer with equal lengths (the last may
///    be shorter), at most 64 and 64 KiB, goes as one message the kernel cuts into datagrams. The
///    datagrams on the wire are the same as without it. EIO from a GSO send turns GSO off for
///    good and the rest is sent plainly.
///  - UDP_GRO: the kernel hands over runs of datagrams from one source glued together with the
///    segment size in a control message; they are cut apart here into one slot each.
///
/// Error policy: EAGAIN on send waits briefly for room and retries; any other per-message send
/// error (ENOBUFS, ECONNREFUSED, ENETUNREACH, EMSGSIZE) skips that message and is counted.
/// A datagram larger than its slot comes back flagged <see cref="PacketBatch.FlagTruncated"/>.
/// </summary>
public sealed unsafe class UdpBatchSocket : IDatagramSocket
{
    private const int SendRetries = 3;
    private const int SocketBufferBytes = 4 << 20;
    private const int MaxUdpPayload = 65507;    // 65535 - 20 IPv4 - 8 UDP
    private const int ControlRoom = 64;         // per message: room for one cmsghdr (16) and a small value
    private const int GroBuffers = 16;          // coalesced receive buffers of 64 KiB
    private const int GroBufferSize = 65536;

    private readonly Direction _rx;
    private readonly Direction _tx;
    private readonly byte[]? _groMemory;
    // The send vector is shared by the outbound loop and the inbound loop's rare replies (ARP):
    // one uncontended lock per batch keeps them apart.
    private readonly Lock _sendGate = new();
    private int _fd;
    // GRO: messages received but not yet cut into slots.
    private int _groMessages, _groNext, _groOffset;

    private UdpBatchSocket(int fd, UdpEndpoint local, int capacity, bool gso, bool gro)
    {
        _fd = fd;
        LocalEndpoint = local;
        GsoEnabled = gso;
        GroEnabled = gro;
        _rx = new Direction(gro ? GroBuffers : capacity);
        _tx = new Direction(capacity);
        if (gro)
        {
            _groMemory = GC.AllocateArray<byte>(GroBuffers * GroBufferSize, pinned: true);
        }
    }

    public UdpEndpoint LocalEndpoint { get; }
    public bool GsoEnabled { get; private set; }
    public bool GroEnabled { get; }
    /// <summary>Why GSO was turned off after start, or null.</summary>
    public string? GsoDisabledReason { get; private set; }
    /// <summary>Messages sent with UDP_SEGMENT, and received messages that held more than one datagram.</summary>
    public long GsoMessages { get; private set; }
    public long GroMessages { get; private set; }
    public long SendErrors { get; private set; }
    /// <summary>Send errors by errno (index: the errno value, 0 to 133), kept by the one sending thread.</summary>
    public long[] SendErrorsByErrno { get; } = new long[134];
    public long ReceiveErrors { get; private set; }

    public string Offloads => (GsoEnabled, GroEnabled) switch
    {
        (true, true) => "gso gro",
        (true, false) => "gso",
        (false, true) => "gro",
        _ => "off",
    };

    /// <summary>Opens and binds the socket; <paramref name="batchCapacity"/> is the largest batch it will move.</summary>
    /// <remarks>
    /// With <paramref name="reusePort"/> (<c>SO_REUSEPORT</c>) several sockets share the address,
    /// one per queue; the kernel spreads incoming datagrams over them by a hash of the source.
    /// </remarks>
    public static UdpBatchSocket Bind(UdpEndpoint local, int batchCapacity, bool offload = false, bool reusePort = false)
    {
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
        {
            throw new NativeException("socket(AF_INET, SOCK_DGRAM)", errno);
        }
        int size = SocketBufferBytes;
        // FORCE variants pass rmem_max/wmem_max with CAP_NET_ADMIN; fall back to the plain ones.
        if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(int)) < 0)
        {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(int));
        }
        if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(int)) < 0)
        {
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(int));
        }
        int on = 1;
        if (reusePort && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(int)) < 0)
        {
            int err = errno;
            close(fd);
            throw new NativeException($"SO_REUSEPORT {local}", err);
        }
        sockaddr_in addr = default;
        Write(&addr, local);
        if (bind(fd, (sockaddr*)&addr, (uint)sizeof(sockaddr_in)) < 0)
        {
            int err = errno;
            close(fd);
            throw new NativeException($"bind {local}", err);
        }
        bool gso = false, gro = false;
        if (offload)
        {
            int zero = 0, one = 1;
            // Setting the socket-wide segment size to 0 succeeds exactly where UDP_SEGMENT exists (Linux 4.18).
            gso = setsockopt(fd, NativeMethods.SOL_UDP, NativeMethods.UDP_SEGMENT, &zero, sizeof(int)) == 0;
            gro = setsockopt(fd, NativeMethods.SOL_UDP, NativeMethods.UDP_GRO, &one, sizeof(int)) == 0;
        }
        return new UdpBatchSocket(fd, local, batchCapacity, gso, gro);
    }

    public int ReceiveBatch(PacketBatch batch, int timeoutMs)
    {
        batch.Count = 0;
        int fd = _fd;
        if (fd < 0)
        {
            return 0;
        }
        if (_groMemory is not null)
        {
            return ReceiveGro(fd, batch, timeoutMs);
        }
        if (!WaitReadable(fd, timeoutMs))
        {
            return 0;
        }
        int n = Math.Min(batch.Capacity, _rx.Capacity);
        int room = batch.SlotSize - PacketBatch.Headroom;
        for (int i = 0; i < n; i++)
        {
            _rx.Prepare(i, batch.SlotPointer(i) + PacketBatch.Headroom, room, withControl: false);
        }
        int got = NativeMethods.recvmmsg(fd, _rx.Msgs, (uint)n, NativeMethods.MSG_DONTWAIT, null);
        if (got < 0)
        {
            NoteReceiveError(Marshal.GetLastPInvokeError());
            return 0;
        }
        for (int i = 0; i < got; i++)
        {
            batch.Offsets[i] = PacketBatch.Headroom;
            batch.Lengths[i] = (int)_rx.Msgs[i].msg_len;
            batch.Endpoints[i] = Read(&_rx.Addrs[i]);
            batch.Flags[i] = (_rx.Msgs[i].msg_hdr.msg_flags & NativeMethods.MSG_TRUNC) != 0 ? PacketBatch.FlagTruncated : 0;
        }
        batch.Count = got;
        return got;
    }

    private static bool WaitReadable(int fd, int timeoutMs)
    {
        pollfd pfd = new() { fd = fd, events = POLLIN };
        return poll(&pfd, 1, timeoutMs) > 0;
    }

    private void NoteReceiveError(int err)
    {
        if (err != Errno.EAGAIN && err != Errno.EINTR)
        {
            ReceiveErrors++;
        }
    }

    /// <summary>UDP_GRO: receive runs of datagrams into 64 KiB buffers, then cut them into slots.</summary>
    private int ReceiveGro(int fd, PacketBatch batch, int timeoutMs)
    {
        int n = CutGro(batch, 0);
        if (_groNext < _groMessages)
        {
            batch.Count = n;
            return n; // still more cut pieces than slots
        }
        if (n == 0 && !WaitReadable(fd, timeoutMs))
        {
            return 0;
        }
        if (n < batch.Capacity)
        {
            byte* memory = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_groMemory!));
            for (int i = 0; i < GroBuffers; i++)
            {
                _rx.Prepare(i, memory + (nint)i * GroBufferSize, GroBufferSize, withControl: true);
            }
            int got = NativeMethods.recvmmsg(fd, _rx.Msgs, GroBuffers, NativeMethods.MSG_DONTWAIT, null);
            if (got < 0)
            {
                NoteReceiveError(Marshal.GetLastPInvokeError());
            }
            else
            {
                _groMessages = got;
                _groNext = 0;
                _groOffset = 0;
                n = CutGro(batch, n);
            }
        }
        batch.Count = n;
        return n;
    }

    /// <summary>Cuts received GRO messages into slots from <paramref name="n"/> until the batch is full.</summary>
    private int CutGro(PacketBatch batch, int n)
    {
        int room = batch.SlotSize - PacketBatch.Headroom;
        while (_groNext < _groMessages && n < batch.Capacity)
        {
            mmsghdr* m = _rx.Msgs + _groNext;
            int total = (int)m->msg_len;
            int segment = GroSegmentSize(&m->msg_hdr, total);
            if (_groOffset == 0 && segment < total)
            {
                GroMessages++;
            }
            bool truncated = (m->msg_hdr.msg_flags & NativeMethods.MSG_TRUNC) != 0;
            UdpEndpoint from = Read(&_rx.Addrs[_groNext]);
            ReadOnlySpan<byte> data = _groMemory.AsSpan(_groNext * GroBufferSize, total);
            while (_groOffset < total && n < batch.Capacity)
            {
                int len = Math.Min(segment, total - _groOffset);
                int copy = Math.Min(len, room);
                data.Slice(_groOffset, copy).CopyTo(batch.Slot(n)[PacketBatch.Headroom..]);
                batch.Offsets[n] = PacketBatch.Headroom;
                batch.Lengths[n] = copy;
                batch.Endpoints[n] = from;
                batch.Flags[n] = truncated || copy < len ? PacketBatch.FlagTruncated : 0;
                n++;
                _groOffset += len;
            }
            if (_groOffset >= total)
            {
                _groNext++;
                _groOffset = 0;
            }
        }
        return n;
    }

    /// <summary>The UDP_GRO segment size from the control messages, or the whole length when the kernel glued nothing.</summary>
    private static int GroSegmentSize(msghdr* h, int total)
    {
        byte* control = (byte*)h->msg_control;
        long length = (uint)h->msg_controllen;
        for (long off = 0; off + 16 <= length;)
        {
            long cmsgLen = *(long*)(control + off);
            int level = *(int*)(control + off + 8);
            int type = *(int*)(control + off + 12);
            if (cmsgLen < 16)
            {
                break;
            }
            if (level == NativeMethods.SOL_UDP && type == NativeMethods.UDP_GRO && cmsgLen >= 20)
            {
                int size = *(int*)(control + off + 16);
                return size > 0 ? size : total;
            }
            off += (cmsgLen + 7) & ~7L;
        }
        return total;
    }

    public int SendBatch(PacketBatch batch)
    {
        lock (_sendGate)
        {
            return SendFrom(batch, 0);
        }
    }

    private int SendFrom(PacketBatch batch, int firstSlot)
    {
        int fd = _fd;
        // 1. Gather the live slots into messages: with GSO, a run of equal-sized datagrams to one
        //    peer becomes one message with an iovec per datagram and a UDP_SEGMENT control message.
        int messages = 0, iovs = 0;
        for (int i = firstSlot; i < batch.Count && iovs < _tx.Capacity;)
        {
            int len = batch.Lengths[i];
            if (len == 0)
            {
                i++;
                continue;
            }
            UdpEndpoint to = batch.Endpoints[i];
            int first = iovs;
            int total = 0;
            int start = i;
            while (i < batch.Count && iovs < _tx.Capacity)
            {
                int l = batch.Lengths[i];
                if (l == 0)
                {
                    i++;
                    continue;
                }
                bool joins = iovs == first
                    || GsoEnabled && batch.Endpoints[i] == to && l <= len && iovs - first < NativeMethods.UDP_MAX_SEGMENTS
                       && total + l <= MaxUdpPayload && _tx.Iov[iovs - 1].iov_len == (size_t)(ulong)len;
                if (!joins)
                {
                    break;
                }
                _tx.Iov[iovs].iov_base = batch.SlotPointer(i) + batch.Offsets[i];
                _tx.Iov[iovs].iov_len = (size_t)(ulong)l;
                iovs++;
                total += l;
                i++;
            }
            int count = iovs - first;
            Write(&_tx.Addrs[messages], to);
            msghdr* h = &(_tx.Msgs + messages)->msg_hdr;
            h->msg_name = &_tx.Addrs[messages];
            h->msg_namelen = (uint)sizeof(sockaddr_in);
            h->msg_iov = &_tx.Iov[first];
            h->msg_iovlen = count;
            h->msg_flags = 0;
            if (count > 1)
            {
                byte* c = _tx.Control + messages * ControlRoom;
                *(long*)c = 16 + sizeof(ushort);           // cmsg_len = CMSG_LEN(2)
                *(int*)(c + 8) = NativeMethods.SOL_UDP;    // cmsg_level
                *(int*)(c + 12) = NativeMethods.UDP_SEGMENT; // cmsg_type
                *(ushort*)(c + 16) = (ushort)len;
                h->msg_control = c;
                h->msg_controllen = 24u;                  // CMSG_SPACE(2)
            }
            else
            {
                h->msg_control = null;
                h->msg_controllen = 0;
            }
            _tx.MessageSlots[messages] = count;
            _tx.MessageFirstSlot[messages] = start;
            messages++;
        }
        // 2. Send; on an error skip the message that caused it and go on with the rest.
        int sent = 0;
        int done = 0;
        int retries = 0;
        while (done < messages)
        {
            int r = NativeMethods.sendmmsg(fd, _tx.Msgs + done, (uint)(messages - done), 0);
            if (r > 0)
            {
                for (int k = done; k < done + r; k++)
                {
                    sent += _tx.MessageSlots[k];
                    GsoMessages += _tx.MessageSlots[k] > 1 ? 1 : 0;
                }
                done += r;
                retries = 0;
                continue;
            }
            int err = Marshal.GetLastPInvokeError();
            if (err == Errno.EINTR)
            {
                continue;
            }
            if (err == Errno.EAGAIN && retries++ < SendRetries)
            {
                pollfd pfd = new() { fd = fd, events = POLLOUT };
                poll(&pfd, 1, 10);
                continue;
            }
            if (err == Errno.EIO && GsoEnabled && _tx.MessageSlots[done] > 1)
            {
                // The path cannot segment (no checksum offload below us): plain datagrams from here on.
                GsoEnabled = false;
                GsoDisabledReason = "EIO from a UDP_SEGMENT send";
                return sent + SendFrom(batch, _tx.MessageFirstSlot[done]);
            }
            SendErrors++;
            if ((uint)err < (uint)SendErrorsByErrno.Length)
            {
                SendErrorsByErrno[err]++;
            }
            done++;
            retries = 0;
        }
        return sent;
    }

    private static void Write(sockaddr_in* addr, UdpEndpoint endpoint)
    {
        addr->sin_family = AF_INET;
        addr->sin_port = BinaryPrimitives.ReverseEndianness(endpoint.Port);
        *(uint*)&addr->sin_addr = BinaryPrimitives.ReverseEndianness(endpoint.Address);
    }

    private static UdpEndpoint Read(sockaddr_in* addr) =>
        new(BinaryPrimitives.ReverseEndianness(*(uint*)&addr->sin_addr), BinaryPrimitives.ReverseEndianness(addr->sin_port));

    public void Dispose()
    {
        int fd = Interlocked.Exchange(ref _fd, -1);
        if (fd >= 0)
        {
            close(fd);
        }
        _rx.Dispose();
        _tx.Dispose();
    }

    /// <summary>The native message vector of one direction, allocated once.</summary>
    private sealed class Direction : IDisposable
    {
        public Direction(int capacity)
        {
            Capacity = capacity;
            Msgs = (mmsghdr*)NativeMemory.AllocZeroed((nuint)capacity, (nuint)sizeof(mmsghdr));
            Iov = (iovec*)NativeMemory.AllocZeroed((nuint)capacity, (nuint)sizeof(iovec));
            Addrs = (sockaddr_in*)NativeMemory.AllocZeroed((nuint)capacity, (nuint)sizeof(sockaddr_in));
            Control = (byte*)NativeMemory.AllocZeroed((nuint)capacity, ControlRoom);
            MessageSlots = new int[capacity];
            MessageFirstSlot = new int[capacity];
        }

        public int Capacity { get; }
        public mmsghdr* Msgs { get; private set; }
        public iovec* Iov { get; private set; }
        public sockaddr_in* Addrs { get; private set; }
        public byte* Control { get; private set; }
        /// <summary>Send side: how many datagrams (slots) each message carries, and the slot it starts at.</summary>
        public int[] MessageSlots { get; }
        public int[] MessageFirstSlot { get; }

        /// <summary>Points message <paramref name="i"/> at one receive buffer (and its control room).</summary>
        public void Prepare(int i, byte* buffer, int length, bool withControl)
        {
            Iov[i].iov_base = buffer;
            Iov[i].iov_len = (size_t)(ulong)length;
            msghdr* h = &(Msgs + i)->msg_hdr;
            h->msg_name = &Addrs[i];
            h->msg_namelen = (uint)sizeof(sockaddr_in);
            h->msg_iov = &Iov[i];
            h->msg_iovlen = 1;
            h->msg_control = withControl ? Control + i * ControlRoom : null;
            h->msg_controllen = (uint)(withControl ? ControlRoom : 0);
            h->msg_flags = 0;
        }

        public void Dispose()
        {
            NativeMemory.Free(Msgs);
            NativeMemory.Free(Iov);
            NativeMemory.Free(Addrs);
            NativeMemory.Free(Control);
            Msgs = null;
            Iov = null;
            Addrs = null;
            Control = null;
        }
    }
}
