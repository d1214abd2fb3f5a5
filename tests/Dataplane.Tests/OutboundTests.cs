using System.Buffers.Binary;
using Dataplane.Encap;
using Dataplane.Engine;
using PacketDotNet;

using Dataplane.TestSupport;

namespace Dataplane.Tests;

public class OutboundTests
{
    [Fact]
    public void Udp_backend_sends_the_raw_packet_to_the_owner_of_its_destination()
    {
        using var f = new EngineFixture(BackendKind.Udp);
        byte[] toB = Packets.Udp("10.244.1.2", "10.244.2.9");
        byte[] toC = Packets.Udp("10.244.1.2", "10.244.3.200");
        f.Device.Inject(toB);
        f.Device.Inject(toC);
        Assert.Equal(2, f.Engine.Outbound.RunOnce(1000));

        Assert.Equal(2, f.Underlay.Sent.Count);
        var sent = f.Underlay.Sent.ToArray();
        Assert.Equal(toB, sent[0].Data);
        Assert.Equal(EngineFixture.PeerB.Endpoint, sent[0].To);
        Assert.Equal(toC, sent[1].Data);
        Assert.Equal(EngineFixture.PeerC.Endpoint, sent[1].To);
        Assert.Equal(2, f.Engine.Outbound.Counters.Packets);
    }

    [Fact]
    public void Vxlan_backend_wraps_with_vni_and_the_peers_mac_and_leaves_ttl_alone()
    {
        using var f = new EngineFixture(BackendKind.Vxlan);
        byte[] toC = Packets.Udp("10.244.1.2", "10.244.3.7", payload: 1400);
        f.Device.Inject(toC);
        f.Engine.Outbound.RunOnce(1000);

        var (data, to) = Assert.Single(f.Underlay.Sent);
        Assert.Equal(EngineFixture.PeerC.Endpoint, to);
        Assert.Equal(22 + toC.Length, data.Length);
        Assert.Equal(Convert.FromHexString("0800000000000100"), data[..8]);
        var eth = new EthernetPacket(new PacketDotNet.Utils.ByteArraySegment(data[8..]));
        Assert.Equal("0E005E000003", eth.DestinationHardwareAddress.ToString());
        Assert.Equal("0E005E000001", eth.SourceHardwareAddress.ToString());
        Assert.Equal(EthernetType.IPv4, eth.Type);
        Assert.Equal(toC, data[22..]); // byte for byte: TTL and checksum untouched
    }

    [Fact]
    public void No_route_answers_icmp_net_unreachable_from_the_missing_subnet()
    {
        using var f = new EngineFixture(BackendKind.Udp);
        byte[] echo = Packets.Icmpv4Echo("10.244.1.2", "10.244.9.7");
        f.Device.Inject(echo);
        f.Engine.Outbound.RunOnce(1000);

        Assert.Empty(f.Underlay.Sent);
        Assert.Equal(1, f.Drops(DropReason.NoRoute));
        Assert.Equal(1, f.Engine.Outbound.Counters.IcmpSent);
        byte[] icmp = Assert.Single(f.Device.Written);
        var ip = new IPv4Packet(new PacketDotNet.Utils.ByteArraySegment(icmp));
        Assert.True(ip.ValidIPChecksum);
        Assert.Equal("10.244.9.0", ip.SourceAddress.ToString()); // not one of ours: no martian drop
        Assert.Equal("10.244.1.2", ip.DestinationAddress.ToString());
        var err = ip.Extract<IcmpV4Packet>();
        Assert.Equal(IcmpV4TypeCode.UnreachableNet, err.TypeCode);
        Assert.True(err.ValidIcmpChecksum);
    }

    [Fact]
    public void No_icmp_for_an_icmp_error_and_none_for_our_own_subnet()
    {
        using var f = new EngineFixture(BackendKind.Udp);
        byte[] error = Packets.Icmpv4Echo("10.244.1.2", "10.244.9.7");
        error[20] = 3; // an ICMP error itself
        f.Device.Inject(error);
        f.Device.Inject(Packets.Udp("10.244.1.2", "10.244.1.77"));
        f.Engine.Outbound.RunOnce(1000);
        Assert.Empty(f.Device.Written);
        Assert.Equal(1, f.Drops(DropReason.NoRoute));
        Assert.Equal(1, f.Drops(DropReason.OwnSubnet));
    }

    [Fact]
    public void Multicast_is_dropped_without_icmp_and_counted_apart()
    {
        using var f = new EngineFixture(BackendKind.Udp);
        f.Device.Inject(Packets.Udp("10.244.1.2", "224.0.0.251"));
        byte[] mld = new byte[48];
        Ipv6Header.Write(mld, 8, 58, 1, UInt128.One, UInt128.Parse("ff020000000000000000000000000016", System.Globalization.NumberStyles.HexNumber));
        f.Device.Inject(mld);
        f.Engine.Outbound.RunOnce(1000);
        Assert.Equal(2, f.Drops(DropReason.Multicast));
        Assert.Equal(0, f.Drops(DropReason.NoRoute));
        Assert.Empty(f.Device.Written);
    }

