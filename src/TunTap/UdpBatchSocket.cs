using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Dataplane.TunTap.Native;
using Tmds.Linux;
#pragma warning disable CS8981
using mmsghdr = Dataplane.TunTap.Native.mmsghdr;
#pragma warning restore CS8981
using static Tmds.Linux.LibC;

namespace Dataplane.TunTap;

/// <summary>
/// An IPv4 UDP socket bound to the node's public address and the backend's port, moving
/// datagrams a batch at a time with recvmmsg/sendmmsg. The native message vectors are allocated
/// once per direction (the receive loop and the send loop each own theirs), so a batch costs one
/// system call and no allocation.
///
/// Error policy: EAGAIN on send waits briefly for room and retries; any other per-datagram send
/// error (ENOBUFS, ECONNREFUSED, ENETUNREACH, EMSGSIZE) skips that datagram and is counted.
/// A datagram larger than the slot comes back flagged <see cref="PacketBatch.FlagTruncated"/>.
/// </summary>
public sealed unsafe class UdpBatchSocket : IDatagramSocket
{
    private const int SendRetries = 3;
    private const int SocketBufferBytes = 4 << 20;

    private readonly Direction _rx;
    private readonly Direction _tx;
    private int _fd;

    private UdpBatchSocket(int fd, UdpEndpoint local, int capacity)
    {
        _fd = fd;
        LocalEndpoint = local;
        _rx = new Direction(capacity);
        _tx = new Direction(capacity);
    }

    public UdpEndpoint LocalEndpoint { get; }
    public long SendErrors { get; private set; }
    public int LastSendErrno { get; private set; }
    public long ReceiveErrors { get; private set; }

    /// <summary>Opens and binds the socket; <paramref name="batchCapacity"/> is the largest batch it will move.</summary>
    public static UdpBatchSocket Bind(UdpEndpoint local, int batchCapacity)
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
        sockaddr_in addr = default;
        Write(&addr, local);
        if (bind(fd, (sockaddr*)&addr, (uint)sizeof(sockaddr_in)) < 0)
        {
            int err = errno;
            close(fd);
            throw new NativeException($"bind {local}", err);
        }
        return new UdpBatchSocket(fd, local, batchCapacity);
    }

    public int ReceiveBatch(PacketBatch batch, int timeoutMs)
    {
        batch.Count = 0;
        int fd = _fd;
        pollfd pfd = new() { fd = fd, events = POLLIN };
        if (fd < 0 || poll(&pfd, 1, timeoutMs) <= 0)
        {
            return 0;
        }
        int n = Math.Min(batch.Capacity, _rx.Capacity);
        int room = batch.SlotSize - PacketBatch.Headroom;
        for (int i = 0; i < n; i++)
        {
            _rx.Iov[i].iov_base = batch.SlotPointer(i) + PacketBatch.Headroom;
            _rx.Iov[i].iov_len = (size_t)(ulong)room;
            msghdr* h = &(_rx.Msgs + i)->msg_hdr;
            h->msg_name = &_rx.Addrs[i];
            h->msg_namelen = (uint)sizeof(sockaddr_in);
            h->msg_iov = &_rx.Iov[i];
            h->msg_iovlen = 1;
            h->msg_control = null;
            h->msg_controllen = 0;
            h->msg_flags = 0;
        }
        int got = NativeMethods.recvmmsg(fd, _rx.Msgs, (uint)n, NativeMethods.MSG_DONTWAIT, null);
        if (got < 0)
        {
            int err = Marshal.GetLastPInvokeError();
            if (err != Errno.EAGAIN && err != Errno.EINTR)
            {
                ReceiveErrors++;
            }
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

    public int SendBatch(PacketBatch batch)
    {
        int fd = _fd;
        int n = 0;
        // 1. Gather the live slots into the native vector.
        for (int i = 0; i < batch.Count && n < _tx.Capacity; i++)
        {
            int len = batch.Lengths[i];
            if (len == 0)
            {
                continue;
            }
            _tx.Iov[n].iov_base = batch.SlotPointer(i) + batch.Offsets[i];
            _tx.Iov[n].iov_len = (size_t)(ulong)len;
            Write(&_tx.Addrs[n], batch.Endpoints[i]);
            msghdr* h = &(_tx.Msgs + n)->msg_hdr;
            h->msg_name = &_tx.Addrs[n];
            h->msg_namelen = (uint)sizeof(sockaddr_in);
            h->msg_iov = &_tx.Iov[n];
            h->msg_iovlen = 1;
            h->msg_control = null;
            h->msg_controllen = 0;
            h->msg_flags = 0;
            n++;
        }
        // 2. Send; on an error skip the datagram that caused it and go on with the rest.
        int sent = 0;
        int done = 0;
        int retries = 0;
        while (done < n)
        {
            int r = NativeMethods.sendmmsg(fd, _tx.Msgs + done, (uint)(n - done), 0);
            if (r > 0)
            {
                done += r;
                sent += r;
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
            SendErrors++;
            LastSendErrno = err;
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
        }

        public int Capacity { get; }
        public mmsghdr* Msgs { get; private set; }
        public iovec* Iov { get; private set; }
        public sockaddr_in* Addrs { get; private set; }

        public void Dispose()
        {
            NativeMemory.Free(Msgs);
            NativeMemory.Free(Iov);
            NativeMemory.Free(Addrs);
            Msgs = null;
            Iov = null;
            Addrs = null;
        }
    }
}
