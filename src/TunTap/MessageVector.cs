using System.Runtime.InteropServices;
using Tmds.Linux;
#pragma warning disable CS8981
using mmsghdr = Dataplane.TunTap.Native.mmsghdr;
#pragma warning restore CS8981

namespace Dataplane.TunTap;

/// <summary>
/// A native message vector, what recvmmsg and sendmmsg take, allocated once and reused for every
/// batch: messages, iovecs, and as each edge needs, a socket address per message (UDP; room for
/// either family, <see cref="UdpEndpoint.StorageSize"/>), control room per message for one small
/// control message (UDP_SEGMENT, UDP_GRO) and a scratch per message for headers written in front
/// of a packet (a packet socket's virtio-net and Ethernet headers). Every message array of the
/// edges is one of these; the edge frees it when its descriptor closes.
/// </summary>
internal sealed unsafe class MessageVector : IDisposable
{
    /// <summary>Per message: room for one cmsghdr (16) and a small value, as CMSG_SPACE of an int rounds up.</summary>
    public static readonly int ControlRoom = LibC.CMSG_SPACE(sizeof(int)) * 2;

    /// <param name="capacity">Messages.</param>
    /// <param name="iovecs">iovecs in all (UDP sends give a GSO message several; 0: one per message).</param>
    /// <param name="addresses">A socket address per message (a packet socket bound to its link needs none).</param>
    /// <param name="control">Control room per message.</param>
    /// <param name="scratchRoom">Bytes of scratch per message (0: none).</param>
    public MessageVector(int capacity, int iovecs = 0, bool addresses = true, bool control = true, int scratchRoom = 0)
    {
        Capacity = capacity;
        ScratchRoom = scratchRoom;
        Msgs = (mmsghdr*)NativeMemory.AllocZeroed((nuint)capacity, (nuint)sizeof(mmsghdr));
        Iov = (iovec*)NativeMemory.AllocZeroed((nuint)(iovecs > 0 ? iovecs : capacity), (nuint)sizeof(iovec));
        Addrs = addresses ? (byte*)NativeMemory.AllocZeroed((nuint)capacity, (nuint)UdpEndpoint.StorageSize) : null;
        Control = control ? (byte*)NativeMemory.AllocZeroed((nuint)capacity, (nuint)ControlRoom) : null;
        Scratch = scratchRoom > 0 ? (byte*)NativeMemory.AllocZeroed((nuint)capacity, (nuint)scratchRoom) : null;
        MessageSlots = new int[capacity];
        MessageFirstSlot = new int[capacity];
    }

    public int Capacity { get; }
    public int ScratchRoom { get; }
    public mmsghdr* Msgs { get; private set; }
    public iovec* Iov { get; private set; }
    /// <summary>One socket address per message, <see cref="UdpEndpoint.StorageSize"/> bytes apart (<see cref="Addr"/>).</summary>
    public byte* Addrs { get; private set; }

    /// <summary>Message <paramref name="i"/>'s socket address.</summary>
    public byte* Addr(int i) => Addrs + (nint)i * UdpEndpoint.StorageSize;
    public byte* Control { get; private set; }
    public byte* Scratch { get; private set; }

    /// <summary>Message <paramref name="i"/>'s scratch (<see cref="ScratchRoom"/> bytes).</summary>
    public byte* ScratchOf(int i) => Scratch + (nint)i * ScratchRoom;

    /// <summary>Send side: how many datagrams (slots, or a superpacket's segments) each message carries, and the slot it starts at.</summary>
    public int[] MessageSlots { get; }
    public int[] MessageFirstSlot { get; }

    /// <summary>Points message <paramref name="i"/> at one receive buffer (and its address and control room).</summary>
    public void PrepareReceive(int i, byte* buffer, int length, bool withControl)
    {
        Iov[i].iov_base = buffer;
        Iov[i].iov_len = (size_t)(ulong)length;
        msghdr* h = &(Msgs + i)->msg_hdr;
        h->msg_name = Addr(i);
        h->msg_namelen = (uint)UdpEndpoint.StorageSize;
        h->msg_iov = &Iov[i];
        h->msg_iovlen = 1;
        h->msg_control = withControl ? Control + i * ControlRoom : null;
        h->msg_controllen = (uint)(withControl ? ControlRoom : 0);
        h->msg_flags = 0;
    }

    /// <summary>Points message <paramref name="i"/> at <paramref name="count"/> iovecs from <paramref name="firstIov"/>, with no address or control message.</summary>
    public void PrepareGather(int i, int firstIov, int count)
    {
        mmsghdr* m = Msgs + i;
        msghdr* h = &m->msg_hdr;
        h->msg_name = null;
        h->msg_namelen = 0;
        h->msg_iov = Iov + firstIov;
        h->msg_iovlen = count;
        h->msg_control = null;
        h->msg_controllen = 0;
        h->msg_flags = 0;
        m->msg_len = 0;
    }

    public void Dispose()
    {
        NativeMemory.Free(Msgs);
        NativeMemory.Free(Iov);
        NativeMemory.Free(Addrs);
        NativeMemory.Free(Control);
        NativeMemory.Free(Scratch);
        Msgs = null;
        Iov = null;
        Addrs = null;
        Control = null;
        Scratch = null;
    }
}
