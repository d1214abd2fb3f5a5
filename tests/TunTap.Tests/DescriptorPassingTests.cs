using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Dataplane.Encap;
using Dataplane.TestSupport;
using static Tmds.Linux.LibC;

namespace Dataplane.TunTap.Tests;

/// <summary>
/// The ground of a hand-over: a TUN queue and a UDP socket passed over a Unix socket (SCM_RIGHTS)
/// are the same kernel objects, still attached, with what was queued in them before the pass; the
/// sender's own descriptor may close meanwhile. A receiver without room for every descriptor
/// closes those it got and fails, leaking none.
/// </summary>
public class DescriptorPassingTests
{
    private static uint Ip(string s) => Ipv4Prefix.ToUInt32(IPAddress.Parse(s));

    /// <summary>A connected pair of Unix sequenced-packet sockets (the hand-over's connection, in one process).</summary>
    private static unsafe (int A, int B) Pair()
    {
        int* fds = stackalloc int[2];
        Assert.Equal(0, socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds));
        return (fds[0], fds[1]);
    }

    private static int Handed(int from, int to, int fd, string text)
    {
        DescriptorPassing.Send(from, Encoding.ASCII.GetBytes(text), [fd]);
        byte[] buffer = new byte[64];
        int[] got = new int[4];
        int length = DescriptorPassing.Receive(to, buffer, got, out int count);
        Assert.Equal(text, Encoding.ASCII.GetString(buffer, 0, length));
        Assert.Equal(1, count);
        Assert.NotEqual(fd, got[0]); // a new descriptor of the same open file description
        return got[0];
    }

    [Fact]
    public void A_udp_socket_passed_keeps_the_datagrams_queued_in_it()
    {
        using var ns = new TestNamespace();
        UdpBatchSocket original = ns.Run(() => UdpBatchSocket.Bind(new UdpEndpoint(Ip("127.0.0.1"), 18496), 16, offload: true));
        ns.Run(() =>
        {
            using var sender = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            for (byte i = 1; i <= 3; i++)
            {
                sender.SendTo([i, i, i], new IPEndPoint(IPAddress.Loopback, 18496));
            }
            return 0;
        });
        (int a, int b) = Pair();
        int passed = Handed(a, b, original.DescriptorNumber, "udp q0");
        original.Dispose(); // the sender's descriptor closes: the socket lives on in the passed one
        using UdpBatchSocket adopted = UdpBatchSocket.Adopt(passed, 16);
        Assert.Equal(new UdpEndpoint(Ip("127.0.0.1"), 18496), adopted.LocalEndpoint);
        var batch = new PacketBatch(16, 2048);
        int n = adopted.ReceiveBatch(batch, 2000);
        Assert.Equal(3, n);
        Assert.Equal([1, 2, 3], Enumerable.Range(0, n).Select(i => (int)batch.Packet(i)[0]));
        close(a);
        close(b);
    }

    [Fact]
    public void A_tun_queue_passed_keeps_the_packets_queued_in_it_and_is_checked_for_its_device()
    {
        using var ns = new TestNamespace();
        TunDevice original = ns.Run(() => TunDevice.Open("dphand0", offload: false));
        ns.Ip("addr", "add", "10.99.0.1/24", "dev", "dphand0");
        ns.Ip("link", "set", "dphand0", "up");
        ns.Run(() =>
        {
            using var sender = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            for (byte i = 1; i <= 3; i++)
            {
                sender.SendTo([i], new IPEndPoint(IPAddress.Parse("10.99.0.2"), 9)); // routed into the TUN, queued unread
            }
            return 0;
        });
        (int a, int b) = Pair();
        int passed = Handed(a, b, original.DescriptorNumber, "tun q0");
        original.Dispose(); // not the last descriptor: the device and its ring stay
        Assert.Contains("dphand0", ns.Ip("link", "show"));

        int again = Handed(a, b, passed, "tun q0 again");
        Assert.Throws<NativeException>(() => TunDevice.Adopt(again, "flannel0", offload: false, 0)); // another device's name: refused
        using TunDevice adopted = TunDevice.Adopt(passed, "dphand0", offload: false, 0);
        var batch = new PacketBatch(16, 2048);
        int n = adopted.ReadBatch(batch, 2000);
        // The kernel's own IPv6 chatter on a new link (router solicitation, MLD) may be queued too.
        byte[] payloads = [.. Enumerable.Range(0, n).Select(i => batch.Packet(i).ToArray())
            .Where(p => Ipv4Header.TryRead(p, out Ipv4Header h) == IpParseResult.Ok && h.Destination == Ip("10.99.0.2"))
            .Select(p => p[(p[0] & 0x0F) * 4 + 8])];
        Assert.Equal([1, 2, 3], payloads); // the UDP payloads, in order
        close(a);
        close(b);
    }

    [Fact]
    public void A_packet_socket_passed_keeps_the_frames_queued_in_it()
    {
        using var ns = new TestNamespace();
        PacketSocketDevice original = ns.Run(() =>
        {
            using RouteNetlink nl = RouteNetlink.Open();
            int index = nl.AddVethPair("dphand1", "dphand1-dp", "veth pair");
            int peerIndex = RouteNetlink.LinkIndex("dphand1-dp");
            nl.SetNoIpv6LinkLocal(peerIndex, "addrgenmode none");
            nl.SetLinkUp(peerIndex, 1450, "up");
            nl.SetLinkUp(index, 1450, "up", noArp: true);
            nl.AddAddress(index, Ip("10.98.0.1"), 32, "addr");
            nl.ReplaceRoute(new Ipv4Prefix(Ip("10.98.0.0"), 24), index, "route");
            return PacketSocketDevice.Open("dphand1", "dphand1-dp", RouteNetlink.GetMac("dphand1"), RouteNetlink.GetMac("dphand1-dp"), offload: false, fanoutGroup: peerIndex);
        });
        ns.Run(() =>
        {
            using var sender = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            for (byte i = 1; i <= 3; i++)
            {
                sender.SendTo([i], new IPEndPoint(IPAddress.Parse("10.98.0.2"), 9)); // out of the host end, into our packet socket
            }
            return 0;
        });
        (int a, int b) = Pair();
        int passed = Handed(a, b, original.DescriptorNumber, "packet q0");
        original.Dispose();
        int again = Handed(a, b, passed, "packet q0 again");
        var refused = Assert.Throws<AggregateException>(() => ns.Run(() => PacketSocketDevice.Adopt(again, "dphand1", "dphand1-dp", offload: true)));
        Assert.IsType<NativeException>(refused.InnerException); // the other mode: refused
        using PacketSocketDevice adopted = ns.Run(() => PacketSocketDevice.Adopt(passed, "dphand1", "dphand1-dp", offload: false));
        var batch = new PacketBatch(16, 2048);
        int n = adopted.ReadBatch(batch, 2000);
        byte[] payloads = [.. Enumerable.Range(0, n).Select(i => batch.Packet(i).ToArray())
            .Where(p => Ipv4Header.TryRead(p, out Ipv4Header h) == IpParseResult.Ok && h.Destination == Ip("10.98.0.2"))
            .Select(p => p[(p[0] & 0x0F) * 4 + 8])];
        Assert.Equal([1, 2, 3], payloads);
        close(a);
        close(b);
    }

    [Fact]
    public void Descriptors_beyond_the_receivers_room_are_closed_and_the_receive_fails()
    {
        (int a, int b) = Pair();
        int[] sent = [eventfd(0, EFD_CLOEXEC), eventfd(0, EFD_CLOEXEC), eventfd(0, EFD_CLOEXEC)];
        string[] ids = [.. sent.Select(EventfdId)];
        DescriptorPassing.Send(a, "three"u8, sent);
        var e = Assert.Throws<NativeException>(() => DescriptorPassing.Receive(b, new byte[16], new int[1], out _));
        Assert.Equal(Errno.EMSGSIZE, e.Errno);
        // The three received descriptors were closed: no descriptor but the sent ones refers to their eventfds
        // (by eventfd-id, so descriptors other tests open meanwhile do not count).
        int[] holders = [.. Directory.GetFiles("/proc/self/fd").Select(f => int.Parse(Path.GetFileName(f), CultureInfo.InvariantCulture))
            .Where(fd => !sent.Contains(fd) && ids.Contains(EventfdId(fd)))];
        Assert.Empty(holders);
        foreach (int fd in sent)
        {
            close(fd);
        }
        close(a);
        close(b);
    }

    /// <summary>The kernel's id of the eventfd behind <paramref name="fd"/> (fdinfo's eventfd-id), or "" for another kind of descriptor.</summary>
    private static string EventfdId(int fd)
    {
        try
        {
            return File.ReadLines($"/proc/self/fdinfo/{fd}").FirstOrDefault(l => l.StartsWith("eventfd-id:", StringComparison.Ordinal)) ?? "";
        }
        catch (IOException)
        {
            return ""; // closed meanwhile
        }
    }
}
