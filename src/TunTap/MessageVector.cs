using System.Runtime.InteropServices;
using Tmds.Linux;
#pragma warning disable CS8981
using mmsghdr = Dataplane.TunTap.Native.mmsghdr;
#pragma warning restore CS8981

namespace Dataplane.TunTap;

/// <summary>
/// The native message vector of one direction of a <see cref="UdpBatchSocket"/> (what recvmmsg and
/// sendmmsg take), allocated once: messages, an iovec per datagram, an address per message and
/// control room per message for one small control message (UDP_SEGMENT, UDP_GRO). Addresses have
/// room for either family (<see cref="UdpEndpoint.StorageSize"/>).
/// </summary>
internal sealed unsafe class MessageVector : IDisposable
{
    /// <summary>Per message: room for one cmsghdr (16) and a small value, as CMSG_SPACE of an int rounds up.</summary>
    public static readonly int ControlRoom = LibC.CMSG_SPACE(sizeof(int)) * 2;

    public MessageVector(int capacity)
    {
        Capacity = capacity;
        Msgs = (mmsghdr*)NativeMemory.AllocZeroed((nuint)capacity, (nuint)sizeof(mmsghdr));
        Iov = (iovec*)NativeMemory.AllocZeroed((nuint)capacity, (nuint)sizeof(iovec));
        Addrs = (byte*)NativeMemory.AllocZeroed((nuint)capacity, (nuint)UdpEndpoint.StorageSize);
        Control = (byte*)NativeMemory.AllocZeroed((nuint)capacity, (nuint)ControlRoom);
        MessageSlots = new int[capacity];
        MessageFirstSlot = new int[capacity];
    }

    public int Capacity { get; }
    public mmsghdr* Msgs { get; private set; }
    public iovec* Iov { get; private set; }
    /// <summary>One socket address per message, <see cref="UdpEndpoint.StorageSize"/> bytes apart (<see cref="Addr"/>).</summary>
    public byte* Addrs { get; private set; }

    /// <summary>Message <paramref name="i"/>'s socket address.</summary>
    public byte* Addr(int i) => Addrs + (nint)i * UdpEndpoint.StorageSize;
    public byte* Control { get; private set; }
    /// <summary>Send side: how many datagrams (slots) each message carries, and the slot it starts at.</summary>
    public int[] MessageSlots { get; }
    public int[] MessageFirstSlot { get; }

    /// <summary>Points message <paramref name="i"/> at one receive buffer (and its control room).</summary>
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
