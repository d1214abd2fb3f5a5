namespace Dataplane.TunTap;

/// <summary>
/// Sizes and constants of the rtnetlink structs we write byte by byte, with their C names
/// (&lt;linux/netlink.h&gt;, &lt;linux/rtnetlink.h&gt;, &lt;linux/if_link.h&gt;, &lt;linux/if_addr.h&gt;).
/// A test compiles C that static_asserts each of them.
/// </summary>
#pragma warning disable CA1707 // C names kept verbatim
public static class NetlinkLayout
{
    public const int NETLINK_ROUTE = 0;
    public const int SockaddrNlSize = 12; // sizeof(struct sockaddr_nl)
    public const int NlmsghdrSize = 16;   // sizeof(struct nlmsghdr)
    public const int IfinfomsgSize = 16;  // sizeof(struct ifinfomsg)
    public const int IfaddrmsgSize = 8;   // sizeof(struct ifaddrmsg)
    public const int RtmsgSize = 12;      // sizeof(struct rtmsg)
    public const int RtattrSize = 4;      // sizeof(struct rtattr)

    public const ushort NLMSG_ERROR = 2;
    public const ushort NLM_F_REQUEST = 0x1;
    public const ushort NLM_F_ACK = 0x4;
    public const ushort NLM_F_REPLACE = 0x100;
    public const ushort NLM_F_EXCL = 0x200;
    public const ushort NLM_F_CREATE = 0x400;

    public const ushort RTM_NEWLINK = 16;
    public const ushort RTM_DELLINK = 17;
    public const ushort RTM_NEWADDR = 20;
    public const ushort RTM_NEWROUTE = 24;
    public const ushort RTM_DELROUTE = 25;

    public const ushort IFLA_MTU = 4;
    public const ushort IFLA_IFNAME = 3;
    public const ushort IFLA_LINKINFO = 18;
    public const ushort IFLA_INFO_KIND = 1;
    public const ushort IFLA_INFO_DATA = 2;
    public const ushort VETH_INFO_PEER = 1;
    public const ushort IFLA_AF_SPEC = 26;
    public const ushort IFLA_INET6_ADDR_GEN_MODE = 8;
    public const byte IN6_ADDR_GEN_MODE_NONE = 1;
    public const ushort NLA_F_NESTED = 0x8000;
    public const ushort IFLA_TXQLEN = 13;
    public const ushort IFLA_IFALIAS = 20;
    public const ushort IFA_ADDRESS = 1;
    public const ushort IFA_LOCAL = 2;
    public const ushort RTA_DST = 1;
    public const ushort RTA_OIF = 4;
    public const ushort RTA_METRICS = 8;
    public const ushort RTAX_MTU = 2;
    public const byte IFA_F_NODAD = 0x02;
    public const byte RT_SCOPE_UNIVERSE = 0;

    public const uint IFF_UP = 0x1;
    public const uint IFF_NOARP = 0x80;
    public const byte RT_TABLE_MAIN = 254;
    public const byte RTPROT_BOOT = 3;
    public const byte RT_SCOPE_LINK = 253;
    public const byte RTN_UNICAST = 1;
    public const byte RTN_BLACKHOLE = 6;
}
#pragma warning restore CA1707
