using System.Net;
using Dataplane.Encap;
using Dataplane.TestSupport;

namespace Dataplane.TunTap.Tests;

/// <summary>
/// The queues' spreading on real sockets (loopback of a namespace of its own): send-only sockets on
/// consecutive ports, and a SO_REUSEPORT group that hands each datagram to socket
/// <c>source port % sockets</c> (the kernel runs our classic BPF program), for IPv4 and IPv6.
/// </summary>
public class SourcePortSteeringTests
{
    private static UdpEndpoint Loopback(bool ipv6, ushort port) =>
        ipv6 ? UdpEndpoint.Ipv6(UInt128.One, port) : new UdpEndpoint(Ipv4Prefix.ToUInt32(IPAddress.Loopback), port);

    [Theory]
    [InlineData(false, 3)]
    [InlineData(true, 3)]
    [InlineData(false, 2)]
    public void Each_datagram_reaches_the_socket_its_source_port_picks(bool ipv6, int queues)
    {
        using var ns = new TestNamespace();
        (UdpBatchSocket[] group, UdpBatchSocket[] senders) = ns.Run(() =>
        {
            UdpBatchSocket[] g = [.. Enumerable.Range(0, queues).Select(_ => UdpBatchSocket.Bind(Loopback(ipv6, 18472), 16, reusePort: true))];
            g[0].SteerBySourcePort(queues);
            // Two senders per queue, so every remainder is sent from more than one port.
            return (g, UdpBatchSocket.BindSendPorts(Loopback(ipv6, 0), 2 * queues, 16, offload: true));
        });
        try
        {
            Assert.Equal(0, senders[0].LocalEndpoint.Port % senders.Length); // queue i's port leaves remainder i
            for (int i = 1; i < senders.Length; i++)
            {
                Assert.Equal(senders[0].LocalEndpoint.Port + i, senders[i].LocalEndpoint.Port);
                Assert.Equal(ipv6, senders[i].LocalEndpoint.IsIpv6);
            }
            const int PerSender = 5;
            foreach (UdpBatchSocket s in senders)
            {
                var batch = new PacketBatch(PerSender, 2048);
                for (int i = 0; i < PerSender; i++)
                {
                    batch.Set(i, [(byte)i, 1, 2, 3], Loopback(ipv6, 18472));
                }
                batch.Count = PerSender;
                Assert.Equal(PerSender, s.SendBatch(batch));
            }
            var received = new Dictionary<int, List<ushort>>();
            for (int q = 0; q < queues; q++)
            {
                received[q] = [];
                var batch = new PacketBatch(64, 2048);
                while (group[q].ReceiveBatch(batch, 200) > 0)
                {
                    for (int i = 0; i < batch.Count; i++)
                    {
                        received[q].Add(batch.Endpoints[i].Port);
                    }
                }
            }
            Assert.Equal(senders.Length * PerSender, received.Values.Sum(l => l.Count));
            for (int q = 0; q < queues; q++)
            {
                Assert.NotEmpty(received[q]);
                Assert.All(received[q], port => Assert.Equal(q, port % queues));
            }
        }
        finally
        {
            Array.ForEach(group, s => s.Dispose());
            Array.ForEach(senders, s => s.Dispose());
        }
    }

    [Fact]
    public void Send_ports_move_on_when_a_port_of_the_block_is_taken()
    {
        using var ns = new TestNamespace();
        // Four ephemeral ports in this namespace, one of them taken: a block of two (starting at an
        // even port) that would include it (40000-40001) is given back and another one taken instead.
        ns.Sysctl("net.ipv4.ip_local_port_range=40000 40003");
        (UdpBatchSocket taken, List<UdpBatchSocket[]> blocks) = ns.Run(() =>
        {
            UdpBatchSocket t = UdpBatchSocket.Bind(Loopback(false, 40001), 4);
            var b = new List<UdpBatchSocket[]>();
            for (int i = 0; i < 10; i++)
            {
                UdpBatchSocket[] block = UdpBatchSocket.BindSendPorts(Loopback(false, 0), 2, 4, offload: false);
                b.Add(block);
                Array.ForEach(block, s => s.Dispose()); // free again: the next block may start anywhere
            }
            return (t, b);
        });
        using (taken)
        {
            Assert.All(blocks, b =>
            {
                Assert.Equal(b[0].LocalEndpoint.Port + 1, b[1].LocalEndpoint.Port);
                Assert.Equal(0, b[0].LocalEndpoint.Port % 2);
                Assert.InRange(b[0].LocalEndpoint.Port, 40002, 40004); // never 40000: its neighbour is taken
            });
        }
    }
}
