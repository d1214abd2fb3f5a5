using System.Buffers.Binary;
using PacketDotNet;

namespace Dataplane.Encap.Tests;

/// <summary>Neighbor Solicitation and Advertisement (RFC 4861) as we read and write them, checked with PacketDotNet and a naive checksum.</summary>
public class NeighborDiscoveryTests
{
    private static readonly UInt128 Ours = Ipv6("2001:db8:244:1::");
    private static readonly UInt128 Solicitor = Ipv6("2001:db8:244:2::");
    private static readonly MacAddress OurMac = new(0x0E_00_5E_06_00_01);
    private static readonly MacAddress TheirMac = new(0x0E_00_5E_06_00_02);

    private static UInt128 Ipv6(string text) => Ipv6Prefix.TryParseAddress(text, out UInt128 a) ? a : throw new ArgumentException(text);

    [Fact]
    public void A_solicitation_we_write_is_read_back_and_is_what_packetdotnet_reads()
    {
        byte[] ns = new byte[100];
        int length = NeighborDiscovery.WriteSolicitation(ns, Solicitor, TheirMac, Ours);
        var ip = new IPv6Packet(new PacketDotNet.Utils.ByteArraySegment(ns[..length]));
        Assert.Equal("ff02::1:ff00:0", ip.DestinationAddress.ToString()); // solicited-node of 2001:db8:244:1::
        Assert.Equal(255, ip.HopLimit);
        var icmp = ip.Extract<IcmpV6Packet>();
        Assert.Equal(IcmpV6Type.NeighborSolicitation, icmp.Type);
        Assert.Equal(0, NaiveIcmpv6Checksum(ns[..length]));

        Assert.True(NeighborDiscovery.TryReadSolicitation(ns.AsSpan(0, length), out UInt128 source, out UInt128 target));
        Assert.Equal(Solicitor, source);
        Assert.Equal(Ours, target);
    }

    [Fact]
    public void The_advertisement_answers_with_our_mac_solicited_and_override()
    {
        byte[] na = new byte[NeighborDiscovery.AdvertisementLength];
        Assert.Equal(72, NeighborDiscovery.WriteAdvertisement(na, Ours, OurMac, Solicitor));
        var ip = new IPv6Packet(new PacketDotNet.Utils.ByteArraySegment(na));
        Assert.Equal("2001:db8:244:1::", ip.SourceAddress.ToString());
        Assert.Equal("2001:db8:244:2::", ip.DestinationAddress.ToString());
        Assert.Equal(255, ip.HopLimit);
        var icmp = ip.Extract<IcmpV6Packet>();
        Assert.Equal(IcmpV6Type.NeighborAdvertisement, icmp.Type);
        Assert.Equal(0, NaiveIcmpv6Checksum(na));
        Assert.Equal(0x6000_0000u, BinaryPrimitives.ReadUInt32BigEndian(na.AsSpan(44))); // S and O, not R
        Assert.Equal(Ours, BinaryPrimitives.ReadUInt128BigEndian(na.AsSpan(48)));
        Assert.Equal(2, na[64]); // target link-layer address option, 8 bytes
        Assert.Equal(1, na[65]);
        Assert.Equal(OurMac, MacAddress.Read(na.AsSpan(66)));
    }

    [Fact]
    public void A_solicitation_from_the_unspecified_address_is_answered_to_all_nodes_unsolicited()
    {
        byte[] na = new byte[NeighborDiscovery.AdvertisementLength];
        NeighborDiscovery.WriteAdvertisement(na, Ours, OurMac, UInt128.Zero);
        Assert.Equal(Ipv6("ff02::1"), BinaryPrimitives.ReadUInt128BigEndian(na.AsSpan(24)));
        Assert.Equal(0x2000_0000u, BinaryPrimitives.ReadUInt32BigEndian(na.AsSpan(44)));
        Assert.Equal(0, NaiveIcmpv6Checksum(na));
    }

    [Theory]
    [InlineData("hop limit")]
    [InlineData("checksum")]
    [InlineData("code")]
    [InlineData("multicast target")]
    [InlineData("not icmpv6")]
    [InlineData("short")]
    [InlineData("echo request")]
    public void What_is_not_a_valid_solicitation_is_refused(string defect)
    {
        byte[] ns = new byte[100];
        int length = NeighborDiscovery.WriteSolicitation(ns, Solicitor, TheirMac, defect == "multicast target" ? Ipv6("ff02::1") : Ours);
        switch (defect)
        {
            case "hop limit": ns[7] = 64; break;
            case "checksum": ns[42] ^= 1; break;
            case "code": ns[41] = 1; break;
            case "not icmpv6": ns[6] = 17; break;
            case "short": length = 60; break;
            case "echo request": ns[40] = 128; break;
        }
        if (defect is "code" or "echo request")
        {
            FixChecksum(ns.AsSpan(0, length));
        }
        Assert.False(NeighborDiscovery.TryReadSolicitation(ns.AsSpan(0, length), out _, out _));
    }

    [Fact]
    public void Vxlan_lets_ipv6_multicast_macs_through_only_for_ipv6()
    {
        var solicitedNodeMac = new MacAddress(0x3333_FF00_0000);
        byte[] frame = new byte[22 + 72];
        VxlanFrame.Encapsulate(frame, 22, 1, solicitedNodeMac, TheirMac, EthernetHeader.EtherTypeIpv6);
        Assert.Equal(VxlanDecapResult.Ok, VxlanFrame.Decapsulate(frame, 1, OurMac, out _, out _, out _));
        VxlanFrame.Encapsulate(frame, 22, 1, solicitedNodeMac, TheirMac, EthernetHeader.EtherTypeIpv4);
        Assert.Equal(VxlanDecapResult.NotOurMac, VxlanFrame.Decapsulate(frame, 1, OurMac, out _, out _, out _));
    }

    private static void FixChecksum(Span<byte> packet)
    {
        packet[42] = packet[43] = 0;
        ulong sum = InternetChecksum.PseudoHeaderIpv6(packet.Slice(8, 16), packet.Slice(24, 16), 58, packet.Length - 40);
        BinaryPrimitives.WriteUInt16BigEndian(packet[42..], InternetChecksum.Finish(InternetChecksum.Sum(packet[40..], sum)));
    }

    /// <summary>The ones'-complement sum over pseudo-header and message, done the slow way: 0 when the checksum is right.</summary>
    private static int NaiveIcmpv6Checksum(byte[] packet)
    {
        int length = packet.Length - 40;
        byte[] all = new byte[40 + length];
        packet.AsSpan(8, 32).CopyTo(all);
        BinaryPrimitives.WriteUInt32BigEndian(all.AsSpan(32), (uint)length);
        all[39] = 58;
        packet.AsSpan(40).CopyTo(all.AsSpan(40));
        return TestPackets.NaiveChecksum(all);
    }
}
