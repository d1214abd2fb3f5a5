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
    public static int GetMtu(string name) => InterfaceRequest(name, NativeMethods.SIOCGIFMTU, "SIOCGIFMTU").ifr_mtu;

    /// <summary>The hardware address of <paramref name="name"/> (SIOCGIFHWADDR): 6 bytes for Ethernet.</summary>
    public static byte[] GetMac(string name)
    {
        ifreq req = InterfaceRequest(name, NativeMethods.SIOCGIFHWADDR, "SIOCGIFHWADDR");
        return new Span<byte>(req.ifr_hwaddr_data, 6).ToArray();
    }

    /// <summary>
    /// An interface ioctl on a throwaway datagram socket: <paramref name="request"/> with the ifreq
    /// naming <paramref name="name"/>, and <paramref name="data"/> as <c>ifr_data</c> if given
    /// (SIOCETHTOOL). Returns the ifreq the kernel filled in.
    /// </summary>
    internal static ifreq InterfaceRequest(string name, uint request, string what, void* data = null)
    {
        int number = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (number < 0)
        {
            throw new NativeException("socket(AF_INET)", Errno.Last);
        }
        using var fd = new FileDescriptor(number);
        ifreq req = default;
        byte[] bytes = Encoding.UTF8.GetBytes(name);
        if (bytes.Length >= ifreq.IFNAMSIZ)
        {
            throw new ArgumentException($"interface name '{name}' is too long");
        }
        bytes.CopyTo(new Span<byte>(req.ifr_name, ifreq.IFNAMSIZ));
        if (data is not null)
        {
            req.ifr_data = data;
        }
        if (NativeMethods.ioctl_ifreq(fd.Number, request, &req) < 0)
        {
            throw new NativeException($"{what} {name}", Errno.Last);
        }
        return req;
    }

    /// <summary>
    /// Sets IFF_UP and the MTU of link <paramref name="index"/> (like <c>ip link set dev X mtu M up</c>);
    /// with <paramref name="noArp"/> also IFF_NOARP (<c>arp off</c>).
    /// </summary>
    public void SetLinkUp(int index, int mtu, string what, int txQueueLength = 0, bool noArp = false)
    {
        var m = new Message(NetlinkLayout.RTM_NEWLINK, NetlinkLayout.NLM_F_REQUEST | NetlinkLayout.NLM_F_ACK);
        Span<byte> ifi = m.Reserve(NetlinkLayout.IfinfomsgSize);
        ifi[0] = 0; // AF_UNSPEC
        uint flags = NetlinkLayout.IFF_UP | (noArp ? NetlinkLayout.IFF_NOARP : 0);
        BinaryPrimitives.WriteInt32LittleEndian(ifi[4..], index);
        BinaryPrimitives.WriteUInt32LittleEndian(ifi[8..], flags);  // flags
        BinaryPrimitives.WriteUInt32LittleEndian(ifi[12..], flags); // change
        m.AttributeU32(NetlinkLayout.IFLA_MTU, (uint)mtu);
        if (txQueueLength > 0)
        {
            m.AttributeU32(NetlinkLayout.IFLA_TXQLEN, (uint)txQueueLength);
        }
        Execute(m, what);
    }

    /// <summary><c>ip link set dev X alias TEXT</c>: a note on the link that outlives us (<c>/sys/class/net/X/ifalias</c>).</summary>
    public void SetAlias(int index, string alias, string what)
    {
        var m = new Message(NetlinkLayout.RTM_NEWLINK, NetlinkLayout.NLM_F_REQUEST | NetlinkLayout.NLM_F_ACK);
        Span<byte> ifi = m.Reserve(NetlinkLayout.IfinfomsgSize);
        BinaryPrimitives.WriteInt32LittleEndian(ifi[4..], index);
        m.AttributeString(NetlinkLayout.IFLA_IFALIAS, alias);
        Execute(m, what);
    }

    /// <summary>
    /// <c>ip link add NAME type veth peer name PEER</c>: a new pair (EEXIST if either name is taken).
    /// Returns the index of <paramref name="name"/>.
    /// </summary>
    public int AddVethPair(string name, string peer, string what)
    {
        var m = new Message(NetlinkLayout.RTM_NEWLINK,
            NetlinkLayout.NLM_F_REQUEST | NetlinkLayout.NLM_F_ACK | NetlinkLayout.NLM_F_CREATE | NetlinkLayout.NLM_F_EXCL);
        m.Reserve(NetlinkLayout.IfinfomsgSize); // AF_UNSPEC, index 0: a new link
        m.AttributeString(NetlinkLayout.IFLA_IFNAME, name);
        int linkInfo = m.BeginNested(NetlinkLayout.IFLA_LINKINFO);
        m.AttributeString(NetlinkLayout.IFLA_INFO_KIND, "veth");
        int data = m.BeginNested(NetlinkLayout.IFLA_INFO_DATA);
        int peerInfo = m.BeginNested(NetlinkLayout.VETH_INFO_PEER);
        m.Reserve(NetlinkLayout.IfinfomsgSize); // the peer's own ifinfomsg, then its attributes
        m.AttributeString(NetlinkLayout.IFLA_IFNAME, peer);
        m.EndNested(peerInfo);
        m.EndNested(data);
        m.EndNested(linkInfo);
        Execute(m, what);
        return LinkIndex(name);
    }

    /// <summary>
    /// <c>ip link set dev X addrgenmode none</c>: the link gets no IPv6 link-local address, so it
    /// sends nothing of its own (no router solicitations, no MLD reports).
    /// </summary>
    public void SetNoIpv6LinkLocal(int index, string what)
    {
        var m = new Message(NetlinkLayout.RTM_NEWLINK, NetlinkLayout.NLM_F_REQUEST | NetlinkLayout.NLM_F_ACK);
        Span<byte> ifi = m.Reserve(NetlinkLayout.IfinfomsgSize);
        BinaryPrimitives.WriteInt32LittleEndian(ifi[4..], index);
        int spec = m.BeginNested(NetlinkLayout.IFLA_AF_SPEC);
        int inet6 = m.BeginNested((ushort)AF_INET6);
        m.AttributeU8(NetlinkLayout.IFLA_INET6_ADDR_GEN_MODE, NetlinkLayout.IN6_ADDR_GEN_MODE_NONE);
        m.EndNested(inet6);
        m.EndNested(spec);
        Execute(m, what);
    }

    /// <summary>Adds <paramref name="address"/>/<paramref name="prefixLength"/> to link <paramref name="index"/>; an existing one is kept.</summary>
    public void AddAddress(int index, uint address, int prefixLength, string what)
    {
        Message m = NewAddress((byte)AF_INET, prefixLength, flags: 0, index);
        m.AttributeIpv4(NetlinkLayout.IFA_LOCAL, address);
        m.AttributeIpv4(NetlinkLayout.IFA_ADDRESS, address);
        Execute(m, what);
    }

    /// <summary>
    /// Adds IPv6 <paramref name="address"/>/<paramref name="prefixLength"/> to link <paramref name="index"/>
    /// without duplicate address detection (<c>nodad</c>: the address is usable at once, as on a
    /// NOARP device, where DAD is skipped anyway); an existing one is kept.
    /// </summary>
    public void AddAddress6(int index, UInt128 address, int prefixLength, string what)
    {
        Message m = NewAddress((byte)AF_INET6, prefixLength, NetlinkLayout.IFA_F_NODAD, index);
        m.AttributeIpv6(NetlinkLayout.IFA_LOCAL, address);
        m.AttributeIpv6(NetlinkLayout.IFA_ADDRESS, address);
        Execute(m, what);
    }

    /// <summary>RTM_NEWADDR (create or replace) with its ifaddrmsg: family, prefix length, flags, scope universe, link.</summary>
    private static Message NewAddress(byte family, int prefixLength, byte flags, int index)
    {
        var m = new Message(NetlinkLayout.RTM_NEWADDR,
            NetlinkLayout.NLM_F_REQUEST | NetlinkLayout.NLM_F_ACK | NetlinkLayout.NLM_F_CREATE | NetlinkLayout.NLM_F_REPLACE);
        Span<byte> ifa = m.Reserve(NetlinkLayout.IfaddrmsgSize);
        ifa[0] = family;
        ifa[1] = (byte)prefixLength;
        ifa[2] = flags;
        ifa[3] = NetlinkLayout.RT_SCOPE_UNIVERSE;
        BinaryPrimitives.WriteInt32LittleEndian(ifa[4..], index);
        return m;
    }

    /// <summary>
    /// <c>ip -6 route replace PREFIX dev INDEX mtu MTU</c> (main table): the route's MTU lets the host
    /// send Packet Too Big for IPv6 packets that would not fit the tunnel, while IPv4 keeps the
    /// device's MTU.
    /// </summary>
    public void ReplaceRoute6(Ipv6Prefix prefix, int index, int mtu, string what)
    {
        var m = new Message(NetlinkLayout.RTM_NEWROUTE,
            NetlinkLayout.NLM_F_REQUEST | NetlinkLayout.NLM_F_ACK | NetlinkLayout.NLM_F_CREATE | NetlinkLayout.NLM_F_REPLACE);
        WriteRoute6(m, prefix, index);
        int metrics = m.BeginNested(NetlinkLayout.RTA_METRICS);
        m.AttributeU32(NetlinkLayout.RTAX_MTU, (uint)mtu);
        m.EndNested(metrics);
        Execute(m, what);
    }

    /// <summary><c>ip -6 route del PREFIX dev INDEX</c>; a route already gone is not an error.</summary>
    public void DeleteRoute6(Ipv6Prefix prefix, int index, string what)
    {
        var m = new Message(NetlinkLayout.RTM_DELROUTE, NetlinkLayout.NLM_F_REQUEST | NetlinkLayout.NLM_F_ACK);
        WriteRoute6(m, prefix, index);
        ExecuteDelete(m, what);
    }

    /// <summary>A route deletion: a route (or link) already gone is not an error.</summary>
    private void ExecuteDelete(Message m, string what)
    {
        try
        {
            Execute(m, what);
        }
        catch (NativeException e) when (e.Errno is Errno.ESRCH or Errno.ENODEV)
        {
        }
    }

    /// <summary>The rtmsg of a route of ours: main table, protocol boot.</summary>
    private static void WriteRtmsg(Message m, int family, int prefixLength, byte scope, byte type)
    {
        Span<byte> rtm = m.Reserve(NetlinkLayout.RtmsgSize);
        rtm[0] = (byte)family;
        rtm[1] = (byte)prefixLength; // rtm_dst_len
        rtm[4] = NetlinkLayout.RT_TABLE_MAIN;
        rtm[5] = NetlinkLayout.RTPROT_BOOT;
        rtm[6] = scope;
        rtm[7] = type;
    }

    private static void WriteRoute6(Message m, Ipv6Prefix prefix, int index)
    {
        WriteRtmsg(m, AF_INET6, prefix.Length, NetlinkLayout.RT_SCOPE_UNIVERSE, NetlinkLayout.RTN_UNICAST);
        m.AttributeIpv6(NetlinkLayout.RTA_DST, prefix.Address);
        m.AttributeU32(NetlinkLayout.RTA_OIF, (uint)index);
    }

    /// <summary><c>ip route replace PREFIX dev INDEX</c> (scope link, main table).</summary>
    public void ReplaceRoute(Ipv4Prefix prefix, int index, string what) =>
        Execute(RouteMessage(NetlinkLayout.RTM_NEWROUTE,
            NetlinkLayout.NLM_F_REQUEST | NetlinkLayout.NLM_F_ACK | NetlinkLayout.NLM_F_CREATE | NetlinkLayout.NLM_F_REPLACE,
            prefix, index), what);

    /// <summary><c>ip route del PREFIX dev INDEX</c>; a route already gone is not an error.</summary>
    public void DeleteRoute(Ipv4Prefix prefix, int index, string what) =>
        ExecuteDelete(RouteMessage(NetlinkLayout.RTM_DELROUTE, NetlinkLayout.NLM_F_REQUEST | NetlinkLayout.NLM_F_ACK, prefix, index), what);

    /// <summary>
    /// <c>ip route add blackhole PREFIX</c> (main table) unless a route for exactly that prefix is
    /// there already (ours from before, or another's, such as a CNI bridge's): true when it added one.
    /// </summary>
    public bool AddBlackholeRoute(Ipv4Prefix prefix, string what)
    {
        try
        {
            Execute(BlackholeMessage(NetlinkLayout.RTM_NEWROUTE,
                NetlinkLayout.NLM_F_REQUEST | NetlinkLayout.NLM_F_ACK | NetlinkLayout.NLM_F_CREATE | NetlinkLayout.NLM_F_EXCL, prefix), what);
            return true;
        }
        catch (NativeException e) when (e.Errno is Errno.EEXIST)
        {
            return false;
        }
    }

    /// <summary><c>ip route del blackhole PREFIX</c>; a route already gone is not an error.</summary>
    public void DeleteBlackholeRoute(Ipv4Prefix prefix, string what) =>
        ExecuteDelete(BlackholeMessage(NetlinkLayout.RTM_DELROUTE, NetlinkLayout.NLM_F_REQUEST | NetlinkLayout.NLM_F_ACK, prefix), what);

    private static Message BlackholeMessage(ushort type, ushort flags, Ipv4Prefix prefix)
    {
        var m = new Message(type, flags);
        WriteRtmsg(m, AF_INET, prefix.Length, NetlinkLayout.RT_SCOPE_UNIVERSE, NetlinkLayout.RTN_BLACKHOLE);
        m.AttributeIpv4(NetlinkLayout.RTA_DST, prefix.Address);
        return m;
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
        WriteRtmsg(m, AF_INET, prefix.Length, NetlinkLayout.RT_SCOPE_LINK, NetlinkLayout.RTN_UNICAST);
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

        public void AttributeU8(ushort type, byte value)
        {
            Span<byte> a = Reserve(NetlinkLayout.RtattrSize + 1);
            BinaryPrimitives.WriteUInt16LittleEndian(a, NetlinkLayout.RtattrSize + 1);
            BinaryPrimitives.WriteUInt16LittleEndian(a[2..], type);
            a[4] = value;
        }

        /// <summary>A NUL-terminated string attribute (IFLA_IFNAME, IFLA_INFO_KIND).</summary>
        public void AttributeString(ushort type, string value)
        {
            int length = NetlinkLayout.RtattrSize + Encoding.UTF8.GetByteCount(value) + 1;
            Span<byte> a = Reserve(length);
            a.Clear();
            BinaryPrimitives.WriteUInt16LittleEndian(a, (ushort)length);
            BinaryPrimitives.WriteUInt16LittleEndian(a[2..], type);
            Encoding.UTF8.GetBytes(value, a[NetlinkLayout.RtattrSize..]);
        }

        /// <summary>Starts a nested attribute; its length is set by <see cref="EndNested"/>.</summary>
        public int BeginNested(ushort type)
        {
            int at = _length;
            Span<byte> a = Reserve(NetlinkLayout.RtattrSize);
            BinaryPrimitives.WriteUInt16LittleEndian(a[2..], (ushort)(type | NetlinkLayout.NLA_F_NESTED));
            return at;
        }

        public void EndNested(int at) => BinaryPrimitives.WriteUInt16LittleEndian(_buffer.AsSpan(at), (ushort)(_length - at));

        public void AttributeIpv4(ushort type, uint address)
        {
            Span<byte> a = Reserve(NetlinkLayout.RtattrSize + 4);
            BinaryPrimitives.WriteUInt16LittleEndian(a, NetlinkLayout.RtattrSize + 4);
            BinaryPrimitives.WriteUInt16LittleEndian(a[2..], type);
            BinaryPrimitives.WriteUInt32BigEndian(a[4..], address); // network order on the wire
        }

        public void AttributeIpv6(ushort type, UInt128 address)
        {
            Span<byte> a = Reserve(NetlinkLayout.RtattrSize + 16);
            BinaryPrimitives.WriteUInt16LittleEndian(a, NetlinkLayout.RtattrSize + 16);
            BinaryPrimitives.WriteUInt16LittleEndian(a[2..], type);
            BinaryPrimitives.WriteUInt128BigEndian(a[4..], address);
        }

        public byte[] Finish(uint seq)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(_buffer, (uint)_length);
            BinaryPrimitives.WriteUInt32LittleEndian(_buffer.AsSpan(8), seq);
            return _buffer.AsSpan(0, _length).ToArray();
        }
    }
}
