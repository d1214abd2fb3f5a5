using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using Dataplane.TestSupport;
using Dataplane.TunTap.Native;
using Tmds.Linux;
#pragma warning disable CS8981
using mmsghdr = Dataplane.TunTap.Native.mmsghdr;
#pragma warning restore CS8981

namespace Dataplane.TunTap.Tests;

/// <summary>
/// Every C struct and constant we mirror, checked by the C compiler against the system headers:
/// the test writes C with a _Static_assert per size, offset and value, and gcc must accept it.
/// </summary>
public class StructLayoutTests
{
    /// <summary>
    /// The USO constants the offload code relies on, against the running kernel (Debian 12's headers
    /// are 6.1 and lack them): TUNSETOFFLOAD refuses unknown bits with EINVAL and takes ours; with
    /// only CSUM and USO on, a UDP GSO send reaches the TUN whole, and the virtio-net header the
    /// kernel writes names it with our GSO type and the segment size.
    /// </summary>
    [Fact]
    public unsafe void The_uso_constants_are_the_running_kernels()
    {
        using var ns = new TestNamespace();
        (byte gsoType, ushort gsoSize, int unknownBitErrno) = ns.Run(() =>
        {
            byte[] path = "/dev/net/tun\0"u8.ToArray();
            int fd;
            fixed (byte* p = path)
            {
                fd = LibC.open(p, LibC.O_RDWR | LibC.O_CLOEXEC, 0);
            }
            Assert.True(fd >= 0, "open /dev/net/tun");
            try
            {
                ifreq req = default;
                "dpuso0"u8.CopyTo(new Span<byte>(req.ifr_name, ifreq.IFNAMSIZ));
                req.ifr_flags = NativeMethods.IFF_TUN | NativeMethods.IFF_NO_PI | NativeMethods.IFF_VNET_HDR;
                Assert.Equal(0, NativeMethods.ioctl_ifreq(fd, NativeMethods.TUNSETIFF, &req));
                int refused = NativeMethods.ioctl_value(fd, NativeMethods.TUNSETOFFLOAD, NativeMethods.TUN_F_CSUM | 0x8000) < 0 ? Marshal.GetLastPInvokeError() : 0;
                Assert.Equal(0, NativeMethods.ioctl_value(fd, NativeMethods.TUNSETOFFLOAD, NativeMethods.TUN_F_CSUM | NativeMethods.TUN_F_USO4 | NativeMethods.TUN_F_USO6));
                using (RouteNetlink nl = RouteNetlink.Open())
                {
                    int index = RouteNetlink.LinkIndex("dpuso0");
                    nl.SetLinkUp(index, 1450, "up");
                    nl.AddAddress(index, 0x0AF40100, 32, "addr");
                    nl.ReplaceRoute(new Dataplane.Encap.Ipv4Prefix(0x0AF40000, 16), index, "route");
                }
                using var sender = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Dgram, System.Net.Sockets.ProtocolType.Udp);
                sender.SetRawSocketOption(NativeMethods.SOL_UDP, NativeMethods.UDP_SEGMENT, BitConverter.GetBytes((int)1000));
                sender.SendTo(new byte[8000], new System.Net.IPEndPoint(System.Net.IPAddress.Parse("10.244.2.5"), 9999));
                byte[] buffer = new byte[70000];
                DateTime until = DateTime.UtcNow.AddSeconds(5);
                while (DateTime.UtcNow < until)
                {
                    pollfd pfd = new() { fd = fd, events = LibC.POLLIN };
                    if (LibC.poll(&pfd, 1, 200) <= 0)
                    {
                        continue;
                    }
                    long n;
                    fixed (byte* b = buffer)
                    {
                        n = (long)LibC.read(fd, b, buffer.Length);
                    }
                    int ip = Dataplane.Encap.Offload.VirtioNetHeader.Length;
                    if (n > ip + 20 && buffer[ip] == 0x45 && buffer[ip + 9] == 17)
                    {
                        return (buffer[1], System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(buffer.AsSpan(4)), refused);
                    }
                }
                throw new InvalidOperationException("no UDP datagram reached the TUN");
            }
            finally
            {
                LibC.close(fd);
            }
        });
        Assert.Equal(LibC.EINVAL, unknownBitErrno);
        Assert.Equal(Dataplane.Encap.Offload.VirtioNetHeader.GsoUdpL4, gsoType);
        Assert.Equal(1000, gsoSize);
    }

    [Fact]
    public void Mirrored_structs_and_constants_match_the_c_headers()
    {
        var c = new StringBuilder("""
            #define _GNU_SOURCE
            #include <stddef.h>
            #include <sched.h>
            #include <sys/socket.h>
            #include <sys/ioctl.h>
            #include <net/if.h>
            #include <netinet/in.h>
            #include <linux/if_tun.h>
            #include <linux/sockios.h>
            #include <linux/netlink.h>
            #include <linux/rtnetlink.h>
            #include <linux/if_link.h>
            #include <linux/if_addr.h>
            #include <linux/virtio_net.h>
            #include <netinet/udp.h>
            #include <poll.h>
            #include <sys/eventfd.h>
            #include <linux/if_packet.h>
            #include <linux/if_ether.h>
            #include <linux/ethtool.h>
            #include <linux/veth.h>
            #include <linux/if_addr.h>

            """);
        void Check(string expr, long value) => c.AppendLine($"_Static_assert(({expr}) == {value}L, \"{expr} is {value} in C#\");");

        Check("sizeof(struct ifreq)", Unsafe.SizeOf<ifreq>());
        Check("offsetof(struct ifreq, ifr_flags)", Marshal.OffsetOf<ifreq>(nameof(ifreq.ifr_flags)));
        Check("offsetof(struct ifreq, ifr_mtu)", Marshal.OffsetOf<ifreq>(nameof(ifreq.ifr_mtu)));
        Check("offsetof(struct ifreq, ifr_ifindex)", Marshal.OffsetOf<ifreq>(nameof(ifreq.ifr_ifindex)));
        Check("IFNAMSIZ", ifreq.IFNAMSIZ);
        Check("sizeof(struct mmsghdr)", Unsafe.SizeOf<mmsghdr>());
        Check("offsetof(struct mmsghdr, msg_len)", Marshal.OffsetOf<mmsghdr>(nameof(mmsghdr.msg_len)));
        Check("sizeof(struct msghdr)", Unsafe.SizeOf<msghdr>());
        Check("sizeof(struct iovec)", Unsafe.SizeOf<iovec>());
        Check("sizeof(struct sockaddr_in)", Unsafe.SizeOf<sockaddr_in>());
        // Tmds.LibC's msghdr wraps its size_t fields in properties: check where they really are.
        Check("offsetof(struct msghdr, msg_iov)", Marshal.OffsetOf<msghdr>("<msg_iov>k__BackingField"));
        Check("offsetof(struct msghdr, msg_iovlen)", Marshal.OffsetOf<msghdr>("_msg_iovlen"));
        Check("offsetof(struct msghdr, msg_control)", Marshal.OffsetOf<msghdr>("<msg_control>k__BackingField"));
        Check("offsetof(struct msghdr, msg_controllen)", Marshal.OffsetOf<msghdr>("_msg_controllen"));
        Check("offsetof(struct msghdr, msg_flags)", Marshal.OffsetOf<msghdr>("<msg_flags>k__BackingField"));
        Check("sizeof(struct cmsghdr)", Unsafe.SizeOf<cmsghdr>());
        Check("CMSG_LEN(sizeof(__u16))", NativeMethods.CMSG_LEN(sizeof(ushort)));
        Check("CMSG_LEN(sizeof(int))", NativeMethods.CMSG_LEN(sizeof(int)));
        Check("CMSG_SPACE(sizeof(__u16))", LibC.CMSG_SPACE(sizeof(ushort)));
        Check("CMSG_SPACE(sizeof(int))", LibC.CMSG_SPACE(sizeof(int)));
        // Tmds.LibC's constants the edges use, against the headers too.
        Check("POLLIN", LibC.POLLIN);
        Check("POLLOUT", LibC.POLLOUT);
        Check("POLLERR", LibC.POLLERR);
        Check("POLLHUP", LibC.POLLHUP);
        Check("POLLNVAL", LibC.POLLNVAL);
        Check("EFD_CLOEXEC", LibC.EFD_CLOEXEC);
        Check("EFD_NONBLOCK", LibC.EFD_NONBLOCK);
        Check("sizeof(struct virtio_net_hdr)", Dataplane.Encap.Offload.VirtioNetHeader.Length);
        Check("offsetof(struct virtio_net_hdr, gso_size)", 4);
        Check("offsetof(struct virtio_net_hdr, csum_start)", 6);
        Check("VIRTIO_NET_HDR_F_NEEDS_CSUM", Dataplane.Encap.Offload.VirtioNetHeader.FlagNeedsChecksum);
        Check("VIRTIO_NET_HDR_GSO_TCPV4", Dataplane.Encap.Offload.VirtioNetHeader.GsoTcpV4);
        Check("VIRTIO_NET_HDR_GSO_TCPV6", Dataplane.Encap.Offload.VirtioNetHeader.GsoTcpV6);
        // USO (Linux 6.2): checked against the headers when they have it, and in every case against
        // the running kernel (The_uso_constants_are_the_running_kernels): never skipped.
        c.AppendLine("#ifdef VIRTIO_NET_HDR_GSO_UDP_L4");
        Check("VIRTIO_NET_HDR_GSO_UDP_L4", Dataplane.Encap.Offload.VirtioNetHeader.GsoUdpL4);
        c.AppendLine("#endif");
        Check("VIRTIO_NET_HDR_GSO_ECN", Dataplane.Encap.Offload.VirtioNetHeader.GsoEcn);
        Check("TUN_F_CSUM", NativeMethods.TUN_F_CSUM);
        Check("TUN_F_TSO4", NativeMethods.TUN_F_TSO4);
        Check("TUN_F_TSO6", NativeMethods.TUN_F_TSO6);
        c.AppendLine("#ifdef TUN_F_USO4");
        Check("TUN_F_USO4", NativeMethods.TUN_F_USO4);
        Check("TUN_F_USO6", NativeMethods.TUN_F_USO6);
        c.AppendLine("#endif");
        Check("SOL_UDP", NativeMethods.SOL_UDP);
        Check("UDP_SEGMENT", NativeMethods.UDP_SEGMENT);
        Check("UDP_GRO", NativeMethods.UDP_GRO);

        // The packet source: sockaddr_ll, tpacket_stats, ethtool_value and the socket options.
        Check("sizeof(struct sockaddr_ll)", Unsafe.SizeOf<Native.sockaddr_ll>());
        Check("offsetof(struct sockaddr_ll, sll_protocol)", Marshal.OffsetOf<Native.sockaddr_ll>(nameof(Native.sockaddr_ll.sll_protocol)));
        Check("offsetof(struct sockaddr_ll, sll_ifindex)", Marshal.OffsetOf<Native.sockaddr_ll>(nameof(Native.sockaddr_ll.sll_ifindex)));
        Check("offsetof(struct sockaddr_ll, sll_hatype)", Marshal.OffsetOf<Native.sockaddr_ll>(nameof(Native.sockaddr_ll.sll_hatype)));
        Check("offsetof(struct sockaddr_ll, sll_pkttype)", Marshal.OffsetOf<Native.sockaddr_ll>(nameof(Native.sockaddr_ll.sll_pkttype)));
        Check("offsetof(struct sockaddr_ll, sll_halen)", Marshal.OffsetOf<Native.sockaddr_ll>(nameof(Native.sockaddr_ll.sll_halen)));
        Check("offsetof(struct sockaddr_ll, sll_addr)", Marshal.OffsetOf<Native.sockaddr_ll>(nameof(Native.sockaddr_ll.sll_addr)));
        Check("sizeof(struct tpacket_stats)", Unsafe.SizeOf<Native.tpacket_stats>());
        Check("offsetof(struct tpacket_stats, tp_drops)", Marshal.OffsetOf<Native.tpacket_stats>(nameof(Native.tpacket_stats.tp_drops)));
        Check("sizeof(struct ethtool_value)", Unsafe.SizeOf<Native.ethtool_value>());
        Check("offsetof(struct ethtool_value, data)", Marshal.OffsetOf<Native.ethtool_value>(nameof(Native.ethtool_value.data)));
        Check("offsetof(struct ifreq, ifr_hwaddr.sa_data)", 18);
        Check("offsetof(struct ifreq, ifr_data)", Marshal.OffsetOf<ifreq>(nameof(ifreq.ifr_data)));
        Check("AF_PACKET", NativeMethods.AF_PACKET);
        Check("SOL_PACKET", NativeMethods.SOL_PACKET);
        Check("ETH_P_ALL", NativeMethods.ETH_P_ALL);
        Check("ETH_P_IP", NativeMethods.ETH_P_IP);
        Check("ETH_P_IPV6", NativeMethods.ETH_P_IPV6);
        Check("ETH_HLEN", NativeMethods.ETH_HLEN);
        Check("PACKET_STATISTICS", NativeMethods.PACKET_STATISTICS);
        Check("PACKET_VNET_HDR", NativeMethods.PACKET_VNET_HDR);
        Check("PACKET_FANOUT", NativeMethods.PACKET_FANOUT);
        Check("PACKET_FANOUT_HASH", NativeMethods.PACKET_FANOUT_HASH);
        Check("PACKET_QDISC_BYPASS", NativeMethods.PACKET_QDISC_BYPASS);
        Check("PACKET_IGNORE_OUTGOING", NativeMethods.PACKET_IGNORE_OUTGOING);
        Check("SO_RCVBUFFORCE", NativeMethods.SO_RCVBUFFORCE);
        Check("SO_SNDBUFFORCE", NativeMethods.SO_SNDBUFFORCE);
        Check("ETHTOOL_STXCSUM", NativeMethods.ETHTOOL_STXCSUM);
        Check("ETHTOOL_STSO", NativeMethods.ETHTOOL_STSO);
        Check("ETHTOOL_SGSO", NativeMethods.ETHTOOL_SGSO);
        Check("SIOCETHTOOL", NativeMethods.SIOCETHTOOL);
        Check("SIOCGIFHWADDR", NativeMethods.SIOCGIFHWADDR);
        Check("IFLA_IFNAME", NetlinkLayout.IFLA_IFNAME);
        Check("IFLA_LINKINFO", NetlinkLayout.IFLA_LINKINFO);
        Check("IFLA_INFO_KIND", NetlinkLayout.IFLA_INFO_KIND);
        Check("IFLA_INFO_DATA", NetlinkLayout.IFLA_INFO_DATA);
        Check("VETH_INFO_PEER", NetlinkLayout.VETH_INFO_PEER);
        Check("IFLA_AF_SPEC", NetlinkLayout.IFLA_AF_SPEC);
        Check("IFLA_INET6_ADDR_GEN_MODE", NetlinkLayout.IFLA_INET6_ADDR_GEN_MODE);
        Check("IN6_ADDR_GEN_MODE_NONE", NetlinkLayout.IN6_ADDR_GEN_MODE_NONE);
        Check("NLA_F_NESTED", NetlinkLayout.NLA_F_NESTED);
        Check("IFF_NOARP", NetlinkLayout.IFF_NOARP);

        Check("TUNSETIFF", NativeMethods.TUNSETIFF);
        Check("TUNSETOFFLOAD", NativeMethods.TUNSETOFFLOAD);
        Check("TUNSETPERSIST", NativeMethods.TUNSETPERSIST);
        Check("TUNGETIFF", NativeMethods.TUNGETIFF);
        Check("IFF_PERSIST", NativeMethods.IFF_PERSIST);
        Check("IFF_TUN", NativeMethods.IFF_TUN);
        Check("IFF_NO_PI", NativeMethods.IFF_NO_PI);
        Check("IFF_VNET_HDR", NativeMethods.IFF_VNET_HDR);
        Check("IFF_MULTI_QUEUE", NativeMethods.IFF_MULTI_QUEUE);
        Check("SIOCGIFMTU", NativeMethods.SIOCGIFMTU);
        Check("SIOCGIFINDEX", NativeMethods.SIOCGIFINDEX);
        Check("MSG_DONTWAIT", Tmds.Linux.LibC.MSG_DONTWAIT);
        Check("MSG_TRUNC", Tmds.Linux.LibC.MSG_TRUNC);
        Check("SCM_RIGHTS", NativeMethods.SCM_RIGHTS);
        Check("MSG_CTRUNC", NativeMethods.MSG_CTRUNC);
        Check("MSG_CMSG_CLOEXEC", NativeMethods.MSG_CMSG_CLOEXEC);
        Check("CLONE_NEWNET", NativeMethods.CLONE_NEWNET);

        Check("NETLINK_ROUTE", NetlinkLayout.NETLINK_ROUTE);
        Check("sizeof(struct sockaddr_nl)", NetlinkLayout.SockaddrNlSize);
        Check("sizeof(struct nlmsghdr)", NetlinkLayout.NlmsghdrSize);
        Check("sizeof(struct ifinfomsg)", NetlinkLayout.IfinfomsgSize);
        Check("sizeof(struct ifaddrmsg)", NetlinkLayout.IfaddrmsgSize);
        Check("sizeof(struct rtmsg)", NetlinkLayout.RtmsgSize);
        Check("sizeof(struct rtattr)", NetlinkLayout.RtattrSize);
        Check("offsetof(struct ifinfomsg, ifi_index)", 4);
        Check("offsetof(struct ifinfomsg, ifi_flags)", 8);
        Check("offsetof(struct ifinfomsg, ifi_change)", 12);
        Check("offsetof(struct ifaddrmsg, ifa_index)", 4);
        Check("offsetof(struct rtmsg, rtm_table)", 4);
        Check("offsetof(struct rtmsg, rtm_protocol)", 5);
        Check("offsetof(struct rtmsg, rtm_scope)", 6);
        Check("offsetof(struct rtmsg, rtm_type)", 7);
        Check("NLMSG_ERROR", NetlinkLayout.NLMSG_ERROR);
        Check("NLM_F_REQUEST", NetlinkLayout.NLM_F_REQUEST);
        Check("NLM_F_ACK", NetlinkLayout.NLM_F_ACK);
        Check("NLM_F_REPLACE", NetlinkLayout.NLM_F_REPLACE);
        Check("NLM_F_EXCL", NetlinkLayout.NLM_F_EXCL);
        Check("NLM_F_CREATE", NetlinkLayout.NLM_F_CREATE);
        Check("RTM_NEWLINK", NetlinkLayout.RTM_NEWLINK);
        Check("RTM_DELLINK", NetlinkLayout.RTM_DELLINK);
        Check("RTM_NEWADDR", NetlinkLayout.RTM_NEWADDR);
        Check("RTM_NEWROUTE", NetlinkLayout.RTM_NEWROUTE);
        Check("RTM_DELROUTE", NetlinkLayout.RTM_DELROUTE);
        Check("IFLA_MTU", NetlinkLayout.IFLA_MTU);
        Check("IFLA_TXQLEN", NetlinkLayout.IFLA_TXQLEN);
        Check("IFLA_IFALIAS", NetlinkLayout.IFLA_IFALIAS);
        Check("IFA_ADDRESS", NetlinkLayout.IFA_ADDRESS);
        Check("IFA_LOCAL", NetlinkLayout.IFA_LOCAL);
        Check("RTA_DST", NetlinkLayout.RTA_DST);
        Check("RTA_OIF", NetlinkLayout.RTA_OIF);
        Check("RTA_METRICS", NetlinkLayout.RTA_METRICS);
        // UdpEndpoint writes and reads socket addresses byte by byte: sockaddr_in6's layout, and room for either family.
        Check("sizeof(struct sockaddr_in6)", UdpEndpoint.StorageSize);
        Check("offsetof(struct sockaddr_in6, sin6_port)", 2);
        Check("offsetof(struct sockaddr_in6, sin6_addr)", 8);
        Check("offsetof(struct sockaddr_in, sin_addr)", 4);
        Check("AF_INET6", Tmds.Linux.LibC.AF_INET6);
        Check("IPV6_V6ONLY", Tmds.Linux.LibC.IPV6_V6ONLY);
        Check("RTAX_MTU", NetlinkLayout.RTAX_MTU);
        Check("IFA_F_NODAD", NetlinkLayout.IFA_F_NODAD);
        Check("RT_SCOPE_UNIVERSE", NetlinkLayout.RT_SCOPE_UNIVERSE);
        Check("IFF_UP", NetlinkLayout.IFF_UP);
        Check("RT_TABLE_MAIN", NetlinkLayout.RT_TABLE_MAIN);
        Check("RTPROT_BOOT", NetlinkLayout.RTPROT_BOOT);
        Check("RT_SCOPE_LINK", NetlinkLayout.RT_SCOPE_LINK);
        Check("RTN_UNICAST", NetlinkLayout.RTN_UNICAST);

        string dir = Directory.CreateTempSubdirectory("dp-layout-").FullName;
        try
        {
            string file = Path.Combine(dir, "layout.c");
            File.WriteAllText(file, c.ToString());
            var psi = new ProcessStartInfo("gcc", ["-fsyntax-only", "-Wall", "-Werror", file]) { RedirectStandardError = true, RedirectStandardOutput = true };
            Process gcc;
            try
            {
                gcc = Process.Start(psi)!;
            }
            catch (System.ComponentModel.Win32Exception)
            {
                Assert.Fail("gcc is needed to check struct layouts against the C headers (apt-get install gcc libc6-dev linux-libc-dev)");
                return;
            }
            string errors = gcc.StandardError.ReadToEnd();
            gcc.WaitForExit();
            Assert.True(gcc.ExitCode == 0, $"the C headers disagree:\n{errors}");
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
