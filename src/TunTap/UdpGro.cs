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
/// UDP_GRO receive (as wireguard-go keeps <c>conn/gso_linux.go</c> apart from the socket): the
/// kernel hands over runs of datagrams from one source glued together into one message, with the
/// segment size in a <c>UDP_GRO</c> control message. They are received into 64 KiB buffers and cut
/// apart here into one batch slot each; what does not fit the batch waits for the next call.
/// </summary>
internal sealed unsafe class UdpGro : IDisposable
{
    private const int Buffers = 16;          // coalesced receive buffers of 64 KiB
    private const int BufferSize = 65536;

    private readonly MessageVector _rx = new(Buffers);
    private readonly byte[] _memory = GC.AllocateArray<byte>(Buffers * BufferSize, pinned: true);
    // Messages received but not yet cut into slots.
    private int _messages, _next, _offset;

    /// <summary>Received messages that held more than one datagram.</summary>
    public long GluedMessages { get; private set; }

    /// <summary>Datagrams received earlier still wait for slots.</summary>
    public bool HasPending => _next < _messages;

    /// <summary>Receives what is ready (non-blocking) into the buffers; returns the errno on failure, else 0.</summary>
    public int Receive(int fd)
    {
        byte* memory = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_memory));
        for (int i = 0; i < Buffers; i++)
        {
            _rx.PrepareReceive(i, memory + (nint)i * BufferSize, BufferSize, withControl: true);
        }
        int got = NativeMethods.recvmmsg(fd, _rx.Msgs, Buffers, MSG_DONTWAIT, null);
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
            if (_offset == 0 && segment < total)
            {
                GluedMessages++;
            }
            bool truncated = (m->msg_hdr.msg_flags & MSG_TRUNC) != 0;
            UdpEndpoint from = UdpEndpoint.Read(&_rx.Addrs[_next]);
            ReadOnlySpan<byte> data = _memory.AsSpan(_next * BufferSize, total);
            while (_offset < total && n < batch.Capacity)
            {
                int len = Math.Min(segment, total - _offset);
                int copy = Math.Min(len, room);
                data.Slice(_offset, copy).CopyTo(batch.Slot(n)[PacketBatch.Headroom..]);
                batch.Offsets[n] = PacketBatch.Headroom;
                batch.Lengths[n] = copy;
                batch.Endpoints[n] = from;
                batch.Flags[n] = truncated || copy < len ? PacketBatch.FlagTruncated : 0;
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
