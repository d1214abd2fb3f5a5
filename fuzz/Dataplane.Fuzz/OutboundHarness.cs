using System.Buffers.Binary;
using Dataplane.Encap;
using Dataplane.Engine;
using Dataplane.TestSupport;
using Dataplane.TunTap;

using static Dataplane.Fuzz.Property;

namespace Dataplane.Fuzz;

/// <summary>
/// The real outbound loop of a dual-stack node (10.244.1.0/24 and 2001:db8:244:1::/64) over the
/// in-memory edges, target <c>outbound</c>: the input is a batch of packets as the device hands
/// them over (each a length byte pair, then that many bytes; the first input byte picks the
/// backend). Peer A holds 10.244.2.0/24 and 2001:db8:244:2::/64 (192.0.2.2, [2001:db8:2::2]),
/// peer B 10.244.3.0/24 (192.0.2.3). The harness decides on its own where each packet belongs,
/// by its version and destination address alone, and checks the loop against that:
///   - every packet is counted once, and is either sent or dropped under a reason;
///   - the datagrams sent are the packets that have an owner, in order, each to the owner's
///     endpoint of the packet's family, carrying the packet byte for byte (udp: as the payload;
///     vxlan: behind VNI 1 and an Ethernet header from our VTEP MAC of that family to the owner's);
///   - every ICMP error written back answers a dropped packet: to its source, from the base of the
///     unreachable subnet (never one of ours), quoting its start, with checksums that verify.
/// </summary>
internal sealed class OutboundHarness
{
    private const int Batch = 16;
    private static readonly MacAddress OurMac = new(0x0E_00_5E_00_00_01), OurMacV6 = new(0x0E_00_5E_06_00_01);
    private static readonly MacAddress MacA = new(0x0E_00_5E_00_00_02), MacA6 = new(0x0E_00_5E_06_00_02), MacB = new(0x0E_00_5E_00_00_03);
    private static readonly UInt128 Net6 = new(0x2001_0DB8_0244_0000, 0);
    private readonly (MemoryDevice Device, MemoryUnderlay Underlay, DataplaneEngine Engine, ushort Port)[] _nodes;

    public OutboundHarness()
    {
        _nodes = [Node(BackendKind.Vxlan, 8472), Node(BackendKind.Udp, 8285)];
    }

    private static (MemoryDevice, MemoryUnderlay, DataplaneEngine, ushort) Node(BackendKind backend, ushort port)
    {
        var a = new Peer(new Ipv4Prefix(0x0AF4_0200, 24), new UdpEndpoint(0xC000_0202, port), MacA)
        {
            Ipv6Subnet = new Ipv6Prefix(Net6 + ((UInt128)2 << 64), 64),
            Endpoint6 = UdpEndpoint.Ipv6(new UInt128(0x2001_0DB8_0002_0000, 2), port),
            VtepMacV6 = MacA6,
        };
        var b = new Peer(new Ipv4Prefix(0x0AF4_0300, 24), new UdpEndpoint(0xC000_0203, port), MacB);
        var table = new SubnetTable(new Ipv4Prefix(0x0AF4_0000, 16), 24, new Ipv4Prefix(0x0AF4_0100, 24), [a, b],
            (new Ipv6Prefix(Net6, 48), 64, new Ipv6Prefix(Net6 + ((UInt128)1 << 64), 64)));
        var device = new MemoryDevice();
        var underlay = new MemoryUnderlay(new UdpEndpoint(0xC000_0201, port));
        var engine = new DataplaneEngine(device, underlay, table, new EngineSettings(backend, 1, OurMac, BatchSize: Batch) { OurVtepMacV6 = OurMacV6 });
        return (device, underlay, engine, port);
    }

    public void Run(byte[] input)
    {
        if (input.Length == 0)
        {
            return;
        }
        (MemoryDevice device, MemoryUnderlay underlay, DataplaneEngine engine, ushort port) = _nodes[input[0] & 1];
        List<byte[]> packets = Split(input);
        LoopCounters c = engine.Outbound.Counters;
        long before = c.Packets, dropped = c.Drops.Sum(), icmp = c.IcmpSent;
        foreach (byte[] p in packets)
        {
            device.Inject(p);
        }
        while (engine.Outbound.RunOnce(0) > 0)
        {
        }
        Check(c.Packets - before == packets.Count, $"{c.Packets - before} of {packets.Count} packets counted");
        var owned = packets.Select(p => (Packet: p, Owner: Owner(p))).Where(x => x.Owner is not null).ToList();
        Check(c.Drops.Sum() - dropped == packets.Count - owned.Count, $"{c.Drops.Sum() - dropped} drops for {packets.Count - owned.Count} packets without an owner");
        foreach ((byte[] packet, (UdpEndpoint To, MacAddress Mac)? owner) in owned)
        {
            Check(underlay.Sent.TryDequeue(out (byte[] Data, UdpEndpoint To) sent), "a packet with an owner was not sent");
            Check(sent.To == owner!.Value.To with { Port = port }, $"a packet for {owner.Value.To} was sent to {sent.To}");
            Check(Carries(sent.Data, packet, owner.Value.Mac, port == 8472), "a datagram does not carry its packet as sent");
        }
        Check(underlay.Sent.IsEmpty, "a datagram was sent for a packet without an owner");
        var unowned = packets.Where(p => Owner(p) is null).ToList();
        int errors = 0;
        while (device.Written.TryDequeue(out byte[]? error))
        {
            errors++;
            Check(unowned.Any(p => Answers(error, p)), "an ICMP error answers no packet dropped");
        }
        Check(c.IcmpSent - icmp == errors, "IcmpSent counts the errors written");
    }

