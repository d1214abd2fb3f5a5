using System.Buffers.Binary;
using Dataplane.Encap;
using Dataplane.Engine;
using Dataplane.TestSupport;
using Dataplane.TunTap;
using PacketDotNet;

namespace Dataplane.Tests;

/// <summary>
/// The loops on a dual-stack node, through in-memory edges: IPv6 inner packets go to a peer's IPv6
/// endpoint with flannel-v6.1's MACs (vxlan) and come back validated as strictly as IPv4; Neighbor
/// Solicitations for our IPv6 VTEP address are answered; the udp backend may carry IPv6 over IPv4.
/// </summary>
public sealed class DualStackEngineTests : IDisposable
{
    private static readonly Ipv6Prefix Network6 = Prefix6("2001:db8:244::/48");
    private static readonly Ipv6Prefix Ours6 = Prefix6("2001:db8:244:1::/64");
    private static readonly MacAddress OurMacV6 = new(0x0E_00_5E_06_00_01);
    private static readonly MacAddress PeerMacV6 = new(0x0E_00_5E_06_00_02);
    private static readonly UdpEndpoint PeerB6 = UdpEndpoint.Ipv6(Ip6("2001:db8:2::2"), 8472);
    private static readonly Peer PeerB = EngineFixture.PeerB with { Ipv6Subnet = Prefix6("2001:db8:244:2::/64"), Endpoint6 = PeerB6, VtepMacV6 = PeerMacV6 };

    private readonly MemoryDevice _device = new();
    private readonly MemoryUnderlay _underlay = new(new UdpEndpoint(Packets.Ip("192.0.2.1"), 8472));
    private DataplaneEngine? _engine;

    private static UInt128 Ip6(string text) => Ipv6Prefix.TryParseAddress(text, out UInt128 a) ? a : throw new ArgumentException(text);
    private static Ipv6Prefix Prefix6(string text) => Ipv6Prefix.TryParse(text, out Ipv6Prefix? p) ? p.Value : throw new ArgumentException(text);

    internal static SubnetTable Table(params Peer[] peers) =>
        new(EngineFixture.Network, 24, EngineFixture.OurSubnet, peers, (Network6, 64, Ours6));

    private DataplaneEngine Engine(BackendKind backend, params Peer[] peers) =>
        _engine = new DataplaneEngine(_device, _underlay, Table(peers.Length == 0 ? [PeerB, EngineFixture.PeerC] : peers),
            new EngineSettings(backend, 1, EngineFixture.OurMac) { OurVtepMacV6 = OurMacV6 });

