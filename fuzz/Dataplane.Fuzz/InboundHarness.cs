using Dataplane.Encap;
using Dataplane.Engine;
using Dataplane.TestSupport;
using Dataplane.TunTap;

namespace Dataplane.Fuzz;

/// <summary>The real inbound loop over the shared in-memory edges: the input is one datagram from peer 192.0.2.2.</summary>
internal sealed class InboundHarness
{
    private static readonly MacAddress OurMac = new(0x0E_00_5E_00_00_01);
    private static readonly UdpEndpoint Peer = new(0xC000_0202, 51000);
    private readonly MemorySocket _socket = new(new UdpEndpoint(0xC000_0201, 8472));
    private readonly MemoryDevice _device = new();
    private readonly DataplaneEngine _engine;

    public InboundHarness(BackendKind backend)
    {
        var network = new Ipv4Prefix(0x0AF4_0000, 16);
        var peer = new Peer(new Ipv4Prefix(0x0AF4_0200, 24), new UdpEndpoint(0xC000_0202, 8472), new MacAddress(0x0E_00_5E_00_00_02));
        var table = new SubnetTable(network, 24, new Ipv4Prefix(0x0AF4_0100, 24), [peer]);
        _engine = new DataplaneEngine(_device, _socket, table, new EngineSettings(backend, 1, OurMac, BatchSize: 4));
    }

    public void Run(byte[] input)
    {
        LoopCounters c = _engine.Inbound.Counters;
        long before = c.Packets, dropped = c.Drops.Sum(), arp = c.ArpReplies;
        // A datagram larger than a slot arrives cut short and flagged, as the kernel hands it over.
        int room = EngineSettings.DefaultSlotSize - PacketBatch.Headroom;
        _socket.Deliver(input.Length > room ? input[..room] : input, Peer, truncated: input.Length > room);
        _engine.Inbound.RunOnce(0);
        int delivered = 0;
        while (_device.Written.TryDequeue(out _)) // each was copied out of its slot: offsets and lengths were inside it
        {
            delivered++;
        }
        while (_socket.Sent.TryDequeue(out _))
        {
        }
        long accounted = delivered + (c.Drops.Sum() - dropped) + (c.ArpReplies - arp);
        if (c.Packets - before != 1 || accounted != 1)
        {
            throw new InvalidOperationException($"a datagram was neither delivered nor counted: packets {c.Packets - before}, accounted {accounted}");
        }
    }
}