    [Fact]
    public void Outside_the_network_is_no_route()
    {
        using var f = new EngineFixture(BackendKind.Udp);
        f.Device.Inject(Packets.Udp("10.244.1.2", "10.245.0.1"));
        f.Device.Inject(Packets.Udp("10.244.1.2", "10.243.255.255"));
        f.Engine.Outbound.RunOnce(1000);
        Assert.Empty(f.Underlay.Sent);
        Assert.Equal(2, f.Drops(DropReason.NoRoute));
    }

    [Fact]
    public void Malformed_and_ipv6_packets_are_counted_not_thrown()
    {
        using var f = new EngineFixture(BackendKind.Vxlan);
        f.Device.Inject([]);
        f.Device.Inject([0x45, 0, 0]);
        f.Device.Inject([0x70, 1, 2, 3]);
        byte[] v6 = new byte[48];
        Ipv6Header.Write(v6, 8, 17, 64, UInt128.One, UInt128.Parse("fd000009000000000000000000000007", System.Globalization.NumberStyles.HexNumber));
        f.Device.Inject(v6);
        while (f.Engine.Outbound.RunOnce(100) > 0)
        {
        }
        Assert.Equal(2, f.Drops(DropReason.BadIpVersion));
        Assert.Equal(1, f.Drops(DropReason.MalformedOutbound));
        Assert.Equal(1, f.Drops(DropReason.NoRoute));
        Assert.Empty(f.Underlay.Sent);
        // An ICMPv6 "no route" came back for the IPv6 packet (it is not an error and not multicast).
        byte[] icmp6 = Assert.Single(f.Device.Written);
        Assert.Equal(6, icmp6[0] >> 4);
        Assert.Equal(IcmpErrors.Icmpv6DestinationUnreachable, icmp6[40]);
    }

    [Fact]
    public void Random_input_is_either_forwarded_or_counted()
    {
        using var f = new EngineFixture(BackendKind.Vxlan);
        var rng = new Random(7);
        for (int i = 0; i < 5000; i++)
        {
            byte[] junk = new byte[rng.Next(0, 1500)];
            rng.NextBytes(junk);
            if (i % 2 == 0 && junk.Length > 20)
            {
                junk[0] = 0x45;
                junk[16] = 10;
                junk[17] = 244; // often a routable destination
            }
            f.Device.Inject(junk);
        }
        while (f.Engine.Outbound.RunOnce(100) > 0)
        {
        }
        LoopCounters c = f.Engine.Outbound.Counters;
        Assert.Equal(5000, c.Packets);
        Assert.Equal(c.Packets, f.Underlay.Sent.Count + c.Drops.Sum());
        Assert.NotEmpty(f.Underlay.Sent);
    }

    [Fact]
    public void A_batch_larger_than_the_slot_count_is_read_in_several_batches_and_nothing_is_lost()
    {
        using var f = new EngineFixture(BackendKind.Udp);
        for (uint i = 0; i < 1000; i++)
        {
            f.Device.Inject(Packets.Udp("10.244.1.2", "10.244.2.9", seq: i));
        }
        while (f.Engine.Outbound.RunOnce(100) > 0)
        {
        }
        Assert.Equal(1000, f.Underlay.Sent.Count);
        uint expected = 0;
        foreach (var (data, _) in f.Underlay.Sent)
        {
            Assert.Equal(expected++, BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(28)));
        }
        // All 1000 were waiting: every read filled a whole batch but the last (16 of 64 for 1000).
        int size = f.Settings.BatchSize;
        Assert.Equal((1000 + size - 1) / size, f.Engine.Outbound.Counters.Batches);
    }

    [Fact]
    public void Icmp_errors_are_rate_limited_by_a_token_bucket()
    {
        var device = new MemoryDevice();
        var underlay = new MemoryUnderlay(default);
        using var engine = new DataplaneEngine(device, underlay, EngineFixture.Table(EngineFixture.PeerB),
            new EngineSettings(BackendKind.Udp, 1, EngineFixture.OurMac) { IcmpRate = 10, IcmpBurst = 5 });
        for (int i = 0; i < 50; i++)
        {
            device.Inject(Packets.Icmpv4Echo("10.244.1.2", "10.244.9.7"));
        }
        while (engine.Outbound.RunOnce(100) > 0)
        {
        }
        Assert.Equal(5, engine.Outbound.Counters.IcmpSent); // the burst
        Assert.Equal(45, engine.Outbound.Counters.IcmpRateLimited);
        Assert.Equal(50, engine.Outbound.Counters.DropsOf(DropReason.NoRoute));
        Thread.Sleep(350); // ~3 tokens at 10 a second
        device.Inject(Packets.Icmpv4Echo("10.244.1.2", "10.244.9.7"));
        engine.Outbound.RunOnce(100);
        Assert.Equal(6, engine.Outbound.Counters.IcmpSent);
    }

    [Fact]
    public void Icmp_rate_zero_sends_none()
    {
        var device = new MemoryDevice();
        using var engine = new DataplaneEngine(device, new MemoryUnderlay(default), EngineFixture.Table(EngineFixture.PeerB),
            new EngineSettings(BackendKind.Udp, 1, EngineFixture.OurMac) { IcmpRate = 0 });
        device.Inject(Packets.Icmpv4Echo("10.244.1.2", "10.244.9.7"));
        engine.Outbound.RunOnce(100);
        Assert.Empty(device.Written);
        Assert.Equal(1, engine.Outbound.Counters.IcmpRateLimited);
    }
}
