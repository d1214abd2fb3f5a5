using Dataplane.TunTap.Native;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace Dataplane.TunTap;

/// <summary>
/// A UDP socket (IPv4, or IPv6 only: <c>IPV6_V6ONLY</c>) bound to the node's public address of its
/// family and the backend's port, moving
/// datagrams a batch at a time with recvmmsg/sendmmsg. The native message vectors are allocated
/// once per direction, so a batch costs one system call and no allocation. The send side
/// (<see cref="UdpGso"/>) gathers sends into UDP_SEGMENT messages; the receive side
/// (<see cref="UdpBufferedReceive"/>) receives into 64 KiB buffers and cuts UDP_GRO runs and
/// kernel peers' tunnel superpackets into one datagram per slot. GSO and GRO are detected at bind
/// and used when asked for; EIO from a GSO send turns GSO off for good and the rest is sent plainly.
///
/// Error policy (<see cref="MessageSender"/>): EAGAIN on send waits briefly for room and retries; any
/// other per-message send error (ENOBUFS, ECONNREFUSED, ENETUNREACH, EMSGSIZE) skips that message and
/// is counted by errno.
/// A datagram larger than its slot comes back flagged <see cref="PacketBatch.FlagTruncated"/>.
///
/// Threads: one loop receives; the outbound loop sends, and the inbound loop's rare replies (ARP)
/// send too, so sends take one uncontended lock per batch. The descriptor is an
/// <see cref="EdgeDescriptor"/>: disposing the socket while a loop is inside a call defers the close.
/// </summary>
public sealed unsafe class UdpBatchSocket : IDisposable
{
    /// <summary>A full send buffer: three waits of 10 ms for room. ENOBUFS is the route refusing, not a full buffer.</summary>
    private static readonly RoomPolicy SendRoom = new(Waits: 3, WaitMs: 10, NoBuffersMeansFull: false);
    private const int SocketBufferBytes = 4 << 20;

    private readonly EdgeDescriptor _edge;
    private readonly UdpBufferedReceive _rx;
    private readonly MessageVector _tx;
    private readonly Lock _sendGate = new();

    private UdpBatchSocket(int fd, UdpEndpoint local, int capacity, bool gso, bool gro, EncapsulationLayout? layout)
    {
        LocalEndpoint = local;
        GsoEnabled = gso;
        GroEnabled = gro;
        _rx = new UdpBufferedReceive(capacity, gro, layout);
        _tx = new MessageVector(capacity);
        // The vectors live exactly as long as the descriptor: freed after the last call on it returned.
        _edge = new EdgeDescriptor(fd, afterClose: () =>
        {
            _rx.Dispose();
            _tx.Dispose();
        });
    }

    public UdpEndpoint LocalEndpoint { get; }
    public bool GsoEnabled { get; private set; }
    public bool GroEnabled { get; }
    /// <summary>Why GSO was turned off after start, or null.</summary>
    public string? GsoDisabledReason { get; private set; }
    /// <summary>Messages sent with UDP_SEGMENT, and received messages that held more than one datagram.</summary>
    public long GsoMessages { get; private set; }
    public long GroMessages => _rx.GluedMessages;
    /// <summary>Tunnel superpackets from kernel peers split into ordinary datagrams (<see cref="UdpBufferedReceive"/>), and the datagrams they made.</summary>
    public long TunnelSuperpackets => _rx.TunnelSuperpackets;
    public long TunnelSegments => _rx.TunnelSegments;
    public long SendErrors { get; private set; }
    /// <summary>Send errors by errno (index: the errno value, 0 to 133), kept under the send lock.</summary>
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
    /// <remarks>
    /// With a <paramref name="layout"/> a kernel peer's tunnel superpackets are split into ordinary datagrams.
    /// </remarks>
    public static UdpBatchSocket Bind(UdpEndpoint local, int batchCapacity, bool offload = false, bool reusePort = false, EncapsulationLayout? layout = null) =>
        Bind(local, batchCapacity, offload, reusePort, layout, sendOnly: false);

