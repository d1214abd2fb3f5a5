using Dataplane.Encap;
using Dataplane.Engine;
using Dataplane.TestSupport;

namespace Dataplane.Tests;

/// <summary>
/// The per-packet path allocates nothing: measured with the thread's allocation counter over many
/// batches. Warm-up runs until a window allocates nothing (tiered compilation and first-use
/// statics settle; a per-packet allocation never gets there); after it, every one of three more
/// windows must allocate nothing as well, so a periodic allocation cannot hide in a discarded one.
/// </summary>
[Collection(AllocationCollection.Name)]
public class AllocationTests
{
    /// <summary>The most any of three windows of <paramref name="iterations"/> runs allocated, after warm-up (at most ten windows).</summary>
    internal static long AllocatedAfterWarmUp(Action run, int iterations)
    {
        long Window()
        {
            // A window a garbage collection fell into is measured again (up to ten times): the
            // counter can move by part of an allocation quantum when another thread's allocation
            // starts a GC. A path that allocates per packet shows it in the windows without one.
            long bytes = 0;
            for (int attempt = 0; attempt < 10; attempt++)
            {
                int collections = GC.CollectionCount(0);
                long before = GC.GetAllocatedBytesForCurrentThread();
                for (int i = 0; i < iterations; i++)
                {
                    run();
                }
                bytes = GC.GetAllocatedBytesForCurrentThread() - before;
                if (GC.CollectionCount(0) == collections)
                {
                    break;
                }
            }
            return bytes;
        }
        for (int warm = 0; warm < 10 && Window() > 0; warm++)
        {
        }
        long most = 0;
        for (int window = 0; window < 3; window++)
        {
            most = Math.Max(most, Window());
        }
        return most;
    }

    [Theory]
    [InlineData("Udp")]
    [InlineData("Vxlan")]
    public void Outbound_path_allocates_nothing_per_packet(string backendName)
    {
        BackendKind backend = Enum.Parse<BackendKind>(backendName);
        byte[] v6 = new byte[48];
        Ipv6Header.Write(v6, 8, 17, 64, UInt128.One, UInt128.Parse("fd000009000000000000000000000007", System.Globalization.NumberStyles.HexNumber));
        byte[][] packets =
        [
            Packets.Udp("10.244.1.2", "10.244.2.9", payload: 1400),
            Packets.Udp("10.244.1.2", "10.244.3.9", payload: 64),
            Packets.Icmpv4Echo("10.244.1.2", "10.244.9.9"), // no route: an ICMP error is built too
            v6,                                              // no route: an ICMPv6 error
            Packets.Udp("10.244.1.2", "224.0.0.251"),        // multicast: dropped
            Packets.Udp("10.244.1.2", "10.244.1.7"),         // our own subnet: dropped
            [0x45, 0, 0],                                    // malformed
            [0x70, 1, 2, 3],                                 // not IP
        ];
        var device = new ReplayDevice(packets);
        var underlay = new ReplayUnderlay([], default);
        using var engine = new DataplaneEngine(device, underlay, EngineFixture.Table(EngineFixture.PeerB, EngineFixture.PeerC),
            new EngineSettings(backend, 1, EngineFixture.OurMac) { IcmpRate = 1e12, IcmpBurst = 1e6 });
        for (int i = 0; i < 100; i++)
        {
            engine.Outbound.RunOnce(0); // warm up: tiering, first-use statics
        }
        Assert.Equal(0, AllocatedAfterWarmUp(() => engine.Outbound.RunOnce(0), 2000));
        Assert.True(underlay.Sent > 2000 * 15, $"only {underlay.Sent} datagrams sent");
        Assert.True(device.Written > 2000 * 15, $"only {device.Written} ICMP errors written");
        // Every branch these inputs are for was taken.
        foreach (DropReason r in new[] { DropReason.NoRoute, DropReason.Multicast, DropReason.OwnSubnet, DropReason.MalformedOutbound, DropReason.BadIpVersion })
        {
            Assert.True(engine.Outbound.Counters.DropsOf(r) > 1000, $"{r}: {engine.Outbound.Counters.DropsOf(r)}");
        }
    }

    [Fact]
    public void The_check_sees_one_small_allocation_per_call()
    {
        object? keep = null;
        Assert.InRange(AllocatedAfterWarmUp(() => keep = new byte[1], 1000), 1000 * 25, 1000 * 40);
        Assert.NotNull(keep);
    }

