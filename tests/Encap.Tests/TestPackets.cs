using System.Buffers.Binary;

namespace Dataplane.Encap.Tests;

/// <summary>Hand-built packets and a naive reference checksum, independent of the code under test.</summary>
internal static class TestPackets
{
    /// <summary>RFC 1071 the slow way: 16-bit big-endian words, one at a time.</summary>
    public static ushort NaiveChecksum(ReadOnlySpan<byte> data)
    {
        uint sum = 0;
        for (int i = 0; i < data.Length; i += 2)
        {
            uint word = (uint)data[i] << 8;
            if (i + 1 < data.Length)
            {
                word |= data[i + 1];
            }
            sum += word;
            while (sum > 0xFFFF)
            {
                sum = (sum & 0xFFFF) + (sum >> 16);
            }
        }
        return (ushort)~sum;
    }

    /// <summary>An IPv4 ICMP echo request 10.244.1.2 -> 10.244.9.7 with a correct header checksum.</summary>
    public static byte[] Ipv4Echo(uint src = 0x0AF40102, uint dst = 0x0AF40907, int payload = 32, ushort flagsAndOffset = 0x4000, byte icmpType = 8)
    {
        byte[] p = new byte[20 + 8 + payload];
        p[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(2), (ushort)p.Length);
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(4), 0x1234);
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(6), flagsAndOffset);
        p[8] = 64;
        p[9] = 1;
        BinaryPrimitives.WriteUInt32BigEndian(p.AsSpan(12), src);
        BinaryPrimitives.WriteUInt32BigEndian(p.AsSpan(16), dst);
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(10), NaiveChecksum(p.AsSpan(0, 20)));
        p[20] = icmpType;
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(24), 0x4242); // id
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(26), 7);      // seq
        for (int i = 28; i < p.Length; i++)
        {
            p[i] = (byte)i;
        }
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(22), NaiveChecksum(p.AsSpan(20)));
        return p;
    }

    /// <summary>An IPv6 ICMPv6 echo request fd00::1 -> fd00:9::7.</summary>
    public static byte[] Ipv6Echo(int payload = 16, byte icmpType = 128, string src = "fd00::1", string dst = "fd00:9::7")
    {
        byte[] p = new byte[40 + 8 + payload];
        p[0] = 0x60;
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(4), (ushort)(8 + payload));
        p[6] = 58;
        p[7] = 64;
        System.Net.IPAddress.Parse(src).TryWriteBytes(p.AsSpan(8, 16), out _);
        System.Net.IPAddress.Parse(dst).TryWriteBytes(p.AsSpan(24, 16), out _);
        p[40] = icmpType;
        return p;
    }
}