    /// <summary>
    /// Sockets that only send, one per outbound queue, bound to <paramref name="address"/> (its port
    /// is ignored) on consecutive ports the kernel agrees to: each queue's datagrams leave with their
    /// own source port, as kernel VXLAN varies the source port by flow (RFC 7348 section 5), so a
    /// receiver's SO_REUSEPORT group (see <see cref="SteerBySourcePort"/>) and the underlay's ECMP
    /// spread the queues' traffic instead of seeing one 4-tuple. The first port is a multiple of
    /// <paramref name="count"/>, so queue q's port leaves remainder q modulo the queue count: a
    /// receiver with as many queues takes it on its queue q, and answers from its queue q's port back
    /// to our queue q (both directions of a flow stay on one queue number, which the TUN's flow
    /// steering needs to keep a flow where it is).
    /// </summary>
    public static UdpBatchSocket[] BindSendPorts(UdpEndpoint address, int count, int batchCapacity, bool offload)
    {
        const int Attempts = 16;
        for (int attempt = 0; ; attempt++)
        {
            var sockets = new List<UdpBatchSocket>(count);
            try
            {
                // A free port from the kernel's ephemeral range, then the block from the next multiple of count.
                UdpBatchSocket probe = Bind(address with { Port = 0 }, batchCapacity, offload, false, null, sendOnly: true);
                int first = (probe.LocalEndpoint.Port + count - 1) / count * count;
                if (first == probe.LocalEndpoint.Port)
                {
                    sockets.Add(probe);
                }
                else
                {
                    probe.Dispose();
                }
                if (first + count - 1 > ushort.MaxValue)
                {
                    throw new NativeException($"bind {address.AddressText}: no {count} ports from {first}", Errno.EADDRINUSE);
                }
                for (int port = first + sockets.Count; port < first + count; port++)
                {
                    sockets.Add(Bind(address with { Port = (ushort)port }, batchCapacity, offload, false, null, sendOnly: true));
                }
                return [.. sockets];
            }
            catch (NativeException e) when (e.Errno == Errno.EADDRINUSE && attempt < Attempts)
            {
                sockets.ForEach(s => s.Dispose()); // another ephemeral port, another try
            }
            catch
            {
                sockets.ForEach(s => s.Dispose());
                throw;
            }
        }
    }

    /// <summary>
    /// Makes this socket's SO_REUSEPORT group (bound in queue order, this one among them) deliver a
    /// datagram to socket <c>source port % sockets</c> (a classic BPF program, SO_ATTACH_REUSEPORT_CBPF)
    /// instead of by the kernel's hash: a peer whose queues send from consecutive ports
    /// (<see cref="BindSendPorts"/>) reaches each of our queues, and a kernel VXLAN peer's flows (one
    /// source port each) spread over them. A flow keeps its source port, so it stays on one queue.
    /// </summary>
    public void SteerBySourcePort(int sockets)
    {
        // IPv4: X = the IP header's length; A = the 16 bits after it (the UDP source port). IPv6: at 40.
        ReadOnlySpan<(ushort Code, uint K)> program = LocalEndpoint.IsIpv6
            ?
            [
                (0x28, unchecked((uint)(NativeMethods.SKF_NET_OFF + 40))), // ldh [net + 40]
                (0x94, (uint)sockets),                                        // mod #sockets
                (0x16, 0),                                                    // ret a
            ]
            :
            [
                (0xb1, unchecked((uint)NativeMethods.SKF_NET_OFF)),          // ldxb 4 * ([net] & 0xf)
                (0x48, unchecked((uint)NativeMethods.SKF_NET_OFF)),          // ldh [x + net]
                (0x94, (uint)sockets),                                        // mod #sockets
                (0x16, 0),                                                    // ret a
            ];
        // struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; }, struct sock_fprog { u16 len; sock_filter* filter; }
        ulong* filter = stackalloc ulong[program.Length];
        for (int i = 0; i < program.Length; i++)
        {
            filter[i] = program[i].Code | ((ulong)program[i].K << 32);
        }
        byte* fprog = stackalloc byte[16];
        *(ushort*)fprog = (ushort)program.Length;
        *(ulong**)(fprog + 8) = filter;
        using DescriptorEntry entry = _edge.Enter();
        if (!entry.IsOpen)
        {
            throw new ObjectDisposedException(nameof(UdpBatchSocket));
        }
        if (setsockopt(entry.Fd, SOL_SOCKET, NativeMethods.SO_ATTACH_REUSEPORT_CBPF, fprog, 16) < 0)
        {
            throw new NativeException($"SO_ATTACH_REUSEPORT_CBPF {LocalEndpoint}", Errno.Last);
        }
    }

