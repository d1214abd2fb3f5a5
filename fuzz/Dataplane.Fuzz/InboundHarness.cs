using Dataplane.Encap;
using Dataplane.Engine;
using Dataplane.TestSupport;
using Dataplane.TunTap;

namespace Dataplane.Fuzz;

/// <summary>
/// The real inbound loop over the shared in-memory edges: the input is one datagram from peer
/// 192.0.2.2. Dual-stack (targets inbound6-*): the node and the peer also hold IPv6 subnets
/// (2001:db8:244:1::/64, 2001:db8:244:2::/64, the peer at [2001:db8:2::2]); the input's first byte
/// says which of the peer's addresses the datagram comes from (odd: IPv6), the rest is the datagram.
/// </summary>
internal sealed class InboundHarness
{
    private static readonly MacAddress OurMac = new(0x0E_00_5E_00_00_01);
    private static readonly MacAddress OurMacV6 = new(0x0E_00_5E_06_00_01);
    private static readonly UdpEndpoint Peer = new(0xC000_0202, 51000);
    private static readonly UdpEndpoint Peer6 = UdpEndpoint.Ipv6(new UInt128(0x2001_0DB8_0002_0000, 2), 51000);
    private readonly MemoryUnderlay _underlay = new(new UdpEndpoint(0xC000_0201, 8472));
    private readonly MemoryDevice _device = new();
    private readonly DataplaneEngine _engine;
    private readonly bool _dualStack;

    public InboundHarness(BackendKind backend, bool dualStack = false)
    {
        _dualStack = dualStack;
        var network = new Ipv4Prefix(0x0AF4_0000, 16);
        var peer = new Peer(new Ipv4Prefix(0x0AF4_0200, 24), new UdpEndpoint(0xC000_0202, 8472), new MacAddress(0x0E_00_5E_00_00_02));
        (Ipv6Prefix, int, Ipv6Prefix)? ipv6 = null;
        if (dualStack)
        {
            UInt128 net6 = new(0x2001_0DB8_0244_0000, 0);
            peer = peer with { Ipv6Subnet = new Ipv6Prefix(net6 + ((UInt128)2 << 64), 64), Endpoint6 = Peer6 with { Port = 8472 }, VtepMacV6 = new MacAddress(0x0E_00_5E_06_00_02) };
            ipv6 = (new Ipv6Prefix(net6, 48), 64, new Ipv6Prefix(net6 + ((UInt128)1 << 64), 64));
        }
        var table = new SubnetTable(network, 24, new Ipv4Prefix(0x0AF4_0100, 24), [peer], ipv6);
        _engine = new DataplaneEngine(_device, _underlay, table, new EngineSettings(backend, 1, OurMac, BatchSize: 4) { OurVtepMacV6 = OurMacV6 });
    }

    public void Run(byte[] input)
    {
        UdpEndpoint from = Peer;
        if (_dualStack)
        {
            if (input.Length == 0)
            {
                return;
            }
            from = (input[0] & 1) != 0 ? Peer6 : Peer;
            input = input[1..];
        }
        LoopCounters c = _engine.Inbound.Counters;
        long before = c.Packets, dropped = c.Drops.Sum(), answered = c.ArpReplies + c.NdReplies;
        // A datagram larger than a slot arrives cut short and flagged, as the kernel hands it over.
        int room = EngineSettings.DefaultSlotSize - PacketBatch.Headroom;
        _underlay.Deliver(input.Length > room ? input[..room] : input, from, truncated: input.Length > room);
        _engine.Inbound.RunOnce(0);
        int delivered = 0;
        while (_device.Written.TryDequeue(out _)) // each was copied out of its slot: offsets and lengths were inside it
        {
            delivered++;
        }
        while (_underlay.Sent.TryDequeue(out (byte[] Data, UdpEndpoint To) reply))
        {
            // An answer (ARP, Neighbor Advertisement) goes back to the peer's listening port, over the underlay it came from.
            if (reply.To.Port != 8472 || reply.To.IsIpv6 != from.IsIpv6)
            {
                throw new InvalidOperationException($"a reply went to {reply.To} for a datagram from {from}");
            }
        }
        long accounted = delivered + (c.Drops.Sum() - dropped) + (c.ArpReplies + c.NdReplies - answered);
        if (c.Packets - before != 1 || accounted != 1)
        {
            throw new InvalidOperationException($"a datagram was neither delivered nor counted: packets {c.Packets - before}, accounted {accounted}");
        }
    }
}
