using System.Net.NetworkInformation;
using PacketDotNet;

namespace Dataplane.Encap.Tests;

public class HeaderTests
{
    private static readonly MacAddress Ours = new(0x0E_00_5E_00_00_01);
    private static readonly MacAddress Theirs = new(0x0E_00_5E_00_00_02);

    [Fact]
    public void Vxlan_header_golden_vector()
    {
        byte[] h = new byte[8];
        VxlanHeader.Write(h, 1);
        Assert.Equal(Convert.FromHexString("0800000000000100"), h);
        VxlanHeader.Write(h, 0xABCDEF);
        Assert.Equal(Convert.FromHexString("08000000ABCDEF00"), h);
        Assert.Equal(VxlanDecapResult.Ok, VxlanHeader.TryRead(h, out uint vni));
        Assert.Equal(0xABCDEFu, vni);
    }

    [Theory]
    [InlineData("0C00000000000100")] // extra flag bit
    [InlineData("0000000000000100")] // I flag clear
    [InlineData("0800010000000100")] // reserved bit in the first word
    [InlineData("0800000000000101")] // reserved last byte
    public void Vxlan_header_with_other_flags_is_refused(string hex)
    {
        Assert.Equal(VxlanDecapResult.BadFlags, VxlanHeader.TryRead(Convert.FromHexString(hex), out _));
    }

    [Fact]
    public void Vxlan_header_too_short()
    {
        Assert.Equal(VxlanDecapResult.TooShort, VxlanHeader.TryRead(new byte[7], out _));
    }

    [Fact]
    public void Ethernet_round_trip_and_PacketDotNet_agrees()
    {
        byte[] frame = new byte[14 + 28];
        EthernetHeader.Write(frame, Theirs, Ours, EthernetHeader.EtherTypeIpv4);
        Assert.Equal(Convert.FromHexString("0E005E0000020E005E0000010800"), frame[..14]);
        var eth = new EthernetPacket(new PacketDotNet.Utils.ByteArraySegment(frame));
        Assert.Equal(PhysicalAddress.Parse("0E-00-5E-00-00-02"), eth.DestinationHardwareAddress);
        Assert.Equal(PhysicalAddress.Parse("0E-00-5E-00-00-01"), eth.SourceHardwareAddress);
        Assert.Equal(EthernetType.IPv4, eth.Type);
        Assert.True(EthernetHeader.TryRead(frame, out MacAddress d, out MacAddress s, out ushort type));
        Assert.Equal(Theirs, d);
        Assert.Equal(Ours, s);
        Assert.Equal(0x0800, type);
        Assert.False(EthernetHeader.TryRead(frame.AsSpan(0, 13), out _, out _, out _));
    }

    [Theory]
    [InlineData("0e:00:5e:00:00:01", true)]
    [InlineData("0E-00-5E-00-00-01", true)]
    [InlineData("0e:00:5e:00:00", false)]
    [InlineData("0e:00:5e:00:00:0g", false)]
    [InlineData("0e.00.5e.00.00.01", false)]
    [InlineData("", false)]
    public void Mac_parse(string text, bool ok)
    {
        Assert.Equal(ok, MacAddress.TryParse(text, out MacAddress? mac));
        if (ok)
        {
            Assert.Equal(Ours, mac);
            Assert.Equal("0e:00:5e:00:00:01", mac!.Value.ToString());
        }
    }

    [Fact]
    public void Mac_multicast_and_broadcast_bits()
    {
        Assert.True(MacAddress.Broadcast.IsBroadcast);
        Assert.True(new MacAddress(0x01_00_5E_00_00_01).IsMulticast);
        Assert.False(Ours.IsMulticast);
    }

    [Fact]
    public void Vxlan_frame_encapsulates_in_place_and_decapsulates()
    {
        byte[] inner = TestPackets.Ipv4Echo();
        byte[] buffer = new byte[64 + inner.Length];
        inner.CopyTo(buffer, 64);
        int start = VxlanFrame.Encapsulate(buffer, 64, 1, Theirs, Ours, EthernetHeader.EtherTypeIpv4);
        Assert.Equal(64 - 22, start);
        ReadOnlySpan<byte> payload = buffer.AsSpan(start);
        Assert.Equal(Convert.FromHexString("0800000000000100" + "0E005E0000020E005E0000010800"), payload[..22].ToArray());
        Assert.Equal(inner, payload[22..].ToArray());

        // The peer (Theirs) reads it.
        Assert.Equal(VxlanDecapResult.Ok, VxlanFrame.Decapsulate(payload, 1, Theirs, out int off, out ushort type, out MacAddress src));
        Assert.Equal(22, off);
        Assert.Equal(EthernetHeader.EtherTypeIpv4, type);
        Assert.Equal(Ours, src);
        // Cross-check the inner frame with PacketDotNet.
        var eth = new EthernetPacket(new PacketDotNet.Utils.ByteArraySegment(payload[8..].ToArray()));
        var ip = eth.Extract<IPv4Packet>();
        Assert.NotNull(ip);
        Assert.True(ip.ValidIPChecksum);
        Assert.Equal("10.244.9.7", ip.DestinationAddress.ToString());
    }