    /// <summary>
    /// A bound UDP socket whose descriptor another process passed us (<see cref="DescriptorPassing"/>),
    /// with the datagrams queued in it: its address read back (getsockname), GSO where UDP_SEGMENT is
    /// there, GRO as that process left it (UDP_GRO read back).
    /// </summary>
    public static UdpBatchSocket Adopt(int fd, int batchCapacity, EncapsulationLayout? layout = null)
    {
        byte* addr = stackalloc byte[UdpEndpoint.StorageSize];
        socklen_t length = (uint)UdpEndpoint.StorageSize;
        if (getsockname(fd, (sockaddr*)addr, &length) < 0)
        {
            int err = Errno.Last;
            close(fd);
            throw new NativeException("getsockname (adopting a UDP socket)", err);
        }
        int zero = 0, gro = 0;
        socklen_t size = sizeof(int);
        bool gso = setsockopt(fd, NativeMethods.SOL_UDP, NativeMethods.UDP_SEGMENT, &zero, sizeof(int)) == 0;
        getsockopt(fd, NativeMethods.SOL_UDP, NativeMethods.UDP_GRO, &gro, &size);
        return new UdpBatchSocket(fd, UdpEndpoint.Read(addr), batchCapacity, gso, gro != 0, layout);
    }

    /// <summary>The descriptor's number, to pass it to another process (<see cref="DescriptorPassing"/>); the socket stays ours.</summary>
    public int DescriptorNumber => _edge.Handle.Number;

