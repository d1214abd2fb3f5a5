using Dataplane.Encap;
using Dataplane.Engine;
using Dataplane.TestSupport;

namespace Dataplane.Tests;

/// <summary>
/// The per-packet path allocates nothing: measured with the thread's allocation counter over many
/// batches. A per-packet allocation shows in every window; a one-off of the runtime (tiered
/// compilation finishing under load) does not, so the best of three windows must be zero.
/// </summary>
public class AllocationTests
{
    internal static long LeastAllocated(Action run, int iterations)
    {
        long least = long.MaxValue;
        for (int window = 0; window < 3 && least > 0; window++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < iterations; i++)
            {
                run();
            }
            least = Math.Min(least, GC.GetAllocatedBytesForCurrentThread() - before);
        }
        return least;
    }

    [Theory]
    [InlineData("Udp")]
    [InlineData("Vxlan")]
    public void Outbound_path_allocates_nothing_per_packet(string backendName)
    {
        BackendKind backend = Enum.Parse<BackendKind>(backendName);
        byte[][] packets =
        [
            Packets.Udp("10.244.1.2", "10.244.2.9", payload: 1400),
            Packets.Udp("10.244.1.2", "10.244.3.9", payload: 64),
            Packets.Icmpv4Echo("10.244.1.2", "10.244.9.9"), // no route: an ICMP error is built too
        ];
        var device = new ReplayDevice(packets);
        var socket = new ReplaySocket([], default);
        using var engine = new DataplaneEngine(device, socket, EngineFixture.Table(EngineFixture.PeerB, EngineFixture.PeerC),
            new EngineSettings(backend, 1, EngineFixture.OurMac) { IcmpRate = 1e12, IcmpBurst = 1e6 });
        for (int i = 0; i < 100; i++)
        {
            engine.Outbound.RunOnce(0); // warm up: tiering, first-use statics
        }
        Assert.Equal(0, LeastAllocated(() => engine.Outbound.RunOnce(0), 2000));
        Assert.True(socket.Sent > 2000 * 40, $"only {socket.Sent} datagrams sent");
        Assert.True(device.Written > 2000 * 20, $"only {device.Written} ICMP errors written");
    }

    [Theory]
    [InlineData("Udp")]
    [InlineData("Vxlan")]
    public void Inbound_path_allocates_nothing_per_packet(string backendName)
    {
        BackendKind backend = Enum.Parse<BackendKind>(backendName);
        byte[] inner = Packets.Udp("10.244.2.9", "10.244.1.2", payload: 1400);
        byte[] datagram = backend == BackendKind.Vxlan ? Packets.Vxlan(inner, 1, EngineFixture.OurMac, EngineFixture.PeerB.VtepMac) : inner;
        byte[] arp = new byte[Arp.Length];
        Arp.Write(arp, Arp.OperationRequest, EngineFixture.PeerB.VtepMac, Packets.Ip("10.244.2.0"), default, Packets.Ip("10.244.1.0"));
        byte[][] datagrams = backend == BackendKind.Vxlan
            ? [datagram, Packets.Vxlan(arp, 1, MacAddress.Broadcast, EngineFixture.PeerB.VtepMac, EthernetHeader.EtherTypeArp), [1, 2, 3]]
            : [datagram, [1, 2, 3]];
        var device = new ReplayDevice([]);
        var socket = new ReplaySocket(datagrams, EngineFixture.PeerB.Endpoint);
        using var engine = new DataplaneEngine(device, socket, EngineFixture.Table(EngineFixture.PeerB, EngineFixture.PeerC),
            new EngineSettings(backend, 1, EngineFixture.OurMac) { IcmpRate = 1e12, IcmpBurst = 1e6 });
        for (int i = 0; i < 100; i++)
        {
            engine.Inbound.RunOnce(0);
        }
        Assert.Equal(0, LeastAllocated(() => engine.Inbound.RunOnce(0), 2000));
        Assert.True(device.Written > 2000 * 20, $"only {device.Written} packets delivered");
    }
}
