using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Dataplane.Encap;

namespace Dataplane.Lab.PodTools;

/// <summary>
/// The hidden <c>flood</c> command: random datagrams of every size to a node's port, bounded in
/// count and time, for the fault tests. A mix of pure noise, VXLAN-looking headers with wrong flags
/// or VNIs, right VXLAN headers carrying garbage or spoofed inner packets, and datagrams larger
/// than a slot (sent as IP fragments, reassembled by the receiver's kernel). With
/// <c>--arp-request</c>, only valid VXLAN ARP requests instead (a peer asking for an address).
/// </summary>
internal static class GarbageFlood
{
    public static int Run(string from, string to, int count, double seconds, int seed, string? arpRequest, TextWriter o, int flows = 1)
    {
        byte[]? arp = arpRequest is null ? null : ArpRequest(arpRequest);
        int colon = to.LastIndexOf(':');
        var target = new IPEndPoint(IPAddress.Parse(to[..colon]), int.Parse(to[(colon + 1)..], System.Globalization.CultureInfo.InvariantCulture));
        IPAddress source = IPAddress.Parse(from);
        Socket[] sockets = [.. Enumerable.Range(0, Math.Max(flows, 1)).Select(_ => new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp))];
        var rng = new Random(seed);
        byte[] buf = new byte[20_000];
        var sw = Stopwatch.StartNew();
        int sent = 0, errors = 0;
        try
        {
            foreach (Socket s in sockets)
            {
                s.Bind(new IPEndPoint(source, 0)); // a port of its own: a flow of its own
                s.SendBufferSize = 4 << 20;
            }
            while (sent < count && sw.Elapsed.TotalSeconds < seconds)
            {
                int len = arp is null ? Fill(buf, rng) : arp.Length;
                if (arp is not null)
                {
                    arp.CopyTo(buf, 0);
                }
                try
                {
                    sockets[sent % sockets.Length].SendTo(buf.AsSpan(0, len), SocketFlags.None, target);
                }
                catch (SocketException)
                {
                    errors++; // ENOBUFS under our own flood: count and go on
                }
                sent++;
            }
        }
        finally
        {
            Array.ForEach(sockets, s => s.Dispose());
        }
        o.WriteLine(FormattableString.Invariant($"flood sent={sent} errors={errors} seconds={sw.Elapsed.TotalSeconds:F2} rate={sent / sw.Elapsed.TotalSeconds:F0}"));
        return 0;
    }

    /// <summary>"10.244.2.0,0e:00:5e:00:00:02,10.244.1.0": a VXLAN datagram (VNI 1) carrying a broadcast ARP request.</summary>
    private static byte[] ArpRequest(string spec)
    {
        string[] p = spec.Split(',');
        if (p.Length != 3 || !Ipv4Prefix.TryParseAddress(p[0], out uint sender) || !MacAddress.TryParse(p[1], out MacAddress? mac)
            || !Ipv4Prefix.TryParseAddress(p[2], out uint target))
        {
            throw new ArgumentException($"--arp-request {spec}: not SENDER_IP,SENDER_MAC,TARGET_IP");
        }
        byte[] datagram = new byte[22 + Arp.Length];
        Arp.Write(datagram.AsSpan(22), Arp.OperationRequest, mac.Value, sender, default, target);
        VxlanFrame.Encapsulate(datagram, 22, 1, MacAddress.Broadcast, mac.Value, EthernetHeader.EtherTypeArp);
        return datagram;
    }

    private static int Fill(byte[] buf, Random rng)
    {
        int kind = rng.Next(10);
        int len = kind == 9 ? rng.Next(9300, 20_000) : rng.Next(0, 1600);
        rng.NextBytes(buf.AsSpan(0, len));
        if (len < 8 + 14 + 20)
        {
            return len;
        }
        switch (kind)
        {
            case 0: // VXLAN header with wrong flags
                buf[0] = (byte)(rng.Next(2) == 0 ? 0x0C : 0x00);
                break;
            case 1: // right flags, wrong VNI
                VxlanHeader.Write(buf, (uint)rng.Next(2, 1 << 24));
                break;
            case 2: // right header, inner frame to someone else's MAC
            case 3: // right header, garbage after the Ethernet header
            case 4: // right header, an inner IPv4 packet with a broken checksum or lengths
            case 5: // right header, a spoofed inner source
                VxlanHeader.Write(buf, 1);
                EthernetHeader.Write(buf.AsSpan(8), kind == 2 ? new MacAddress(0x0E00_DEAD_BEEF) : new MacAddress(0x0E00_5E00_0001),
                    new MacAddress(0x0E00_5E00_0002), EthernetHeader.EtherTypeIpv4);
                if (kind >= 4)
                {
                    int ipLen = len - 22;
                    Ipv4Header.Write(buf.AsSpan(22), ipLen, 1, 0, 64, Ipv4Header.ProtocolUdp,
                        kind == 5 ? 0x0AF4_0902u : 0x0AF4_0202u, 0x0AF4_0102u);
                    if (kind == 4)
                    {
                        BinaryPrimitives.WriteUInt16BigEndian(buf.AsSpan(22 + 10), (ushort)rng.Next(65536));
                    }
                }
                break;
        }
        return len;
    }
}
