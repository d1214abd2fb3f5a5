using System.Diagnostics;
using System.Net;
using Dataplane.Encap;
using Dataplane.TestSupport;

namespace Dataplane.TunTap.Tests;

/// <summary>
/// The dual-stack underlay on real sockets (loopback of a namespace of its own): one batch with
/// datagrams for both families goes out through each family's socket, and one receive sees both,
/// each with its source; an IPv6 socket takes no IPv4 (IPV6_V6ONLY).
/// </summary>
public class DualStackSocketTests
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
            new DualStackSocket(UdpBatchSocket.Bind(new UdpEndpoint(Ip("127.0.0.1"), 18490), 16, offload), UdpBatchSocket.Bind(Ip6("::1", 18490), 16, offload)),
            new DualStackSocket(UdpBatchSocket.Bind(new UdpEndpoint(Ip("127.0.0.1"), 18491), 16, offload), UdpBatchSocket.Bind(Ip6("::1", 18491), 16, offload))));
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
        DualStackSocket s = ns.Run(() => new DualStackSocket(UdpBatchSocket.Bind(new UdpEndpoint(Ip("127.0.0.1"), 18492), 8),
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
            Assert.Equal(new UdpEndpoint(Ip("127.0.0.1"), 18492), s.LocalEndpoint);
            Assert.True(s.Ipv6.LocalEndpoint.IsIpv6);
            Assert.Equal("[::1]:18492", s.Ipv6.LocalEndpoint.ToString());
        }
    }
}
