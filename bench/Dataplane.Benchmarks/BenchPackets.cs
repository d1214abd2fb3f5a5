using System.Buffers.Binary;
using Dataplane.Encap;
using Dataplane.Engine;
using Dataplane.TunTap;

namespace Dataplane.Benchmarks;

/// <summary>The packets and tables the benchmarks share: node 10.244.1.0/24 of 10.244.0.0/16, peers at 192.0.2.x.</summary>
internal static class BenchPackets
{
    public static readonly MacAddress OurMac = new(0x0E_00_5E_00_00_01);
    public static readonly Ipv4Prefix Network = new(0x0AF4_0000, 16);
    public static readonly Ipv4Prefix OurSubnet = new(0x0AF4_0100, 24);

    /// <summary>A table of <paramref name="subnets"/> peers: /24s of a /16 up to 255, of a /8 beyond.</summary>
    public static SubnetTable Table(int subnets)
    {
        Ipv4Prefix net = subnets <= 255 ? Network : new Ipv4Prefix(0x0A00_0000, 8);
        var ours = new Ipv4Prefix(net.Address, 24);
        var peers = new List<Peer>(subnets);
        for (int i = 1; i <= subnets; i++)
        {
            uint subnet = net.Address + ((uint)i << 8);
            peers.Add(new Peer(new Ipv4Prefix(subnet, 24), new UdpEndpoint(0xC633_6400u + (uint)i, 8472), new MacAddress(0x0E00_0000_0000UL + (ulong)i)));
        }
        return new SubnetTable(net, 24, ours, peers);
    }

    public static byte[] Udp(uint src, uint dst, int payload)
    {
        byte[] p = new byte[28 + payload];
        Ipv4Header.Write(p, p.Length, 1, 0x4000, 64, Ipv4Header.ProtocolUdp, src, dst);
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(24), (ushort)(8 + payload));
        return p;
    }
}
