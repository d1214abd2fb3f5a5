using System.Buffers.Binary;
using Dataplane.Encap;

namespace Dataplane.Tests;

/// <summary>Test packets built by hand (checksums with the reference implementation in Encap, verified there against PacketDotNet).</summary>
internal static class Packets
{
    public static uint Ip(string dotted) => Ipv4Prefix.ToUInt32(System.Net.IPAddress.Parse(dotted));

    /// <summary>An IPv4 UDP packet src -> dst carrying <paramref name="payload"/> bytes (a sequence number first).</summary>
    public static byte[] Udp(string src, string dst, int payload = 64, uint seq = 0)
    {
        byte[] p = new byte[20 + 8 + payload];
        Ipv4Header.Write(p, p.Length, (ushort)seq, 0x4000, 64, Ipv4Header.ProtocolUdp, Ip(src), Ip(dst));
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(20), 40000);
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(22), 5000);
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(24), (ushort)(8 + payload));
        if (payload >= 4)
        {
            BinaryPrimitives.WriteUInt32BigEndian(p.AsSpan(28), seq);
        }
        return p;
    }

    public static byte[] Icmpv4Echo(string src, string dst)
    {
        byte[] p = new byte[20 + 8 + 16];
        Ipv4Header.Write(p, p.Length, 1, 0, 64, Ipv4Header.ProtocolIcmp, Ip(src), Ip(dst));
        p[20] = 8;
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(22), InternetChecksum.Compute(p.AsSpan(20)));
        return p;
    }

    public static uint Sequence(ReadOnlySpan<byte> ipPacket) => BinaryPrimitives.ReadUInt32BigEndian(ipPacket[28..]);

    /// <summary>Wraps an inner IP packet as a VXLAN payload (VNI, dst MAC, src MAC).</summary>
    public static byte[] Vxlan(byte[] inner, uint vni, MacAddress dst, MacAddress src, ushort etherType = EthernetHeader.EtherTypeIpv4)
    {
        byte[] buf = new byte[22 + inner.Length];
        inner.CopyTo(buf, 22);
        VxlanFrame.Encapsulate(buf, 22, vni, dst, src, etherType);
        return buf;
    }
}
