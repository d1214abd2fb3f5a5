using Dataplane.Encap;
using Dataplane.Engine;
using Dataplane.TunTap;

namespace Dataplane.Tests;

public class SubnetTableTests
{
    [Fact]
    public void Lookup_by_subnet_index()
    {
        SubnetTable t = EngineFixture.Table(EngineFixture.PeerB, EngineFixture.PeerC);
        Assert.Same(EngineFixture.PeerB, t.Lookup(Packets.Ip("10.244.2.0")));
        Assert.Same(EngineFixture.PeerB, t.Lookup(Packets.Ip("10.244.2.255")));
        Assert.Same(EngineFixture.PeerC, t.Lookup(Packets.Ip("10.244.3.1")));
        Assert.Null(t.Lookup(Packets.Ip("10.244.1.5"))); // ours: not a peer
        Assert.Null(t.Lookup(Packets.Ip("10.244.4.1")));
        Assert.Null(t.Lookup(Packets.Ip("10.245.2.1")));
        Assert.Null(t.Lookup(Packets.Ip("10.243.255.255")));
        Assert.Null(t.Lookup(0));
        Assert.Null(t.Lookup(uint.MaxValue));
        Assert.Same(EngineFixture.PeerC, t.PeerAt(Packets.Ip("192.0.2.3")));
        Assert.Null(t.PeerAt(Packets.Ip("192.0.2.1")));
        Assert.Equal(Packets.Ip("10.244.9.0"), t.SubnetBase(Packets.Ip("10.244.9.77")));
    }

    [Fact]
    public void Sixty_five_thousand_subnets_of_a_slash_eight()
    {
        var net = new Ipv4Prefix(Packets.Ip("10.0.0.0"), 8);
        var peers = Enumerable.Range(1, 65535).Select(i => new Peer(new Ipv4Prefix(net.Address + ((uint)i << 8), 24),
            new UdpEndpoint(Packets.Ip("198.51.100.0") + (uint)i, 8472), default)).ToList();
        var t = new SubnetTable(net, 24, new Ipv4Prefix(net.Address, 24), peers);
        Assert.Equal(65535, t.Peers.Count);
        Assert.Same(peers[^1], t.Lookup(Packets.Ip("10.255.255.9")));
        Assert.Same(peers[0], t.Lookup(Packets.Ip("10.0.1.9")));
        Assert.Null(t.Lookup(Packets.Ip("10.0.0.9")));
    }

    [Fact]
    public void Refuses_duplicates_wrong_lengths_and_outsiders()
    {
        Assert.Throws<ArgumentException>(() => EngineFixture.Table(EngineFixture.PeerB, EngineFixture.PeerB));
        Assert.Throws<ArgumentException>(() => EngineFixture.Table(EngineFixture.PeerB with { Subnet = EngineFixture.OurSubnet }));
        Assert.Throws<ArgumentException>(() => EngineFixture.Table(EngineFixture.PeerB with { Subnet = new Ipv4Prefix(Packets.Ip("10.244.2.0"), 25) }));
        Assert.Throws<ArgumentException>(() => EngineFixture.Table(EngineFixture.PeerB with { Subnet = new Ipv4Prefix(Packets.Ip("10.245.2.0"), 24) }));
    }
}
