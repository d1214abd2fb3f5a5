using Dataplane.Encap;
using Dataplane.Engine;
using Dataplane.TunTap;
using PacketDotNet;

namespace Dataplane.Tests;

public class InboundTests
{
    private static readonly UdpEndpoint FromB = EngineFixture.PeerB.Endpoint with { Port = 51234 };

    [Fact]
    public void Udp_backend_delivers_a_valid_packet_from_a_peer()
    {
        using var f = new EngineFixture(BackendKind.Udp);
        byte[] p = Packets.Udp("10.244.2.9", "10.244.1.2");
        f.Underlay.Deliver(p, FromB);
        f.Engine.Inbound.RunOnce(1000);
        Assert.Equal(p, Assert.Single(f.Device.Written));
    }

    [Fact]
    public void Vxlan_backend_unwraps_and_delivers()
    {
        using var f = new EngineFixture(BackendKind.Vxlan);
        byte[] inner = Packets.Udp("10.244.2.9", "10.244.1.2", payload: 1000);
        f.Underlay.Deliver(Packets.Vxlan(inner, 1, EngineFixture.OurMac, EngineFixture.PeerB.VtepMac), FromB);
        f.Engine.Inbound.RunOnce(1000);
        Assert.Equal(inner, Assert.Single(f.Device.Written));
    }