    /// <summary>An IPv6 UDP packet (checksum computed) src -> dst with <paramref name="payload"/> bytes.</summary>
    internal static byte[] Udp6(string src, string dst, int payload = 64)
    {
        byte[] p = new byte[40 + 8 + payload];
        Ipv6Header.Write(p, 8 + payload, Ipv4Header.ProtocolUdp, 64, Ip6(src), Ip6(dst));
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(40), 40000);
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(42), 5000);
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(44), (ushort)(8 + payload));
        ulong sum = InternetChecksum.PseudoHeaderIpv6(p.AsSpan(8, 16), p.AsSpan(24, 16), Ipv4Header.ProtocolUdp, 8 + payload);
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(46), InternetChecksum.Finish(InternetChecksum.Sum(p.AsSpan(40), sum)));
        return p;
    }

    private long Drops(DropReason r) => _engine!.Outbound.Counters.DropsOf(r) + _engine.Inbound.Counters.DropsOf(r);

    [Fact]
    public void Vxlan_sends_ipv6_to_the_peers_ipv6_endpoint_with_the_v6_macs_and_ipv4_as_before()
    {
        DataplaneEngine e = Engine(BackendKind.Vxlan);
        byte[] v6 = Udp6("2001:db8:244:1::2", "2001:db8:244:2::9", payload: 1200);
        byte[] v4 = Packets.Udp("10.244.1.2", "10.244.2.9");
        _device.Inject(v6);
        _device.Inject(v4);
        Assert.Equal(2, e.Outbound.RunOnce(1000));

        var sent = _underlay.Sent.ToArray();
        Assert.Equal(2, sent.Length);
        Assert.Equal(PeerB6, sent[0].To);
        var eth = new EthernetPacket(new PacketDotNet.Utils.ByteArraySegment(sent[0].Data[8..]));
        Assert.Equal(EthernetType.IPv6, eth.Type);
        Assert.Equal("0E005E060002", eth.DestinationHardwareAddress.ToString());
        Assert.Equal("0E005E060001", eth.SourceHardwareAddress.ToString());
        Assert.Equal(v6, sent[0].Data[22..]);
        Assert.Equal(EngineFixture.PeerB.Endpoint, sent[1].To);
        var eth4 = new EthernetPacket(new PacketDotNet.Utils.ByteArraySegment(sent[1].Data[8..]));
        Assert.Equal("0E005E000002", eth4.DestinationHardwareAddress.ToString());
        Assert.Equal(2, e.Outbound.Counters.PeerPackets[e.Table.SlotOf(PeerB.Subnet)]);
    }

    [Fact]
    public void Ipv6_to_our_own_subnet_multicast_and_nobodys_subnet_are_dropped_and_no_route_answered()
    {
        DataplaneEngine e = Engine(BackendKind.Vxlan);
        _device.Inject(Udp6("2001:db8:244:1::2", "2001:db8:244:1::7"));
        _device.Inject(Udp6("2001:db8:244:1::2", "ff02::16"));
        _device.Inject(Udp6("2001:db8:244:1::2", "2001:db8:244:9::7"));
        _device.Inject(Udp6("2001:db8:244:1::2", "2001:db8:999::7"));
        e.Outbound.RunOnce(1000);
        Assert.Empty(_underlay.Sent);
        Assert.Equal(1, Drops(DropReason.OwnSubnet));
        Assert.Equal(1, Drops(DropReason.Multicast));
        Assert.Equal(2, Drops(DropReason.NoRoute));
        Assert.Equal(2, _device.Written.Count);
        // Each error comes from the /64 of the destination it could not reach (the engine's choice:
        // no address of ours, so the host does not take it for a martian), to the pod that sent it.
        string[] sources = ["2001:db8:244:9::", "2001:db8:999::"];
        for (int k = 0; k < 2; k++)
        {
            var ip = new IPv6Packet(new PacketDotNet.Utils.ByteArraySegment(_device.Written.ElementAt(k)));
            Assert.Equal(IcmpV6Type.DestinationUnreachable, ip.Extract<IcmpV6Packet>().Type);
            Assert.Equal("2001:db8:244:1::2", ip.DestinationAddress.ToString());
            Assert.Equal(sources[k], ip.SourceAddress.ToString());
        }
    }

    [Fact]
    public void Vxlan_delivers_ipv6_from_the_peers_ipv6_endpoint_and_refuses_it_from_elsewhere()
    {
        DataplaneEngine e = Engine(BackendKind.Vxlan);
        byte[] good = Udp6("2001:db8:244:2::9", "2001:db8:244:1::2");
        UdpEndpoint from6 = PeerB6 with { Port = 40001 }, from4 = EngineFixture.PeerB.Endpoint with { Port = 40002 };
        _underlay.Deliver(Packets.Vxlan(good, 1, OurMacV6, PeerMacV6, EthernetHeader.EtherTypeIpv6), from6);
        _underlay.Deliver(Packets.Vxlan(good, 1, EngineFixture.OurMac, PeerMacV6, EthernetHeader.EtherTypeIpv6), from6);     // flannel.1's MAC on the IPv6 underlay
        _underlay.Deliver(Packets.Vxlan(good, 1, EngineFixture.OurMac, PeerMacV6, EthernetHeader.EtherTypeIpv6), from4);     // IPv6 over the IPv4 underlay
        _underlay.Deliver(Packets.Vxlan(Packets.Udp("10.244.2.9", "10.244.1.2"), 1, OurMacV6, PeerMacV6), from6);           // IPv4 over the IPv6 underlay
        _underlay.Deliver(Packets.Vxlan(Udp6("2001:db8:244:3::9", "2001:db8:244:1::2"), 1, OurMacV6, PeerMacV6, EthernetHeader.EtherTypeIpv6), from6);
        _underlay.Deliver(Packets.Vxlan(Udp6("2001:db8:244:2::9", "2001:db8:244:4::2"), 1, OurMacV6, PeerMacV6, EthernetHeader.EtherTypeIpv6), from6);
        _underlay.Deliver(Packets.Vxlan(good, 1, OurMacV6, PeerMacV6, EthernetHeader.EtherTypeIpv6), UdpEndpoint.Ipv6(Ip6("2001:db8:2::77"), 8472));
        for (int i = 0; i < 7; i++)
        {
            e.Inbound.RunOnce(1000);
        }
        Assert.Equal(good, Assert.Single(_device.Written));
        Assert.Equal(1, Drops(DropReason.NotOurMac));
        Assert.Equal(2, Drops(DropReason.WrongUnderlayFamily));
        Assert.Equal(1, Drops(DropReason.InnerSourceNotPeerSubnet));
        Assert.Equal(1, Drops(DropReason.InnerDestinationNotOurSubnet));
        Assert.Equal(1, Drops(DropReason.UnknownPeer));
    }

    [Fact]
    public void A_neighbor_solicitation_for_our_ipv6_vtep_is_answered_to_the_peers_port_and_others_are_dropped()
    {
        DataplaneEngine e = Engine(BackendKind.Vxlan);
        byte[] ns = new byte[100];
        int length = NeighborDiscovery.WriteSolicitation(ns, Ip6("2001:db8:244:2::"), PeerMacV6, Ours6.Address);
        var solicitedNode = new MacAddress(0x3333_FF00_0000);
        _underlay.Deliver(Packets.Vxlan(ns[..length], 1, solicitedNode, PeerMacV6, EthernetHeader.EtherTypeIpv6), PeerB6 with { Port = 40001 });
        length = NeighborDiscovery.WriteSolicitation(ns, Ip6("2001:db8:244:2::"), PeerMacV6, Ip6("2001:db8:244:1::5"));
        _underlay.Deliver(Packets.Vxlan(ns[..length], 1, solicitedNode, PeerMacV6, EthernetHeader.EtherTypeIpv6), PeerB6 with { Port = 40001 });
        e.Inbound.RunOnce(1000);
        e.Inbound.RunOnce(1000);

        var (data, to) = Assert.Single(_underlay.Sent);
        Assert.Equal(PeerB6, to); // the peer's VXLAN port, not the source port it sent from
        var eth = new EthernetPacket(new PacketDotNet.Utils.ByteArraySegment(data[8..]));
        Assert.Equal("0E005E060002", eth.DestinationHardwareAddress.ToString());
        Assert.Equal("0E005E060001", eth.SourceHardwareAddress.ToString());
        var ip = (IPv6Packet)eth.PayloadPacket;
        Assert.Equal(IcmpV6Type.NeighborAdvertisement, ip.Extract<IcmpV6Packet>().Type);
        Assert.Equal(Ours6.Address, BinaryPrimitives.ReadUInt128BigEndian(data.AsSpan(22 + 48)));
        Assert.Equal(1, e.Inbound.Counters.NdReplies);
        Assert.Equal(0, e.Inbound.Counters.ArpReplies);
        Assert.Equal(1, Drops(DropReason.NdNotForUs));
        Assert.Empty(_device.Written);
    }

    [Fact]
    public void The_udp_backend_carries_ipv6_over_ipv4_to_a_peer_without_an_ipv6_address()
    {
        Peer overIpv4 = EngineFixture.PeerB with { Ipv6Subnet = Prefix6("2001:db8:244:2::/64"), Endpoint6 = EngineFixture.PeerB.Endpoint };
        DataplaneEngine e = Engine(BackendKind.Udp, overIpv4);
        byte[] v6 = Udp6("2001:db8:244:1::2", "2001:db8:244:2::9");
        _device.Inject(v6);
        e.Outbound.RunOnce(1000);
        var (data, to) = Assert.Single(_underlay.Sent);
        Assert.Equal(EngineFixture.PeerB.Endpoint, to);
        Assert.Equal(v6, data); // the raw packet, as flannel's udp backend carries IPv4

        byte[] back = Udp6("2001:db8:244:2::9", "2001:db8:244:1::2");
        _underlay.Deliver(back, EngineFixture.PeerB.Endpoint with { Port = 40000 });
        e.Inbound.RunOnce(1000);
        Assert.Equal(back, Assert.Single(_device.Written));
    }

    [Fact]
    public void Lookup6_is_exact_at_the_edges_and_a_table_without_ipv6_routes_none()
    {
        SubnetTable t = Table(PeerB);
        Assert.Same(PeerB, t.Lookup6(Ip6("2001:db8:244:2::")));
        Assert.Same(PeerB, t.Lookup6(Ip6("2001:db8:244:2:ffff:ffff:ffff:ffff")));
        Assert.Null(t.Lookup6(Ip6("2001:db8:244:3::")));
        Assert.Null(t.Lookup6(Ip6("2001:db8:244:1::1"))); // ours
        Assert.Null(t.Lookup6(Ip6("2001:db8:245:2::")));
        Assert.Null(t.Lookup6(Ip6("2001:db8:243:ffff::")));
        Assert.Same(PeerB, t.PeerAt(PeerB6 with { Port = 1 }));
        Assert.Same(PeerB, t.PeerAt(EngineFixture.PeerB.Endpoint));

        SubnetTable v4Only = EngineFixture.Table(EngineFixture.PeerB);
        Assert.Null(v4Only.Lookup6(UInt128.Zero));
        Assert.Null(v4Only.Lookup6(Ip6("2001:db8:244:2::1")));
        Assert.Null(v4Only.PeerAt(PeerB6));
    }

    [Fact]
    public void A_peers_ipv6_subnet_outside_the_network_or_leased_twice_is_refused()
    {
        Assert.Contains("is not a /64 of 2001:db8:244::/48", Assert.Throws<ArgumentException>(() =>
            Table(PeerB with { Ipv6Subnet = Prefix6("2001:db8:999:2::/64") })).Message);
        Assert.Contains("leased twice", Assert.Throws<ArgumentException>(() =>
            Table(PeerB, EngineFixture.PeerC with { Ipv6Subnet = PeerB.Ipv6Subnet, Endpoint6 = PeerB6 })).Message);
        Assert.Contains("leased twice", Assert.Throws<ArgumentException>(() => Table(PeerB with { Ipv6Subnet = Ours6 })).Message);
    }

    [Theory]
    [InlineData("Udp")]
    [InlineData("Vxlan")]
    public void The_ipv6_paths_allocate_nothing_per_packet(string backendName)
    {
        BackendKind backend = Enum.Parse<BackendKind>(backendName);
        var table = Table(PeerB, EngineFixture.PeerC);
        var settings = new EngineSettings(backend, 1, EngineFixture.OurMac) { OurVtepMacV6 = OurMacV6, IcmpRate = 1e12, IcmpBurst = 1e6 };
        var outDevice = new ReplayDevice([Udp6("2001:db8:244:1::2", "2001:db8:244:2::9", payload: 1200), Udp6("2001:db8:244:1::2", "2001:db8:244:9::9")]);
        var outUnderlay = new ReplayUnderlay([], default);
        using var outbound = new DataplaneEngine(outDevice, outUnderlay, table, settings);
        Assert.Equal(0, AllocationTests.AllocatedAfterWarmUp(() => outbound.Outbound.RunOnce(0), 2000));
        Assert.True(outUnderlay.Sent > 2000 * 20 && outDevice.Written > 2000 * 20, $"{outUnderlay.Sent} sent, {outDevice.Written} ICMPv6 errors");

        byte[] inner = Udp6("2001:db8:244:2::9", "2001:db8:244:1::2", payload: 1200);
        byte[] ns = new byte[100];
        int nsLength = NeighborDiscovery.WriteSolicitation(ns, Ip6("2001:db8:244:2::"), PeerMacV6, Ours6.Address);
        byte[][] datagrams = backend == BackendKind.Vxlan
            ? [Packets.Vxlan(inner, 1, OurMacV6, PeerMacV6, EthernetHeader.EtherTypeIpv6),
               Packets.Vxlan(ns[..nsLength], 1, new MacAddress(0x3333_FF00_0000), PeerMacV6, EthernetHeader.EtherTypeIpv6)]
            : [inner, inner];
        var inDevice = new ReplayDevice([]);
        var inUnderlay = new ReplayUnderlay(datagrams, default, [PeerB6, PeerB6]);
        using var inbound = new DataplaneEngine(inDevice, inUnderlay, table, settings);
        Assert.Equal(0, AllocationTests.AllocatedAfterWarmUp(() => inbound.Inbound.RunOnce(0), 2000));
        Assert.True(inDevice.Written > 2000 * 20, $"only {inDevice.Written} delivered");
        if (backend == BackendKind.Vxlan)
        {
            Assert.True(inbound.Inbound.Counters.NdReplies > 2000 * 20, "no advertisements");
        }
    }

    public void Dispose()
    {
        _engine?.Dispose();
        _device.Dispose();
        _underlay.Dispose();
    }
}
