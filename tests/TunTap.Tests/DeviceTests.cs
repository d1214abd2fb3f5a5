using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Dataplane.Encap;
using PacketDotNet;

using Dataplane.TestSupport;

namespace Dataplane.TunTap.Tests;

/// <summary>Real TUN devices, rtnetlink and UDP batch sockets, each inside a namespace made for the test.</summary>
public class DeviceTests
{
    private static uint Ip(string s) => Ipv4Prefix.ToUInt32(IPAddress.Parse(s));

    [Fact]
    public void Tun_device_with_netlink_address_and_route_carries_packets_both_ways()
    {
        using var ns = new TestNamespace();
        var (tun, sender) = ns.Run(() =>
        {
            TunDevice t = TunDevice.Open("dptest0");
            using RouteNetlink nl = RouteNetlink.Open();
            int index = RouteNetlink.LinkIndex("dptest0");
            Assert.True(index > 0);
            nl.SetLinkUp(index, 1400, "up");
            nl.AddAddress(index, Ip("10.244.1.0"), 32, "addr");
            nl.AddAddress(index, Ip("10.244.1.0"), 32, "addr again"); // idempotent
            nl.ReplaceRoute(new Ipv4Prefix(Ip("10.244.0.0"), 16), index, "route");
            nl.ReplaceRoute(new Ipv4Prefix(Ip("10.244.0.0"), 16), index, "route again");
            Assert.Equal(1400, RouteNetlink.GetMtu("dptest0"));
            var s = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, System.Net.Sockets.ProtocolType.Udp);
            return (t, s);
        });
        using (tun)
        using (sender)
        {
            string routes = ns.Ip("route", "show");
            Assert.Contains("10.244.0.0/16 dev dptest0", routes);
            Assert.Contains("10.244.1.0/32", ns.Ip("addr", "show", "dev", "dptest0"));
            Assert.Contains("mtu 1400", ns.Ip("link", "show", "dptest0"));

            // Host -> device: a datagram routed into the overlay comes out of the TUN as an IP packet.
            sender.SendTo(new byte[100], new IPEndPoint(IPAddress.Parse("10.244.2.5"), 9999));
            var batch = new PacketBatch(8, 2048);
            Assert.True(ReadUntil(tun, batch, p => p[9] == 17), "the UDP datagram did not come out of the device");
            var ip = new IPv4Packet(new PacketDotNet.Utils.ByteArraySegment(batch.Packet(FindIndex(batch, p => p[9] == 17)).ToArray()));
            Assert.Equal("10.244.1.0", ip.SourceAddress.ToString());
            Assert.Equal("10.244.2.5", ip.DestinationAddress.ToString());
            Assert.Equal(128, ip.TotalLength);

            // Device -> host: an echo request written into the TUN is answered by the kernel, back through the TUN.
            byte[] echo = new byte[28];
            Ipv4Header.Write(echo, 28, 7, 0, 64, Ipv4Header.ProtocolIcmp, Ip("10.244.2.5"), Ip("10.244.1.0"));
            echo[20] = 8;
            BinaryPrimitives.WriteUInt16BigEndian(echo.AsSpan(24), 0x77);
            BinaryPrimitives.WriteUInt16BigEndian(echo.AsSpan(22), InternetChecksum.Compute(echo.AsSpan(20)));
            Assert.True(tun.Write(echo));
            Assert.True(ReadUntil(tun, batch, p => p[9] == 1 && p[20] == 0), "no echo reply came back");
            var reply = new IPv4Packet(new PacketDotNet.Utils.ByteArraySegment(batch.Packet(FindIndex(batch, p => p[9] == 1 && p[20] == 0)).ToArray()));
            Assert.Equal("10.244.2.5", reply.DestinationAddress.ToString());
            Assert.Equal(IcmpV4TypeCode.EchoReply, reply.Extract<IcmpV4Packet>().TypeCode);
        }
        // Closing the descriptor deleted the device and its route.
        Assert.DoesNotContain("dptest0", ns.Ip("link", "show"));
        Assert.DoesNotContain("10.244.0.0/16", ns.Ip("route", "show"));
    }

    [Fact]
    public void Netlink_delete_route_and_link()
    {
        using var ns = new TestNamespace();
        using TunDevice tun = ns.Run(() =>
        {
            TunDevice t = TunDevice.Open("dptest1");
            using RouteNetlink nl = RouteNetlink.Open();
            int index = RouteNetlink.LinkIndex("dptest1");
            nl.SetLinkUp(index, 1450, "up");
            var net = new Ipv4Prefix(Ip("10.244.0.0"), 16);
            nl.ReplaceRoute(net, index, "route");
            nl.DeleteRoute(net, index, "delete route");
            nl.DeleteRoute(net, index, "delete route again"); // already gone: fine
            nl.DeleteLink(index, "delete link");
            nl.DeleteLink(index, "delete link again");
            return t;
        });
        Assert.DoesNotContain("dptest1", ns.Ip("link", "show"));
    }

    [Fact]
    public void Setup_errors_name_the_call_and_the_errno()
    {
        using var ns = new TestNamespace();
        ns.Run(() =>
        {
            using RouteNetlink nl = RouteNetlink.Open();
            var e = Assert.Throws<NativeException>(() => nl.ReplaceRoute(new Ipv4Prefix(Ip("10.244.0.0"), 16), 9999, "route 10.244.0.0/16 dev nowhere"));
            Assert.StartsWith("route 10.244.0.0/16 dev nowhere: ENODEV", e.Message);
            var mtu = Assert.Throws<NativeException>(() => RouteNetlink.GetMtu("nosuchdev"));
            Assert.StartsWith("SIOCGIFMTU nosuchdev: ENODEV", mtu.Message);
            Assert.Throws<ArgumentException>(() => TunDevice.Open("a-name-longer-than-15"));
            using TunDevice first = TunDevice.Open("dptest2");
            var busy = Assert.Throws<NativeException>(() => TunDevice.Open("dptest2"));
            Assert.StartsWith("TUNSETIFF dptest2: EBUSY", busy.Message);
            var bind = Assert.Throws<NativeException>(() => UdpBatchSocket.Bind(new UdpEndpoint(Ip("192.0.2.77"), 8472), 4));
            Assert.StartsWith("bind 192.0.2.77:8472: EADDRNOTAVAIL", bind.Message);
            return 0;
        });
    }

    [Fact]
    public void Udp_batch_socket_moves_a_batch_per_call_and_flags_truncation()
    {
        using var ns = new TestNamespace();
        var (a, b) = ns.Run(() => (UdpBatchSocket.Bind(new UdpEndpoint(Ip("127.0.0.1"), 18472), 16),
                                   UdpBatchSocket.Bind(new UdpEndpoint(Ip("127.0.0.1"), 18473), 16)));
        using (a)
        using (b)
        {
            var tx = new PacketBatch(16, 2048);
            for (int i = 0; i < 10; i++)
            {
                byte[] payload = new byte[100 + i];
                payload[0] = (byte)i;
                tx.Set(i, payload, b.LocalEndpoint);
            }
            tx.Lengths[3] = 0; // a dropped slot is skipped
            tx.Count = 10;
            Assert.Equal(9, a.SendBatch(tx));

            var rx = new PacketBatch(16, 2048);
            int got = 0;
            var seen = new List<int>();
            var deadline = DateTime.UtcNow.AddSeconds(5);
            while (got < 9 && DateTime.UtcNow < deadline)
            {
                int n = b.ReceiveBatch(rx, 500);
                for (int i = 0; i < n; i++)
                {
                    Assert.Equal(a.LocalEndpoint, rx.Endpoints[i]);
                    Assert.Equal(0, rx.Flags[i]);
                    seen.Add(rx.Packet(i)[0]);
                    Assert.Equal(100 + rx.Packet(i)[0], rx.Lengths[i]);
                }
                got += n;
            }
            Assert.Equal([0, 1, 2, 4, 5, 6, 7, 8, 9], seen);

            // A datagram larger than the slot is flagged, not silently cut.
            var small = new PacketBatch(4, PacketBatch.Headroom + 64);
            tx.Set(0, new byte[200], b.LocalEndpoint);
            tx.Count = 1;
            Assert.Equal(1, a.SendBatch(tx));
            Assert.Equal(1, b.ReceiveBatch(small, 2000));
            Assert.Equal(PacketBatch.FlagTruncated, small.Flags[0]);

            Assert.Equal(0, b.ReceiveBatch(rx, 50)); // nothing left: a timeout returns 0
        }
    }

    private static bool ReadUntil(TunDevice tun, PacketBatch batch, Func<byte[], bool> match)
    {
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (DateTime.UtcNow < deadline)
        {
            if (tun.ReadBatch(batch, 200) > 0 && FindIndex(batch, match) >= 0)
            {
                return true;
            }
        }
        return false;
    }

    private static int FindIndex(PacketBatch batch, Func<byte[], bool> match)
    {
        for (int i = 0; i < batch.Count; i++)
        {
            byte[] p = batch.Packet(i).ToArray();
            if (p.Length >= 21 && p[0] >> 4 == 4 && match(p))
            {
                return i;
            }
        }
        return -1;
    }

    [Fact]
    public void Multiqueue_device_lives_until_its_last_queue_closes_and_reuseport_sockets_share_a_port()
    {
        using var ns = new TestNamespace();
        var (q0, q1, s0, s1) = ns.Run(() => (TunDevice.Open("dpmq0", multiQueue: true), TunDevice.Open("dpmq0", multiQueue: true),
            UdpBatchSocket.Bind(new UdpEndpoint(Ip("127.0.0.1"), 18480), 4, reusePort: true),
            UdpBatchSocket.Bind(new UdpEndpoint(Ip("127.0.0.1"), 18480), 4, reusePort: true)));
        using (s0)
        using (s1)
        {
            Assert.Contains("multi_queue", ns.Ip("-d", "link", "show", "dpmq0"));
            q0.Dispose();
            Assert.Contains("dpmq0", ns.Ip("link", "show"));
            q1.Dispose();
            Assert.DoesNotContain("dpmq0", ns.Ip("link", "show"));
            var e = Assert.Throws<AggregateException>(() => ns.Run(() => UdpBatchSocket.Bind(new UdpEndpoint(Ip("127.0.0.1"), 18480), 4)));
            Assert.Contains("EADDRINUSE", e.InnerException!.Message); // without SO_REUSEPORT the port is taken
        }
    }
}
