using System.Buffers.Binary;
using Dataplane.Encap;
using Dataplane.Engine;
using Dataplane.TunTap;

namespace Dataplane.Benchmarks;

/// <summary>
/// The packets and tables the benchmarks share: node 10.244.1.0/24 of 10.244.0.0/16, peers at
/// 192.0.2.x; dual-stack, also node 2001:db8:244::/64 of 2001:db8:244::/48 (peer i: 2001:db8:244:i::/64
/// at 2001:db8:2::i).
/// </summary>
internal static class BenchPackets
{
    public static readonly MacAddress OurMac = new(0x0E_00_5E_00_00_01);
    public static readonly MacAddress OurMacV6 = new(0x0E_00_5E_06_00_01);
    public static readonly Ipv4Prefix Network = new(0x0AF4_0000, 16);
    public static readonly Ipv4Prefix OurSubnet = new(0x0AF4_0100, 24);
    public static readonly UInt128 Network6 = new(0x2001_0DB8_0244_0000, 0);

    /// <summary>Peer <paramref name="i"/>'s IPv6 subnet base: 2001:db8:244:i:: (i below 65,536).</summary>
    public static UInt128 Subnet6(int i) => Network6 + ((UInt128)(uint)i << 64);

    /// <summary>A table of <paramref name="subnets"/> peers: /24s of a /16 up to 255, of a /8 beyond; with <paramref name="ipv6"/> each also a /64 of 2001:db8:244::/48.</summary>
    public static SubnetTable Table(int subnets, bool ipv6 = false)
    {
        Ipv4Prefix net = subnets <= 255 ? Network : new Ipv4Prefix(0x0A00_0000, 8);
        var ours = new Ipv4Prefix(net.Address, 24);
        var peers = new List<Peer>(subnets);
        for (int i = 1; i <= subnets; i++)
        {
            uint subnet = net.Address + ((uint)i << 8);
            var peer = new Peer(new Ipv4Prefix(subnet, 24), new UdpEndpoint(0xC633_6400u + (uint)i, 8472), new MacAddress(0x0E00_0000_0000UL + (ulong)i));
            if (ipv6)
            {
                peer = peer with
                {
                    Ipv6Subnet = new Ipv6Prefix(Subnet6(i), 64),
                    Endpoint6 = UdpEndpoint.Ipv6(new UInt128(0x2001_0DB8_0002_0000, (ulong)i), 8472),
                    VtepMacV6 = new MacAddress(0x0E06_0000_0000UL + (ulong)i),
                };
            }
            peers.Add(peer);
        }
        return new SubnetTable(net, 24, ours, peers, ipv6 ? (new Ipv6Prefix(Network6, 48), 64, new Ipv6Prefix(Network6, 64)) : null);
    }

    /// <summary>An IPv6 UDP packet (checksum left zero: nothing on these paths verifies it).</summary>
    public static byte[] Udp6(UInt128 src, UInt128 dst, int payload)
    {
        byte[] p = new byte[48 + payload];
        Ipv6Header.Write(p, 8 + payload, Ipv4Header.ProtocolUdp, 64, src, dst);
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(44), (ushort)(8 + payload));
        return p;
    }

    public static byte[] Udp(uint src, uint dst, int payload)
    {
        byte[] p = new byte[28 + payload];
        Ipv4Header.Write(p, p.Length, 1, 0x4000, 64, Ipv4Header.ProtocolUdp, src, dst);
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(24), (ushort)(8 + payload));
        return p;
    }
}
