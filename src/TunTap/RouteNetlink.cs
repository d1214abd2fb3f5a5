using System.Buffers.Binary;
using System.Text;
using Dataplane.Encap;
using Dataplane.TunTap.Native;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace Dataplane.TunTap;

/// <summary>
/// rtnetlink (<c>NETLINK_ROUTE</c>), written out by hand for what a node needs: bring a link up
/// with an MTU, add an address, add/replace/delete a route, delete a link. Every request asks for
/// an acknowledgement and the kernel's errno is thrown as a <see cref="NativeException"/> that
/// names the operation. Messages are little-endian host structs (see <see cref="NetlinkLayout"/>).
/// Not for the packet path: one request per call, allocations are fine here.
/// </summary>
public sealed unsafe class RouteNetlink : IDisposable
{
    private readonly FileDescriptor _fd;
    private uint _seq = (uint)Environment.TickCount;

    private RouteNetlink(int fd) => _fd = new FileDescriptor(fd);

    public static RouteNetlink Open()
    {
        int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NetlinkLayout.NETLINK_ROUTE);
        if (fd < 0)
        {
            throw new NativeException("socket(AF_NETLINK, NETLINK_ROUTE)", Errno.Last);
        }
        byte* addr = stackalloc byte[NetlinkLayout.SockaddrNlSize];
        new Span<byte>(addr, NetlinkLayout.SockaddrNlSize).Clear();
        *(ushort*)addr = (ushort)AF_NETLINK;
        if (bind(fd, (sockaddr*)addr, NetlinkLayout.SockaddrNlSize) < 0)
        {
            int err = Errno.Last;
            close(fd);
            throw new NativeException("bind(AF_NETLINK)", err);
        }
        return new RouteNetlink(fd);
    }

    /// <summary>The interface index of <paramref name="name"/>, or 0 when there is no such link.</summary>
    public static int LinkIndex(string name) => (int)NativeMethods.if_nametoindex(name);

    /// <summary>The MTU of <paramref name="name"/> (SIOCGIFMTU).</summary>
    public static int GetMtu(string name)
    {
        int number = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (number < 0)
        {
            throw new NativeException("socket(AF_INET)", Errno.Last);
        }
        using var fd = new FileDescriptor(number);
        {
            ifreq req = default;
            byte[] bytes = Encoding.UTF8.GetBytes(name);
            if (bytes.Length >= ifreq.IFNAMSIZ)
            {
                throw new ArgumentException($"interface name '{name}' is too long");
            }
            for (int i = 0; i < bytes.Length; i++)
            {
                req.ifr_name[i] = bytes[i];
            }
            if (NativeMethods.ioctl_ifreq(fd.Number, NativeMethods.SIOCGIFMTU, &req) < 0)
            {
                throw new NativeException($"SIOCGIFMTU {name}", Errno.Last);
            }
            return req.ifr_mtu;
        }
    }

    /// <summary>Sets IFF_UP and the MTU of link <paramref name="index"/> (like <c>ip link set dev X mtu M up</c>).</summary>
    public void SetLinkUp(int index, int mtu, string what, int txQueueLength = 0)
    {
        var m = new Message(NetlinkLayout.RTM_NEWLINK, NetlinkLayout.NLM_F_REQUEST | NetlinkLayout.NLM_F_ACK);
        Span<byte> ifi = m.Reserve(NetlinkLayout.IfinfomsgSize);
        ifi[0] = 0; // AF_UNSPEC
        BinaryPrimitives.WriteInt32LittleEndian(ifi[4..], index);
        BinaryPrimitives.WriteUInt32LittleEndian(ifi[8..], NetlinkLayout.IFF_UP);  // flags
        BinaryPrimitives.WriteUInt32LittleEndian(ifi[12..], NetlinkLayout.IFF_UP); // change
        m.AttributeU32(NetlinkLayout.IFLA_MTU, (uint)mtu);
        if (txQueueLength > 0)
        {
            m.AttributeU32(NetlinkLayout.IFLA_TXQLEN, (uint)txQueueLength);
        }
        Execute(m, what);
    }

    /// <summary>Adds <paramref name="address"/>/<paramref name="prefixLength"/> to link <paramref name="index"/>; an existing one is kept.</summary>
    public void AddAddress(int index, uint address, int prefixLength, string what)
    {
        var m = new Message(NetlinkLayout.RTM_NEWADDR,
            NetlinkLayout.NLM_F_REQUEST | NetlinkLayout.NLM_F_ACK | NetlinkLayout.NLM_F_CREATE | NetlinkLayout.NLM_F_REPLACE);
        Span<byte> ifa = m.Reserve(NetlinkLayout.IfaddrmsgSize);
        ifa[0] = (byte)AF_INET;
        ifa[1] = (byte)prefixLength;
        ifa[2] = 0; // flags
        ifa[3] = 0; // RT_SCOPE_UNIVERSE
        BinaryPrimitives.WriteInt32LittleEndian(ifa[4..], index);
        m.AttributeIpv4(NetlinkLayout.IFA_LOCAL, address);
        m.AttributeIpv4(NetlinkLayout.IFA_ADDRESS, address);
        Execute(m, what);
    }

    /// <summary><c>ip route replace PREFIX dev INDEX</c> (scope link, main table).</summary>
    public void ReplaceRoute(Ipv4Prefix prefix, int index, string what) =>
        Execute(RouteMessage(NetlinkLayout.RTM_NEWROUTE,
            NetlinkLayout.NLM_F_REQUEST | NetlinkLayout.NLM_F_ACK | NetlinkLayout.NLM_F_CREATE | NetlinkLayout.NLM_F_REPLACE,
            prefix, index), what);

    /// <summary><c>ip route del PREFIX dev INDEX</c>; a route already gone is not an error.</summary>
    public void DeleteRoute(Ipv4Prefix prefix, int index, string what)
    {
        try
        {
            Execute(RouteMessage(NetlinkLayout.RTM_DELROUTE, NetlinkLayout.NLM_F_REQUEST | NetlinkLayout.NLM_F_ACK, prefix, index), what);
        }
        catch (NativeException e) when (e.Errno is Errno.ESRCH or Errno.ENODEV)
        {
        }
    }

    /// <summary><c>ip link del</c>; a link already gone is not an error.</summary>
    public void DeleteLink(int index, string what)
    {
        var m = new Message(NetlinkLayout.RTM_DELLINK, NetlinkLayout.NLM_F_REQUEST | NetlinkLayout.NLM_F_ACK);
        Span<byte> ifi = m.Reserve(NetlinkLayout.IfinfomsgSize);
        BinaryPrimitives.WriteInt32LittleEndian(ifi[4..], index);
        try
        {
            Execute(m, what);
        }
        catch (NativeException e) when (e.Errno is Errno.ENODEV)
        {
        }
    }

    private static Message RouteMessage(ushort type, ushort flags, Ipv4Prefix prefix, int index)
    {
        var m = new Message(type, flags);
        Span<byte> rtm = m.Reserve(NetlinkLayout.RtmsgSize);
        rtm[0] = (byte)AF_INET;
        rtm[1] = (byte)prefix.Length; // rtm_dst_len
        rtm[4] = NetlinkLayout.RT_TABLE_MAIN;
        rtm[5] = NetlinkLayout.RTPROT_BOOT;
        rtm[6] = NetlinkLayout.RT_SCOPE_LINK;
        rtm[7] = NetlinkLayout.RTN_UNICAST;
        m.AttributeIpv4(NetlinkLayout.RTA_DST, prefix.Address);
        m.AttributeU32(NetlinkLayout.RTA_OIF, (uint)index);
        return m;
    }

    private void Execute(Message m, string what)
    {
        uint seq = ++_seq;
        byte[] request = m.Finish(seq);
        byte* kernel = stackalloc byte[NetlinkLayout.SockaddrNlSize];
        new Span<byte>(kernel, NetlinkLayout.SockaddrNlSize).Clear();
        *(ushort*)kernel = (ushort)AF_NETLINK;
        fixed (byte* p = request)
        {
            if (sendto(_fd.Number, p, request.Length, 0, (sockaddr*)kernel, NetlinkLayout.SockaddrNlSize) < 0)
            {
                throw new NativeException(what, Errno.Last);
            }
        }
        byte[] reply = new byte[8192];
        while (true)
        {
            long got;
            fixed (byte* p = reply)
            {
                got = recv(_fd.Number, p, reply.Length, 0);
            }
            if (got < 0)
            {
                int err = Errno.Last;
                if (err == Errno.EINTR)
                {
                    continue;
                }
                throw new NativeException(what, err);
            }
            for (int off = 0; off + NetlinkLayout.NlmsghdrSize <= got;)
            {
                ReadOnlySpan<byte> h = reply.AsSpan(off);
                uint len = BinaryPrimitives.ReadUInt32LittleEndian(h);
                ushort type = BinaryPrimitives.ReadUInt16LittleEndian(h[4..]);
                uint rseq = BinaryPrimitives.ReadUInt32LittleEndian(h[8..]);
                if (len < NetlinkLayout.NlmsghdrSize)
                {
                    break;
                }
                if (type == NetlinkLayout.NLMSG_ERROR && rseq == seq)
                {
                    int error = BinaryPrimitives.ReadInt32LittleEndian(h[NetlinkLayout.NlmsghdrSize..]);
                    if (error != 0)
                    {
                        throw new NativeException(what, -error);
                    }
                    return;
                }
                off += (int)((len + 3) & ~3u);
            }
        }
    }

    public void Dispose() => _fd.Dispose();

    /// <summary>A request being built: nlmsghdr, a family header, attributes.</summary>
    private sealed class Message
    {
        private readonly byte[] _buffer = new byte[512];
        private int _length = NetlinkLayout.NlmsghdrSize;

        public Message(ushort type, ushort flags)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(_buffer.AsSpan(4), type);
            BinaryPrimitives.WriteUInt16LittleEndian(_buffer.AsSpan(6), flags);
        }

        public Span<byte> Reserve(int size)
        {
            Span<byte> s = _buffer.AsSpan(_length, size);
            _length += (size + 3) & ~3;
            return s;
        }

        public void AttributeU32(ushort type, uint value)
        {
            Span<byte> a = Reserve(NetlinkLayout.RtattrSize + 4);
            BinaryPrimitives.WriteUInt16LittleEndian(a, NetlinkLayout.RtattrSize + 4);
            BinaryPrimitives.WriteUInt16LittleEndian(a[2..], type);
            BinaryPrimitives.WriteUInt32LittleEndian(a[4..], value);
        }

        public void AttributeIpv4(ushort type, uint address)
        {
            Span<byte> a = Reserve(NetlinkLayout.RtattrSize + 4);
            BinaryPrimitives.WriteUInt16LittleEndian(a, NetlinkLayout.RtattrSize + 4);
            BinaryPrimitives.WriteUInt16LittleEndian(a[2..], type);
            BinaryPrimitives.WriteUInt32BigEndian(a[4..], address); // network order on the wire
        }

        public byte[] Finish(uint seq)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(_buffer, (uint)_length);
            BinaryPrimitives.WriteUInt32LittleEndian(_buffer.AsSpan(8), seq);
            return _buffer.AsSpan(0, _length).ToArray();
        }
    }
}
