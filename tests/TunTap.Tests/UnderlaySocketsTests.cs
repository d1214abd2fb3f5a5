using System.Diagnostics;
using System.Net;
using Dataplane.Encap;
using Dataplane.TestSupport;

namespace Dataplane.TunTap.Tests;

/// <summary>
/// A queue's underlay on real sockets (loopback of a namespace of its own): with both families one
/// batch with datagrams for both goes out through each family's socket, and one receive sees both,
/// each with its source; an IPv6 socket takes no IPv4 (IPV6_V6ONLY). With one family, the socket
/// sits in its own family's place (never swapped) and datagrams of the other family are not sent.
/// </summary>
public class UnderlaySocketsTests
{
    private static uint Ip(string s) => Ipv4Prefix.ToUInt32(IPAddress.Parse(s));

    private static UdpEndpoint Ip6(string s, ushort port) =>
        UdpEndpoint.Ipv6(Ipv6Prefix.TryParseAddress(s, out UInt128 a) ? a : throw new ArgumentException(s), port);

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_mixed_batch_is_sent_per_family_and_received_as_one(bool offload)
    {
        using var ns = new TestNamespace();
        var (a, b) = ns.Run(() => (
            new UnderlaySockets(UdpBatchSocket.Bind(new UdpEndpoint(Ip("127.0.0.1"), 18490), 16, offload), UdpBatchSocket.Bind(Ip6("::1", 18490), 16, offload)),
            new UnderlaySockets(UdpBatchSocket.Bind(new UdpEndpoint(Ip("127.0.0.1"), 18491), 16, offload), UdpBatchSocket.Bind(Ip6("::1", 18491), 16, offload))));
        using (a)
        using (b)
        {
            UdpEndpoint to4 = new(Ip("127.0.0.1"), 18491), to6 = Ip6("::1", 18491);
            var send = new PacketBatch(8, 2048);
            UdpEndpoint[] targets = [to4, to6, to6, to4, to6];
            for (int i = 0; i < targets.Length; i++)
            {
                send.Set(i, Enumerable.Repeat((byte)i, 100).ToArray(), targets[i]);
            }
            send.Count = targets.Length;
            Assert.Equal(5, a.SendBatch(send));

            var got = new List<(byte Tag, UdpEndpoint From)>();
            var receive = new PacketBatch(8, 2048);
            var deadline = Stopwatch.StartNew();
            while (got.Count < 5 && deadline.Elapsed < TimeSpan.FromSeconds(5))
            {
                int n = b.ReceiveBatch(receive, 500);
                for (int i = 0; i < n; i++)
                {
                    Assert.Equal(100, receive.Lengths[i]);
                    got.Add((receive.Packet(i)[0], receive.Endpoints[i]));
                }
            }
            Assert.Equal([0, 1, 2, 3, 4], got.Select(g => (int)g.Tag).Order());
            foreach ((byte tag, UdpEndpoint from) in got)
            {
                Assert.Equal(targets[tag].IsIpv6, from.IsIpv6);
                Assert.Equal(targets[tag].IsIpv6 ? Ip6("::1", 18490) : new UdpEndpoint(Ip("127.0.0.1"), 18490), from);
            }
        }
    }

    [Fact]
    public void Stop_waiting_wakes_a_receive_waiting_on_both_sockets()
    {
        using var ns = new TestNamespace();
        UnderlaySockets s = ns.Run(() => new UnderlaySockets(UdpBatchSocket.Bind(new UdpEndpoint(Ip("127.0.0.1"), 18492), 8),
            UdpBatchSocket.Bind(Ip6("::1", 18492), 8)));
        using (s)
        {
            var batch = new PacketBatch(8, 2048);
            var sw = Stopwatch.StartNew();
            var waiting = Task.Run(() => s.ReceiveBatch(batch, 10_000));
            Thread.Sleep(200);
            s.StopWaiting();
            Assert.True(waiting.Wait(TimeSpan.FromSeconds(2)));
            Assert.Equal(0, waiting.Result);
            Assert.True(sw.Elapsed < TimeSpan.FromSeconds(2));
            Assert.Equal(new UdpEndpoint(Ip("127.0.0.1"), 18492), s.LocalEndpointOf(ipv6: false));
            Assert.Equal(Ip6("::1", 18492), s.LocalEndpointOf(ipv6: true));
            Assert.Equal("127.0.0.1:18492 and [::1]:18492", s.ToString());
        }
    }

    [Fact]
    public void An_ipv6_only_underlay_keeps_its_socket_in_the_ipv6_place_and_sends_no_ipv4()
    {
        using var ns = new TestNamespace();
        var (a, b) = ns.Run(() => (new UnderlaySockets(null, UdpBatchSocket.Bind(Ip6("::1", 18493), 8)),
            new UnderlaySockets(null, UdpBatchSocket.Bind(Ip6("::1", 18494), 8))));
        using (a)
        using (b)
        {
            Assert.Null(a.Ipv4);
            Assert.Equal(Ip6("::1", 18493), a.LocalEndpointOf(ipv6: true));
            Assert.Equal(default, a.LocalEndpointOf(ipv6: false));
            Assert.Equal("[::1]:18493", a.ToString());

            var send = new PacketBatch(4, 2048);
            send.Set(0, [4, 4, 4], new UdpEndpoint(Ip("127.0.0.1"), 18494)); // no IPv4 socket: not sent
            send.Set(1, [6, 6, 6], Ip6("::1", 18494));
            send.Count = 2;
            Assert.Equal(1, a.SendBatch(send));

            var receive = new PacketBatch(4, 2048);
            Assert.Equal(1, b.ReceiveBatch(receive, 2000));
            Assert.Equal(6, receive.Packet(0)[0]);
            Assert.Equal(Ip6("::1", 18493), receive.Endpoints[0]);
        }
    }

    [Fact]
    public void A_socket_in_the_other_familys_place_or_none_at_all_is_refused()
    {
        using var ns = new TestNamespace();
        var (v4, v6) = ns.Run(() => (UdpBatchSocket.Bind(new UdpEndpoint(Ip("127.0.0.1"), 18495), 4), UdpBatchSocket.Bind(Ip6("::1", 18495), 4)));
        using (v4)
        using (v6)
        {
            Assert.Throws<ArgumentException>(() => new UnderlaySockets(v6, null));
            Assert.Throws<ArgumentException>(() => new UnderlaySockets(null, v4));
            Assert.Throws<ArgumentException>(() => new UnderlaySockets(null, null));
        }
    }
}