    [Fact]
    public void Vxlan_decap_refusals()
    {
        byte[] frame = new byte[22 + 20];
        VxlanFrame.Encapsulate(frame, 22, 1, Ours, Theirs, EthernetHeader.EtherTypeIpv4);
        Assert.Equal(VxlanDecapResult.WrongVni, VxlanFrame.Decapsulate(frame, 2, Ours, out _, out _, out _));
        Assert.Equal(VxlanDecapResult.NotOurMac, VxlanFrame.Decapsulate(frame, 1, Theirs, out _, out _, out _));
        Assert.Equal(VxlanDecapResult.TooShort, VxlanFrame.Decapsulate(frame.AsSpan(0, 21), 1, Ours, out _, out _, out _));
        Assert.Equal(VxlanDecapResult.TooShort, VxlanFrame.Decapsulate(frame.AsSpan(0, 5), 1, Ours, out _, out _, out _));
        frame[0] = 0x0C;
        Assert.Equal(VxlanDecapResult.BadFlags, VxlanFrame.Decapsulate(frame, 1, Ours, out _, out _, out _));
        frame[0] = 0x08;
        frame[20] = 0x88; // EtherType 0x88xx
        Assert.Equal(VxlanDecapResult.BadEtherType, VxlanFrame.Decapsulate(frame, 1, Ours, out _, out _, out _));

        // Broadcast is accepted for ARP only.
        VxlanFrame.Encapsulate(frame, 22, 1, MacAddress.Broadcast, Theirs, EthernetHeader.EtherTypeArp);
        Assert.Equal(VxlanDecapResult.Ok, VxlanFrame.Decapsulate(frame, 1, Ours, out _, out _, out _));
        VxlanFrame.Encapsulate(frame, 22, 1, MacAddress.Broadcast, Theirs, EthernetHeader.EtherTypeIpv4);
        Assert.Equal(VxlanDecapResult.NotOurMac, VxlanFrame.Decapsulate(frame, 1, Ours, out _, out _, out _));
    }

    [Fact]
    public void Arp_request_read_and_reply_written_as_PacketDotNet_reads_them()
    {
        byte[] req = new byte[28];
        Arp.Write(req, Arp.OperationRequest, Theirs, 0x0AF40200, default, 0x0AF40100);
        Assert.True(Arp.TryReadRequest(req, out MacAddress sm, out uint sip, out uint tip));
        Assert.Equal(Theirs, sm);
        Assert.Equal(0x0AF40200u, sip);
        Assert.Equal(0x0AF40100u, tip);

        byte[] frame = new byte[14 + 28];
        EthernetHeader.Write(frame, Theirs, Ours, EthernetHeader.EtherTypeArp);
        Arp.Write(frame.AsSpan(14), Arp.OperationReply, Ours, 0x0AF40100, Theirs, 0x0AF40200);
        var arp = new EthernetPacket(new PacketDotNet.Utils.ByteArraySegment(frame)).Extract<ArpPacket>();
        Assert.Equal(ArpOperation.Response, arp.Operation);
        Assert.Equal("10.244.1.0", arp.SenderProtocolAddress.ToString());
        Assert.Equal(PhysicalAddress.Parse("0E-00-5E-00-00-01"), arp.SenderHardwareAddress);
        Assert.Equal("10.244.2.0", arp.TargetProtocolAddress.ToString());
        Assert.False(Arp.TryReadRequest(frame.AsSpan(14), out _, out _, out _)); // a reply is not a request
        Assert.False(Arp.TryReadRequest(req.AsSpan(0, 27), out _, out _, out _));
    }

    [Fact]
    public void Overheads_arithmetic()
    {
        Assert.Equal(28, Overheads.UdpBackend);
        Assert.Equal(50, Overheads.VxlanBackend);
        Assert.Equal(22, Overheads.VxlanPayloadPrefix);
    }

    [Theory]
    [InlineData("10.244.1.0/24", 0x0AF40100u, 24)]
    [InlineData("10.244.1.0-24", 0x0AF40100u, 24)]
    [InlineData("10.0.0.0/8", 0x0A000000u, 8)]
    public void Prefix_parse(string text, uint addr, int len)
    {
        Assert.True(Ipv4Prefix.TryParse(text, out Ipv4Prefix? p));
        Assert.Equal(new Ipv4Prefix(addr, len), p);
        Assert.Equal(text.Replace('-', '/'), p.Value.ToString());
        Assert.Equal(text.Replace('/', '-'), p.Value.ToKey());
    }

    [Theory]
    [InlineData("10.244.1.1/24")] // host bits set
    [InlineData("10.244.1.0/33")]
    [InlineData("10.244.1/24")]
    [InlineData("fd00::/64")]
    [InlineData("10.244.1.0")]
    [InlineData("garbage")]
    public void Prefix_parse_refuses(string text)
    {
        Assert.False(Ipv4Prefix.TryParse(text, out _));
    }

    [Fact]
    public void Prefix_contains_and_overlaps()
    {
        var net = new Ipv4Prefix(0x0AF40000, 16);
        var sub = new Ipv4Prefix(0x0AF40100, 24);
        Assert.True(net.Contains(sub));
        Assert.True(net.Overlaps(sub));
        Assert.True(sub.Overlaps(net));
        Assert.False(sub.Contains(net));
        Assert.False(sub.Overlaps(new Ipv4Prefix(0x0AF40200, 24)));
        Assert.True(sub.Contains(0x0AF401FFu));
        Assert.False(sub.Contains(0x0AF40200u));
        Assert.Equal(0x0AF401FFu, sub.Last);
    }

    [Theory]
    [InlineData("192.0.2.1", true)]
    [InlineData("0.0.0.0", true)]
    [InlineData("255.255.255.255", true)]
    [InlineData("192.0.2", false)]
    [InlineData("192.0.2.256", false)]
    [InlineData("192.0.2.1.5", false)]
    [InlineData("192.0..1", false)]
    [InlineData("+1.2.3.4", false)]
    [InlineData("::1", false)]
    public void Address_parse_is_strict(string text, bool ok)
    {
        Assert.Equal(ok, Ipv4Prefix.TryParseAddress(text, out uint a));
        if (ok)
        {
            Assert.Equal(text, Ipv4Prefix.Format(a));
        }
    }
}
