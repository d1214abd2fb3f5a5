using Dataplane.Encap;
using Dataplane.Engine;
using Dataplane.TunTap;

using Dataplane.TestSupport;

namespace Dataplane.Tests;

/// <summary>
/// Node 10.244.1.0/24 at 192.0.2.1 in 10.244.0.0/16, with peers 10.244.2.0/24 at 192.0.2.2 and
/// 10.244.3.0/24 at 192.0.2.3, over in-memory edges.
/// </summary>
internal sealed class EngineFixture : IDisposable
{
    public static readonly Ipv4Prefix Network = new(Packets.Ip("10.244.0.0"), 16);
    public static readonly Ipv4Prefix OurSubnet = new(Packets.Ip("10.244.1.0"), 24);
    public static readonly MacAddress OurMac = new(0x0E_00_5E_00_00_01);
    public static readonly Peer PeerB = new(new Ipv4Prefix(Packets.Ip("10.244.2.0"), 24), new UdpEndpoint(Packets.Ip("192.0.2.2"), 8472), new MacAddress(0x0E_00_5E_00_00_02));
    public static readonly Peer PeerC = new(new Ipv4Prefix(Packets.Ip("10.244.3.0"), 24), new UdpEndpoint(Packets.Ip("192.0.2.3"), 8472), new MacAddress(0x0E_00_5E_00_00_03));

    public EngineFixture(BackendKind backend, params Peer[] peers)
    {
        Device = new MemoryDevice();
        Underlay = new MemoryUnderlay(new UdpEndpoint(Packets.Ip("192.0.2.1"), 8472));
        Settings = new EngineSettings(backend, 1, OurMac);
        Engine = new DataplaneEngine(Device, Underlay, Table(peers.Length == 0 ? [PeerB, PeerC] : peers), Settings);
    }

    public MemoryDevice Device { get; }
    public MemoryUnderlay Underlay { get; }
    public EngineSettings Settings { get; }
    public DataplaneEngine Engine { get; }

    public static SubnetTable Table(params Peer[] peers) => new(Network, 24, OurSubnet, peers);

    public long Drops(DropReason r) => Engine.Outbound.Counters.DropsOf(r) + Engine.Inbound.Counters.DropsOf(r);

    public void Dispose()
    {
        Engine.Dispose();
        Device.Dispose();
        Underlay.Dispose();
    }
}