    /// <summary>The input after its first byte: [length high, length low (mod 9,216, at least 1)] then the packet, up to 16.</summary>
    private static List<byte[]> Split(byte[] input)
    {
        var packets = new List<byte[]>();
        int at = 1;
        while (at + 2 <= input.Length && packets.Count < Batch)
        {
            int len = 1 + (BinaryPrimitives.ReadUInt16BigEndian(input.AsSpan(at)) % (EngineSettings.DefaultSlotSize - PacketBatch.Headroom));
            at += 2;
            len = Math.Min(len, input.Length - at);
            if (len <= 0)
            {
                break;
            }
            packets.Add(input[at..(at + len)]);
            at += len;
        }
        return packets;
    }

    /// <summary>Where the packet belongs, by version and destination alone (the harness's own model of the table).</summary>
    private static (UdpEndpoint To, MacAddress Mac)? Owner(byte[] p)
    {
        if (p[0] >> 4 == 4 && p.Length >= 20)
        {
            uint dst = BinaryPrimitives.ReadUInt32BigEndian(p.AsSpan(16));
            return (dst >> 8) switch
            {
                0x0AF402 => (new UdpEndpoint(0xC000_0202, 0), MacA),
                0x0AF403 => (new UdpEndpoint(0xC000_0203, 0), MacB),
                _ => null,
            };
        }
        if (p[0] >> 4 == 6 && p.Length >= 40 && BinaryPrimitives.ReadUInt128BigEndian(p.AsSpan(24)) >> 64 == (Net6 >> 64) + 2)
        {
            return (UdpEndpoint.Ipv6(new UInt128(0x2001_0DB8_0002_0000, 2), 0), MacA6);
        }
        return null;
    }

    private static bool Carries(byte[] datagram, byte[] packet, MacAddress peerMac, bool vxlan)
    {
        if (!vxlan)
        {
            return datagram.AsSpan().SequenceEqual(packet);
        }
        bool v6 = packet[0] >> 4 == 6;
        return datagram.Length == 22 + packet.Length
            && datagram[0] == 0x08 && BinaryPrimitives.ReadUInt32BigEndian(datagram.AsSpan(4)) == 1 << 8 // I flag, VNI 1
            && BinaryPrimitives.ReadUInt64BigEndian(datagram.AsSpan(8)) >> 16 == peerMac.Value
            && BinaryPrimitives.ReadUInt64BigEndian(datagram.AsSpan(14)) >> 16 == (v6 ? OurMacV6 : OurMac).Value
            && BinaryPrimitives.ReadUInt16BigEndian(datagram.AsSpan(20)) == (v6 ? 0x86DD : 0x0800)
            && datagram.AsSpan(22).SequenceEqual(packet);
    }

    /// <summary>An ICMP (net unreachable) or ICMPv6 (no route) error for <paramref name="p"/>, as the summary says.</summary>
    private static bool Answers(byte[] e, byte[] p)
    {
        if (e.Length >= 28 && e[0] == 0x45 && p[0] >> 4 == 4 && p.Length >= 20)
        {
            uint from = BinaryPrimitives.ReadUInt32BigEndian(e.AsSpan(12)), to = BinaryPrimitives.ReadUInt32BigEndian(e.AsSpan(16));
            uint dst = BinaryPrimitives.ReadUInt32BigEndian(p.AsSpan(16));
            int quoted = Math.Min(p.Length, e.Length - 28);
            return e[9] == 1 && e[20] == 3 && e[21] == 0 && BinaryPrimitives.ReadUInt16BigEndian(e.AsSpan(2)) == e.Length
                && InternetChecksum.Compute(e.AsSpan(0, 20)) == 0 && InternetChecksum.Compute(e.AsSpan(20)) == 0
                && to == BinaryPrimitives.ReadUInt32BigEndian(p.AsSpan(12)) && from == (dst & 0xFFFF_FF00) && from >> 8 != 0x0AF401
                && quoted >= 20 && e.AsSpan(28, quoted).SequenceEqual(p.AsSpan(0, quoted));
        }
        if (e.Length >= 48 && e[0] >> 4 == 6 && p[0] >> 4 == 6 && p.Length >= 40)
        {
            UInt128 from = BinaryPrimitives.ReadUInt128BigEndian(e.AsSpan(8)), dst = BinaryPrimitives.ReadUInt128BigEndian(p.AsSpan(24));
            ulong pseudo = InternetChecksum.PseudoHeaderIpv6(e.AsSpan(8, 16), e.AsSpan(24, 16), 58, e.Length - 40);
            int quoted = Math.Min(p.Length, e.Length - 48);
            return e[6] == 58 && e[40] == 1 && e[41] == 0 && BinaryPrimitives.ReadUInt16BigEndian(e.AsSpan(4)) == e.Length - 40
                && InternetChecksum.Finish(InternetChecksum.Sum(e.AsSpan(40), pseudo)) == 0
                && e.AsSpan(24, 16).SequenceEqual(p.AsSpan(8, 16)) && from == (dst & (UInt128.MaxValue << 64)) && from >> 64 != (Net6 >> 64) + 1
                && quoted >= 40 && e.AsSpan(48, quoted).SequenceEqual(p.AsSpan(0, quoted));
        }
        return false;
    }
}
