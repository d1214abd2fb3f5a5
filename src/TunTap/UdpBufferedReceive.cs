using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Dataplane.Encap.Offload;
using Dataplane.TunTap.Native;
using Tmds.Linux;
using static Tmds.Linux.LibC;
#pragma warning disable CS8981
using mmsghdr = Dataplane.TunTap.Native.mmsghdr;
#pragma warning restore CS8981

namespace Dataplane.TunTap;

/// <summary>
/// The receive side of a <see cref="UdpBatchSocket"/> (as wireguard-go keeps <c>conn/gso_linux.go</c>
/// apart from the socket): recvmmsg into 64 KiB buffers, then cut what arrived into one batch slot
/// per datagram; what does not fit the batch waits for the next call.
///
///  1. UDP_GRO (offloads on): the kernel hands over runs of datagrams from one source glued
///     together into one message, with the segment size in a <c>UDP_GRO</c> control message; they
///     are cut apart by that size.
///  2. Tunnel superpackets (always): a kernel VXLAN peer on a veth or virtio underlay sends an
///     inner TCP/UDP superpacket encapsulated once, as one datagram larger than the tunnel MTU.
///     It is split into ordinary datagrams (<see cref="TunnelSuperpacket"/>), so the engine only
///     ever sees datagrams as the wire would carry them.
///  3. A datagram larger than a slot and neither of these is flagged
///     <see cref="PacketBatch.FlagTruncated"/> (the engine drops it as such).
/// </summary>
internal sealed unsafe class UdpBufferedReceive : IDisposable
{
    private const int MaxBuffers = 16;       // 64 KiB receive buffers per recvmmsg
    private const int BufferSize = 65536;

    private readonly int _buffers;
    private readonly MessageVector _rx;
    private readonly byte[] _memory;
    private readonly EncapsulationLayout? _layout;
    // Messages received but not yet cut into slots.
    private int _messages, _next, _offset;
    // The tunnel superpacket being split (message _next), if any.
    private bool _splitting;
    private int _splitNext, _splitSegments, _splitL4, _splitHeaders;
    private Encap.Offload.VirtioNetHeader _splitHeader;

    /// <param name="batchCapacity">The largest batch: without GRO one buffer per datagram is enough up to 16.</param>
    /// <param name="gro">Whether UDP_GRO is on (control messages are read).</param>
    /// <param name="layout">Where inner packets sit; null: no tunnel superpackets are looked for.</param>
    public UdpBufferedReceive(int batchCapacity, bool gro, EncapsulationLayout? layout)
    {
        _buffers = gro ? MaxBuffers : Math.Clamp(batchCapacity, 1, MaxBuffers);
        _rx = new MessageVector(_buffers);
        _memory = GC.AllocateArray<byte>(_buffers * BufferSize, pinned: true);
        _layout = layout;
    }

    /// <summary>Received messages that held more than one datagram.</summary>
    public long GluedMessages { get; private set; }

    /// <summary>Tunnel superpackets received (split into <see cref="TunnelSegments"/> datagrams).</summary>
    public long TunnelSuperpackets { get; private set; }
    public long TunnelSegments { get; private set; }

    /// <summary>Datagrams received earlier still wait for slots.</summary>
    public bool HasPending => _next < _messages;

    /// <summary>Receives what is ready (non-blocking) into the buffers; returns the errno on failure, else 0.</summary>
    public int Receive(int fd)
    {
        byte* memory = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_memory));
        for (int i = 0; i < _buffers; i++)
        {
            _rx.PrepareReceive(i, memory + (nint)i * BufferSize, BufferSize, withControl: true);
        }
        int got = NativeMethods.recvmmsg(fd, _rx.Msgs, (uint)_buffers, MSG_DONTWAIT, null);
        if (got < 0)
        {
            return Errno.Last;
        }
        _messages = got;
        _next = 0;
        _offset = 0;
        return 0;
    }

    /// <summary>Cuts received messages into slots from <paramref name="n"/> until the batch is full; returns the new count.</summary>
    public int Cut(PacketBatch batch, int n)
    {
        int room = batch.SlotSize - PacketBatch.Headroom;
        while (_next < _messages && n < batch.Capacity)
        {
            mmsghdr* m = _rx.Msgs + _next;
            int total = (int)m->msg_len;
            int segment = SegmentSize(&m->msg_hdr, total);
            bool truncated = (m->msg_hdr.msg_flags & MSG_TRUNC) != 0;
            UdpEndpoint from = UdpEndpoint.Read(_rx.Addr(_next));
            ReadOnlySpan<byte> data = _memory.AsSpan(_next * BufferSize, total);
            if (_offset == 0 && !_splitting && !truncated && _layout is not null
                && TunnelSuperpacket.TryDescribe(data, _layout.InnerOffset, segment < total ? segment : 0, _layout.InnerMtu,
                    out _splitHeader, out _splitL4, out _splitHeaders, out _splitSegments)
                && _splitHeaders + _layout.InnerOffset + _splitHeader.GsoSize <= room)
            {
                _splitting = true;
                _splitNext = 0;
                TunnelSuperpackets++;
                TunnelSegments += _splitSegments;
            }
            if (_splitting)
            {
                n = Split(data, batch, n, from);
                if (_splitNext == _splitSegments)
                {
                    _splitting = false;
                    _next++;
                }
                continue;
            }
            if (_offset == 0 && segment < total)
            {
                GluedMessages++;
            }
            while (_offset < total && n < batch.Capacity)
            {
                int len = Math.Min(segment, total - _offset);
                int copy = Math.Min(len, room);
                data.Slice(_offset, copy).CopyTo(batch.Slot(n)[PacketBatch.Headroom..]);
                Fill(batch, n, copy, from, truncated || copy < len);
                n++;
                _offset += len;
            }
            if (_offset >= total)
            {
                _next++;
                _offset = 0;
            }
        }
        return n;
    }

    /// <summary>Writes the tunnel superpacket's next datagrams into free slots from <paramref name="n"/>.</summary>
    private int Split(ReadOnlySpan<byte> data, PacketBatch batch, int n, UdpEndpoint from)
    {
        int prefix = _layout!.InnerOffset;
        while (_splitNext < _splitSegments && n < batch.Capacity)
        {
            int len = TunnelSuperpacket.WriteDatagram(data, prefix, _splitHeader, _splitL4, _splitHeaders, _splitNext, batch.Slot(n)[PacketBatch.Headroom..]);
            Fill(batch, n, len, from, truncated: false);
            n++;
            _splitNext++;
        }
        return n;
    }

    private static void Fill(PacketBatch batch, int n, int length, UdpEndpoint from, bool truncated)
    {
        batch.Offsets[n] = PacketBatch.Headroom;
        batch.Lengths[n] = length;
        batch.Endpoints[n] = from;
        batch.Flags[n] = truncated ? PacketBatch.FlagTruncated : 0;
    }

    /// <summary>The UDP_GRO segment size from the control messages, or the whole length when the kernel glued nothing.</summary>
    private static int SegmentSize(msghdr* h, int total)
    {
        for (cmsghdr* c = CMSG_FIRSTHDR(h); c != null; c = CMSG_NXTHDR(h, c))
        {
            if (c->cmsg_level == NativeMethods.SOL_UDP && c->cmsg_type == NativeMethods.UDP_GRO && (uint)c->cmsg_len >= (uint)NativeMethods.CMSG_LEN(sizeof(int)))
            {
                int size = *(int*)CMSG_DATA(c);
                return size > 0 ? size : total;
            }
        }
        return total;
    }

    public void Dispose() => _rx.Dispose();
}
