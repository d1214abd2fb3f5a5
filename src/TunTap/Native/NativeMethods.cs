using System.Runtime.InteropServices;
using Tmds.Linux;
#pragma warning disable CS8981
#pragma warning restore CS8981

namespace Dataplane.TunTap.Native;

/// <summary>
/// What Tmds.LibC lacks, declared with the C names so they can be checked against the man pages
/// and &lt;linux/if_tun.h&gt;. Everything here is <c>SetLastError</c>: read the errno with
/// <see cref="Errno.Last"/> right after the call.
/// </summary>
internal static unsafe partial class NativeMethods
{
    private const string Libc = "libc";

    // <linux/if_tun.h>
    public const uint TUNSETIFF = 0x400454ca;     // _IOW('T', 202, int)
    public const uint TUNSETOFFLOAD = 0x400454d0; // _IOW('T', 208, unsigned int)
    public const uint TUNSETPERSIST = 0x400454cb; // _IOW('T', 203, int)
    public const uint TUNGETIFF = 0x800454d2;     // _IOR('T', 210, unsigned int)
    public const short IFF_TUN = 0x0001;
    public const short IFF_NO_PI = 0x1000;
    public const short IFF_VNET_HDR = 0x4000;
    public const short IFF_MULTI_QUEUE = 0x0100;
    public const short IFF_PERSIST = 0x0800;

    // <linux/sockios.h>
    public const uint SIOCGIFMTU = 0x8921;
    public const uint SIOCGIFINDEX = 0x8933;
    public const uint SIOCGIFHWADDR = 0x8927;
    public const uint SIOCETHTOOL = 0x8946;

    [LibraryImport(Libc, EntryPoint = "ioctl", SetLastError = true)]
    public static partial int ioctl_ifreq(int fd, nuint request, ifreq* arg);

    [LibraryImport(Libc, EntryPoint = "ioctl", SetLastError = true)]
    public static partial int ioctl_value(int fd, nuint request, nuint arg);

    // TUNSETOFFLOAD flags, <linux/if_tun.h>
    public const uint TUN_F_CSUM = 0x01;
    public const uint TUN_F_TSO4 = 0x02;
    public const uint TUN_F_TSO6 = 0x04;
    public const uint TUN_F_USO4 = 0x20;
    public const uint TUN_F_USO6 = 0x40;

    /// <summary>
    /// <c>CMSG_LEN(len)</c> as glibc and the kernel define it: the aligned header plus the data,
    /// unpadded (18 for a u16). Tmds.LibC 0.5.0's <c>CMSG_LEN</c> pads the data too (24), and the
    /// kernel refuses a UDP_SEGMENT control message whose length is not exactly CMSG_LEN(2) (EINVAL),
    /// so this one is ours; the other CMSG_* helpers are Tmds.LibC's. Checked against gcc.
    /// </summary>
    public static int CMSG_LEN(int len) => LibC.CMSG_SPACE(0) + len;

    // <netinet/udp.h>, <linux/udp.h>
    public const int SOL_UDP = 17;
    public const int UDP_SEGMENT = 103;
    public const int UDP_GRO = 104;
    /// <summary>The kernel's cap on segments in one UDP GSO send (UDP_MAX_SEGMENTS).</summary>
    public const int UDP_MAX_SEGMENTS = 64;

    // Classic BPF for a SO_REUSEPORT group's socket choice (linux/filter.h, asm-generic/socket.h).
    public const int SO_ATTACH_REUSEPORT_CBPF = 51;

    // Descriptor passing over a Unix socket (the hand-over), <sys/socket.h>.
    public const int SCM_RIGHTS = 1;
    public const int MSG_CTRUNC = 0x8;
    public const int MSG_CMSG_CLOEXEC = 0x40000000;
    public const int SKF_NET_OFF = -0x100000;

    [LibraryImport(Libc, SetLastError = true)]
    public static partial int recvmmsg(int sockfd, mmsghdr* msgvec, uint vlen, int flags, void* timeout);

    [LibraryImport(Libc, SetLastError = true)]
    public static partial int sendmmsg(int sockfd, mmsghdr* msgvec, uint vlen, int flags);

    [LibraryImport(Libc, SetLastError = true)]
    public static partial nint write(int fd, byte* buf, nuint count);

    [LibraryImport(Libc, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial uint if_nametoindex(string ifname);

    // <linux/if_packet.h>, <linux/if_ether.h>
    public const int AF_PACKET = 17;
    public const int SOL_PACKET = 263;
    public const ushort ETH_P_ALL = 0x0003;
    public const ushort ETH_P_IP = 0x0800;
    public const ushort ETH_P_IPV6 = 0x86DD;
    public const int ETH_HLEN = 14;
    public const int PACKET_STATISTICS = 6;
    public const int PACKET_VNET_HDR = 15;
    public const int PACKET_FANOUT = 18;
    public const int PACKET_QDISC_BYPASS = 20;
    public const int PACKET_IGNORE_OUTGOING = 23;
    public const int PACKET_FANOUT_HASH = 0;
    public const int SO_RCVBUFFORCE = 33;
    public const int SO_SNDBUFFORCE = 32;

    // <linux/ethtool.h>: the per-feature commands (the kernel maps them onto its feature bits).
    public const uint ETHTOOL_STXCSUM = 0x17;
    public const uint ETHTOOL_STSO = 0x1f;
    public const uint ETHTOOL_SGSO = 0x24;

    // <sched.h>
    public const int CLONE_NEWNET = 0x40000000;

    [LibraryImport(Libc, SetLastError = true)]
    public static partial int setns(int fd, int nstype);
}