    [Fact]
    public void Rate_limited_icmp_errors_allocate_nothing()
    {
        var device = new ReplayDevice([Packets.Icmpv4Echo("10.244.1.2", "10.244.9.9")]);
        var underlay = new ReplayUnderlay([], default);
        using var engine = new DataplaneEngine(device, underlay, EngineFixture.Table(EngineFixture.PeerB),
            new EngineSettings(BackendKind.Vxlan, 1, EngineFixture.OurMac) { IcmpRate = 1, IcmpBurst = 1 });
        Assert.Equal(0, AllocatedAfterWarmUp(() => engine.Outbound.RunOnce(0), 2000));
        Assert.True(engine.Outbound.Counters.DropsOf(DropReason.NoRoute) > 2000 * 60, "the no-route branch did not run");
        Assert.True(device.Written < 100, $"{device.Written} ICMP errors: the rate limit did not hold them back");
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
        MacAddress ours = EngineFixture.OurMac, theirs = EngineFixture.PeerB.VtepMac;
        byte[] Wrap(byte[] ip) => backend == BackendKind.Vxlan ? Packets.Vxlan(ip, 1, ours, theirs) : ip;
        byte[] badChecksum = Packets.Udp("10.244.2.9", "10.244.1.2");
        badChecksum[8] = 1;
        byte[] badFlags = Packets.Vxlan(inner, 1, ours, theirs);
        badFlags[0] = 0x0C;
        byte[] arpForOther = new byte[Arp.Length];
        Arp.Write(arpForOther, Arp.OperationRequest, theirs, Packets.Ip("10.244.2.0"), default, Packets.Ip("10.244.7.0"));
        byte[][] common =
        [
            datagram, [1, 2, 3],
            Wrap([0x45, 1, 2, 3, 4]),                                   // malformed inner
            Wrap(badChecksum),                                          // bad inner checksum
            Wrap(Packets.Udp("10.244.3.9", "10.244.1.2")),              // inner source outside the peer's subnet
            Wrap(Packets.Udp("10.244.2.9", "10.244.3.2")),              // inner destination not ours
        ];
        byte[][] datagrams = backend == BackendKind.Vxlan
            ?
            [
                .. common,
                Packets.Vxlan(arp, 1, MacAddress.Broadcast, theirs, EthernetHeader.EtherTypeArp),
                Packets.Vxlan(arpForOther, 1, MacAddress.Broadcast, theirs, EthernetHeader.EtherTypeArp),
                badFlags,
                Packets.Vxlan(inner, 2, ours, theirs),                  // wrong VNI
                Packets.Vxlan(inner, 1, theirs, theirs),                // not our MAC
                Packets.Vxlan(inner, 1, ours, theirs, 0x88CC),          // not IP or ARP
            ]
            : common;
        var device = new ReplayDevice([]);
        var underlay = new ReplayUnderlay(datagrams, EngineFixture.PeerB.Endpoint);
        using var engine = new DataplaneEngine(device, underlay, EngineFixture.Table(EngineFixture.PeerB, EngineFixture.PeerC),
            new EngineSettings(backend, 1, EngineFixture.OurMac) { IcmpRate = 1e12, IcmpBurst = 1e6 });
        for (int i = 0; i < 100; i++)
        {
            engine.Inbound.RunOnce(0);
        }
        Assert.Equal(0, AllocatedAfterWarmUp(() => engine.Inbound.RunOnce(0), 2000));
        Assert.True(device.Written > 2000 * 5, $"only {device.Written} packets delivered");
        DropReason[] reasons = backend == BackendKind.Vxlan
            ? [DropReason.TooShort, DropReason.MalformedInner, DropReason.BadInnerChecksum, DropReason.InnerSourceNotPeerSubnet, DropReason.InnerDestinationNotOurSubnet,
               DropReason.ArpNotForUs, DropReason.BadVxlanFlags, DropReason.WrongVni, DropReason.NotOurMac, DropReason.BadEtherType]
            : [DropReason.MalformedInner, DropReason.BadInnerChecksum, DropReason.InnerSourceNotPeerSubnet, DropReason.InnerDestinationNotOurSubnet];
        foreach (DropReason r in reasons)
        {
            Assert.True(engine.Inbound.Counters.DropsOf(r) > 1000, $"{r}: {engine.Inbound.Counters.DropsOf(r)}");
        }
        if (backend == BackendKind.Vxlan)
        {
            Assert.True(engine.Inbound.Counters.ArpReplies > 1000, "no ARP replies");
        }
    }
}