    [Fact]
    public void Ethernet_padding_is_trimmed_to_the_ip_length()
    {
        using var f = new EngineFixture(BackendKind.Vxlan);
        byte[] inner = Packets.Udp("10.244.2.9", "10.244.1.2", payload: 4);
        byte[] padded = [.. inner, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        f.Underlay.Deliver(Packets.Vxlan(padded, 1, EngineFixture.OurMac, EngineFixture.PeerB.VtepMac), FromB);
        f.Engine.Inbound.RunOnce(1000);
        Assert.Equal(inner, Assert.Single(f.Device.Written));
    }

    public static TheoryData<string, string> VxlanRefusals => new()
    {
        { "unknown-peer", nameof(DropReason.UnknownPeer) },
        { "truncated", nameof(DropReason.Truncated) },
        { "bad-flags", nameof(DropReason.BadVxlanFlags) },
        { "wrong-vni", nameof(DropReason.WrongVni) },
        { "other-mac", nameof(DropReason.NotOurMac) },
        { "ethertype", nameof(DropReason.BadEtherType) },
        { "short", nameof(DropReason.TooShort) },
        { "inner-garbage", nameof(DropReason.MalformedInner) },
        { "inner-checksum", nameof(DropReason.BadInnerChecksum) },
        { "inner-spoofed-source", nameof(DropReason.InnerSourceNotPeerSubnet) },
        { "inner-not-for-us", nameof(DropReason.InnerDestinationNotOurSubnet) },
    };

    [Theory]
    [MemberData(nameof(VxlanRefusals))]
    public void Vxlan_refusals_are_counted_by_reason(string kind, string reasonName)
    {
        DropReason reason = Enum.Parse<DropReason>(reasonName);
        using var f = new EngineFixture(BackendKind.Vxlan);
        byte[] inner = Packets.Udp("10.244.2.9", "10.244.1.2");
        MacAddress ours = EngineFixture.OurMac, theirs = EngineFixture.PeerB.VtepMac;
        UdpEndpoint from = FromB;
        bool truncated = false;
        byte[] datagram = Packets.Vxlan(inner, 1, ours, theirs);
        switch (kind)
        {
            case "unknown-peer": from = new UdpEndpoint(Packets.Ip("198.51.100.7"), 8472); break;
            case "truncated": truncated = true; break;
            case "bad-flags": datagram[0] = 0x0C; break;
            case "wrong-vni": datagram = Packets.Vxlan(inner, 2, ours, theirs); break;
            case "other-mac": datagram = Packets.Vxlan(inner, 1, theirs, theirs); break;
            case "ethertype": datagram = Packets.Vxlan(inner, 1, ours, theirs, 0x88CC); break;
            case "short": datagram = datagram[..12]; break;
            case "inner-garbage": datagram = Packets.Vxlan([0x45, 1, 2, 3, 4], 1, ours, theirs); break;
            case "inner-checksum": inner[8] = 1; datagram = Packets.Vxlan(inner, 1, ours, theirs); break;
            case "inner-spoofed-source": datagram = Packets.Vxlan(Packets.Udp("10.244.3.9", "10.244.1.2"), 1, ours, theirs); break;
            case "inner-not-for-us": datagram = Packets.Vxlan(Packets.Udp("10.244.2.9", "10.244.3.2"), 1, ours, theirs); break;
        }
        f.Underlay.Deliver(datagram, from, truncated);
        f.Engine.Inbound.RunOnce(1000);
        Assert.Empty(f.Device.Written);
        Assert.Equal(1, f.Drops(reason));
        Assert.Equal(1, f.Engine.Inbound.Counters.Drops.Sum());
    }

    [Fact]
    public void Arp_request_for_our_vtep_address_is_answered_to_the_peer()
    {
        using var f = new EngineFixture(BackendKind.Vxlan);
        byte[] arp = new byte[Arp.Length];
        Arp.Write(arp, Arp.OperationRequest, EngineFixture.PeerB.VtepMac, Packets.Ip("10.244.2.0"), default, Packets.Ip("10.244.1.0"));
        f.Underlay.Deliver(Packets.Vxlan(arp, 1, MacAddress.Broadcast, EngineFixture.PeerB.VtepMac, EthernetHeader.EtherTypeArp), FromB);
        f.Engine.Inbound.RunOnce(1000);

        Assert.Empty(f.Device.Written);
        var (reply, to) = Assert.Single(f.Underlay.Sent);
        Assert.Equal(EngineFixture.PeerB.Endpoint, to); // the peer's VXLAN port, not its source port
        Assert.Equal(VxlanDecapResult.Ok, VxlanHeader.TryRead(reply, out uint vni));
        Assert.Equal(1u, vni);
        var eth = new EthernetPacket(new PacketDotNet.Utils.ByteArraySegment(reply[8..]));
        Assert.Equal("0E005E000002", eth.DestinationHardwareAddress.ToString());
        var a = eth.Extract<ArpPacket>();
        Assert.Equal(ArpOperation.Response, a.Operation);
        Assert.Equal("10.244.1.0", a.SenderProtocolAddress.ToString());
        Assert.Equal("0E005E000001", a.SenderHardwareAddress.ToString());
        Assert.Equal("10.244.2.0", a.TargetProtocolAddress.ToString());
        Assert.Equal(1, f.Engine.Inbound.Counters.ArpReplies);
        Assert.Equal(0, f.Engine.Inbound.Counters.Drops.Sum());
    }

    [Fact]
    public void Every_arp_request_of_a_burst_in_one_batch_is_answered()
    {
        using var f = new EngineFixture(BackendKind.Vxlan);
        byte[] arp = new byte[Arp.Length];
        Arp.Write(arp, Arp.OperationRequest, EngineFixture.PeerB.VtepMac, Packets.Ip("10.244.2.0"), default, Packets.Ip("10.244.1.0"));
        byte[] datagram = Packets.Vxlan(arp, 1, MacAddress.Broadcast, EngineFixture.PeerB.VtepMac, EthernetHeader.EtherTypeArp);
        for (int i = 0; i < 10; i++)
        {
            f.Underlay.Deliver(datagram, FromB);
        }
        Assert.Equal(10, f.Engine.Inbound.RunOnce(1000)); // one batch
        Assert.Equal(10, f.Engine.Inbound.Counters.ArpReplies);
        Assert.Equal(10, f.Underlay.Sent.Count);
        Assert.Equal(0, f.Engine.Inbound.Counters.Drops.Sum());
    }

    [Fact]
    public void Arp_request_for_another_address_is_dropped()
    {
        using var f = new EngineFixture(BackendKind.Vxlan);
        byte[] arp = new byte[Arp.Length];
        Arp.Write(arp, Arp.OperationRequest, EngineFixture.PeerB.VtepMac, Packets.Ip("10.244.2.0"), default, Packets.Ip("10.244.1.5"));
        f.Underlay.Deliver(Packets.Vxlan(arp, 1, MacAddress.Broadcast, EngineFixture.PeerB.VtepMac, EthernetHeader.EtherTypeArp), FromB);
        f.Engine.Inbound.RunOnce(1000);
        Assert.Empty(f.Underlay.Sent);
        Assert.Equal(1, f.Drops(DropReason.ArpNotForUs));
    }

    [Fact]
    public void Random_datagrams_from_a_peer_never_throw_and_are_all_accounted_for()
    {
        foreach (BackendKind backend in new[] { BackendKind.Udp, BackendKind.Vxlan })
        {
            using var f = new EngineFixture(backend);
            var rng = new Random(11);
            for (int i = 0; i < 5000; i++)
            {
                byte[] junk = new byte[rng.Next(0, 1600)];
                rng.NextBytes(junk);
                if (i % 3 == 0 && junk.Length > 8)
                {
                    junk[0] = 0x08;
                    junk[1] = junk[2] = junk[3] = 0;
                }
                f.Underlay.Deliver(junk, FromB);
            }
            while (f.Engine.Inbound.RunOnce(100) > 0)
            {
            }
            LoopCounters c = f.Engine.Inbound.Counters;
            Assert.Equal(5000, c.Packets);
            Assert.Equal(c.Packets, f.Device.Written.Count + c.Drops.Sum() + c.ArpReplies);
        }
    }

    // Captured from a kernel flannel.1 over a veth with default offloads: a TCP SYN 10.244.2.0 ->
    // 10.244.1.7 whose checksum is the pseudo-header sum (0x191d; finished it is 0x7e4d).
    private const string KernelTcpSyn = "08000000000001000e005e0000010e005e00000208004500003c915b4000400690720af402000af40107b1780050d95bd6a600000000a002fd5c191d0000020405820402080a6f27e2a3000000000103030a";

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void An_unfinished_inner_checksum_from_a_kernel_peer_is_completed_and_counted_not_dropped(bool kernelCompletes)
    {
        using var f = new EngineFixture(BackendKind.Vxlan);
        f.Device.CompletesChecksums = kernelCompletes;
        byte[] datagram = Convert.FromHexString(KernelTcpSyn);
        f.Underlay.Deliver(datagram, FromB);
        f.Engine.Inbound.RunOnce(1000);
        byte[] written = Assert.Single(f.Device.Written);
        int flags = Assert.Single(f.Device.WrittenFlags);
        Assert.Equal(1, f.Engine.Inbound.Counters.ChecksumCompleted);
        if (kernelCompletes)
        {
            // Handed over as it came, flagged: the TUN's virtio header asks the kernel to finish it.
            Assert.Equal(datagram[22..], written);
            Assert.Equal(PacketBatch.FlagNeedsChecksum, flags & PacketBatch.FlagNeedsChecksum);
        }
        else
        {
            Assert.Equal(0x7e4d, System.Buffers.Binary.BinaryPrimitives.ReadUInt16BigEndian(written.AsSpan(36)));
            Assert.Equal(0, flags & PacketBatch.FlagNeedsChecksum);
        }
    }

    [Fact]
    public void A_wrong_inner_checksum_is_delivered_as_it_is_and_not_counted_as_completed()
    {
        using var f = new EngineFixture(BackendKind.Vxlan);
        f.Device.CompletesChecksums = true;
        byte[] datagram = Convert.FromHexString(KernelTcpSyn);
        datagram[22 + 36] ^= 0x40; // neither right nor the pseudo-header sum
        f.Underlay.Deliver(datagram, FromB);
        f.Engine.Inbound.RunOnce(1000);
        Assert.Equal(datagram[22..], Assert.Single(f.Device.Written));
        Assert.Equal(0, Assert.Single(f.Device.WrittenFlags) & PacketBatch.FlagNeedsChecksum);
        Assert.Equal(0, f.Engine.Inbound.Counters.ChecksumCompleted);
    }

    [Fact]
    public void Valid_inner_checksums_are_not_touched()
    {
        using var f = new EngineFixture(BackendKind.Vxlan);
        byte[] inner = Packets.Udp("10.244.2.9", "10.244.1.2", payload: 300);
        f.Underlay.Deliver(Packets.Vxlan(inner, 1, EngineFixture.OurMac, EngineFixture.PeerB.VtepMac), FromB);
        f.Engine.Inbound.RunOnce(1000);
        Assert.Equal(inner, Assert.Single(f.Device.Written));
        Assert.Equal(0, f.Engine.Inbound.Counters.ChecksumCompleted);
    }
}