    private static UdpBatchSocket Bind(UdpEndpoint local, int batchCapacity, bool offload, bool reusePort, EncapsulationLayout? layout, bool sendOnly)
    {
        int fd = socket(local.IsIpv6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
        {
            throw new NativeException(local.IsIpv6 ? "socket(AF_INET6, SOCK_DGRAM)" : "socket(AF_INET, SOCK_DGRAM)", Errno.Last);
        }
        int size = SocketBufferBytes;
        // FORCE variants pass rmem_max/wmem_max with CAP_NET_ADMIN; fall back to the plain ones.
        // A socket that only sends keeps the kernel's default receive buffer: nothing should arrive.
        if (!sendOnly && setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(int)) < 0)
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
            int err = Errno.Last;
            close(fd);
            throw new NativeException($"SO_REUSEPORT {local}", err);
        }
        if (local.IsIpv6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(int)) < 0)
        {
            int err = Errno.Last;
            close(fd);
            throw new NativeException($"IPV6_V6ONLY {local}", err);
        }
        byte* addr = stackalloc byte[UdpEndpoint.StorageSize];
        int addrLength = local.Write(addr);
        if (bind(fd, (sockaddr*)addr, (uint)addrLength) < 0)
        {
            int err = Errno.Last;
            close(fd);
            throw new NativeException($"bind {local}", err);
        }
        if (local.Port == 0)
        {
            socklen_t length = (uint)UdpEndpoint.StorageSize;
            getsockname(fd, (sockaddr*)addr, &length);
            local = UdpEndpoint.Read(addr); // the port the kernel chose
        }
        bool gso = false, gro = false;
        if (offload)
        {
            int zero = 0, one = 1;
            // Setting the socket-wide segment size to 0 succeeds exactly where UDP_SEGMENT exists (Linux 4.18).
            gso = setsockopt(fd, NativeMethods.SOL_UDP, NativeMethods.UDP_SEGMENT, &zero, sizeof(int)) == 0;
            gro = !sendOnly && setsockopt(fd, NativeMethods.SOL_UDP, NativeMethods.UDP_GRO, &one, sizeof(int)) == 0;
        }
        return new UdpBatchSocket(fd, local, batchCapacity, gso, gro, layout);
    }

    public int ReceiveBatch(PacketBatch batch, int timeoutMs)
    {
        batch.Count = 0;
        using DescriptorEntry entry = _edge.Enter();
        return entry.IsOpen ? Receive(entry.Fd, batch, timeoutMs) : 0; // closed: the loop is stopping
    }

    /// <summary>Cut what is pending first; wait and receive more only when the batch has room.</summary>
    private int Receive(int fd, PacketBatch batch, int timeoutMs)
    {
        UdpBufferedReceive rx = _rx;
        int n = rx.Cut(batch, 0);
        if (rx.HasPending)
        {
            batch.Count = n;
            return n; // still more cut pieces than slots
        }
        if (n == 0 && _edge.WaitReadable(fd, timeoutMs) != Readiness.Ready)
        {
            return 0;
        }
        n = ReceiveReady(fd, batch, n);
        batch.Count = n;
        return n;
    }

    /// <summary>Receives what is ready now (no wait) and cuts it into the batch from slot <paramref name="n"/>; returns the new count.</summary>
    private int ReceiveReady(int fd, PacketBatch batch, int n)
    {
        if (n >= batch.Capacity)
        {
            return n;
        }
        int err = _rx.Receive(fd);
        if (err != 0)
        {
            NoteReceiveError(err);
            return n;
        }
        return _rx.Cut(batch, n);
    }

    /// <summary>For <see cref="UnderlaySockets"/>: cuts datagrams received earlier into the batch from slot <paramref name="n"/>.</summary>
    internal int CutPending(PacketBatch batch, int n) => _rx.Cut(batch, n);

    /// <summary>For <see cref="UnderlaySockets"/>: received datagrams still wait for slots.</summary>
    internal bool HasPending => _rx.HasPending;

    /// <summary>For <see cref="UnderlaySockets"/>: receives what is ready now into the batch from slot <paramref name="n"/>.</summary>
    internal int ReceiveReady(PacketBatch batch, int n)
    {
        using DescriptorEntry entry = _edge.Enter();
        return entry.IsOpen ? ReceiveReady(entry.Fd, batch, n) : n;
    }

    /// <summary>For <see cref="UnderlaySockets"/>: the descriptor and wake event (a queue's two sockets are waited on together).</summary>
    internal EdgeDescriptor Edge => _edge;

    private void NoteReceiveError(int err)
    {
        if (err != Errno.EAGAIN && err != Errno.EINTR)
        {
            ReceiveErrors++;
        }
    }

    public int SendBatch(PacketBatch batch)
    {
        using DescriptorEntry entry = _edge.Enter();
        if (!entry.IsOpen)
        {
            return 0;
        }
        lock (_sendGate)
        {
            return SendFrom(entry.Fd, batch, 0);
        }
    }

    private int SendFrom(int fd, PacketBatch batch, int firstSlot)
    {
        // 1. Gather the live slots into messages (GSO runs where it is on).
        int messages = UdpGso.Gather(batch, firstSlot, _tx, GsoEnabled, LocalEndpoint.IsIpv6);
        // 2. Send; a refused message is skipped and counted, and the rest go on.
        int sent = 0;
        for (int next = 0; next < messages;)
        {
            int stop = MessageSender.SendUntilFailure(fd, _tx, next, messages, SendRoom, GsoEnabled, out SendFailure failure, out int err);
            for (int k = next; k < stop; k++)
            {
                sent += _tx.MessageSlots[k];
                GsoMessages += _tx.MessageSlots[k] > 1 ? 1 : 0;
            }
            if (stop == messages)
            {
                break;
            }
            if (failure == SendFailure.SegmentationUnsupported)
            {
                // The path cannot segment (no checksum offload below us): plain datagrams from here on.
                GsoEnabled = false;
                GsoDisabledReason = "EIO from a UDP_SEGMENT send";
                return sent + SendFrom(fd, batch, _tx.MessageFirstSlot[stop]);
            }
            SendErrors++;
            if ((uint)err < (uint)SendErrorsByErrno.Length)
            {
                SendErrorsByErrno[err]++;
            }
            next = stop + 1;
        }
        return sent;
    }

    /// <summary>The descriptor (tests check when it closes).</summary>
    internal FileDescriptor Descriptor => _edge.Handle;

    /// <summary>Wakes a loop waiting in <see cref="ReceiveBatch"/>; later waits return at once.</summary>
    public void StopWaiting() => _edge.StopWaiting();

    public void ResumeWaiting() => _edge.ResumeWaiting();

    /// <summary>Closes the socket (after any call in progress has returned; the message vectors go with it).</summary>
    public void Dispose() => _edge.Dispose();
}
