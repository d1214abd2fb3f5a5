using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Dataplane.Encap;
using PacketDotNet;

using Dataplane.TestSupport;

namespace Dataplane.TunTap.Tests;

/// <summary>The offload paths against the real kernel, inside a test namespace.</summary>
public class OffloadDeviceTests
{
    private static uint Ip(string s) => Ipv4Prefix.ToUInt32(IPAddress.Parse(s));

    [Fact]
    public void Udp_gso_send_and_gro_receive_move_a_run_of_datagrams_in_one_message()
    {
        using var ns = new TestNamespace();
        var (a, b) = ns.Run(() => (UdpBatchSocket.Bind(new UdpEndpoint(Ip("127.0.0.1"), 18474), 64, offload: true),
                                   UdpBatchSocket.Bind(new UdpEndpoint(Ip("127.0.0.1"), 18475), 64, offload: true)));
        using (a)
        using (b)
        {
            Assert.True(a.GsoEnabled, "UDP_SEGMENT not available");
            Assert.True(b.GroEnabled, "UDP_GRO not available");
            var tx = new PacketBatch(64, 2048);
            for (int i = 0; i < 20; i++)
            {
                byte[] d = new byte[i == 19 ? 300 : 1000]; // equal sizes, a shorter last one
                d[0] = (byte)i;
                d[^1] = (byte)(0xA0 + i);
                tx.Set(i, d, b.LocalEndpoint);
            }
            tx.Count = 20;
            int sentNow = a.SendBatch(tx);
            Assert.True(20 == sentNow, $"sent {sentNow}; errors: {string.Join(",", a.SendErrorsByErrno.Select((n, e) => (n, e)).Where(x => x.n > 0).Select(x => $"{Errno.Name(x.e)}={x.n}"))}");
            Assert.Equal(1, a.GsoMessages); // one system call, one message, twenty datagrams

            var rx = new PacketBatch(64, 2048);
            var got = new List<(int First, int Last, int Length)>();
            var deadline = DateTime.UtcNow.AddSeconds(5);
            while (got.Count < 20 && DateTime.UtcNow < deadline)
            {
                int n = b.ReceiveBatch(rx, 200);
                for (int i = 0; i < n; i++)
                {
                    Span<byte> p = rx.Packet(i);
                    Assert.Equal(a.LocalEndpoint, rx.Endpoints[i]);
                    got.Add((p[0], p[^1], p.Length));
                }
            }
            Assert.Equal(20, got.Count);
            for (int i = 0; i < 20; i++)
            {
                Assert.Equal((i, 0xA0 + i, i == 19 ? 300 : 1000), got[i]);
            }
            Assert.True(b.GroMessages >= 1, "the kernel handed the run over glued (GRO)");
        }
    }

    [Fact]
    public void Gso_is_only_used_for_equal_runs_to_one_peer()
    {
        using var ns = new TestNamespace();
        var (a, b, c) = ns.Run(() => (UdpBatchSocket.Bind(new UdpEndpoint(Ip("127.0.0.1"), 18476), 64, offload: true),
                                      UdpBatchSocket.Bind(new UdpEndpoint(Ip("127.0.0.1"), 18477), 64, offload: true),
                                      UdpBatchSocket.Bind(new UdpEndpoint(Ip("127.0.0.1"), 18478), 64, offload: true)));
        using (a)
        using (b)
        using (c)
        {
            var tx = new PacketBatch(64, 2048);
            // b b b c c (b) : two GSO runs, then a lone datagram to b (a larger one starts a new message)
            int[] sizes = [500, 500, 500, 700, 700, 900];
            UdpEndpoint[] to = [b.LocalEndpoint, b.LocalEndpoint, b.LocalEndpoint, c.LocalEndpoint, c.LocalEndpoint, b.LocalEndpoint];
            for (int i = 0; i < sizes.Length; i++)
            {
                tx.Set(i, new byte[sizes[i]], to[i]);
            }
            tx.Count = sizes.Length;
            Assert.Equal(6, a.SendBatch(tx));
            Assert.Equal(2, a.GsoMessages);
            Assert.Equal(4, Drain(b).Count);
            Assert.Equal([700, 700], Drain(c));
        }
    }

    private static List<int> Drain(UdpBatchSocket s)
    {
        var rx = new PacketBatch(64, 2048);
        var lengths = new List<int>();
        for (int tries = 0; tries < 10; tries++)
        {
            int n = s.ReceiveBatch(rx, 100);
            for (int i = 0; i < n; i++)
            {
                lengths.Add(rx.Lengths[i]);
            }
        }
        return lengths;
    }

    /// <summary>
    /// A device with offloads, its address and the overlay route: a TUN, or the packet source's veth
    /// pair (host end NOARP with the address, our end read with a packet socket).
    /// </summary>
    private static IPacketDevice OpenDevice(string kind, string name, uint address)
    {
        using RouteNetlink nl = RouteNetlink.Open();
        IPacketDevice device;
        int index;
        if (kind == "tun")
        {
            device = TunDevice.Open(name, offload: true);
            index = RouteNetlink.LinkIndex(name);
            nl.SetLinkUp(index, 1450, "up");
        }
        else
        {
            string peer = name + "-dp";
            index = nl.AddVethPair(name, peer, "veth pair");
            int peerIndex = RouteNetlink.LinkIndex(peer);
            nl.SetNoIpv6LinkLocal(peerIndex, "addrgenmode none");
            nl.SetLinkUp(peerIndex, 1450, "up");
            nl.SetLinkUp(index, 1450, "up", noArp: true);
            device = PacketSocketDevice.Open(name, peer, RouteNetlink.GetMac(name), RouteNetlink.GetMac(peer), offload: true, fanoutGroup: peerIndex);
        }
        nl.AddAddress(index, address, 32, "addr");
        nl.ReplaceRoute(new Ipv4Prefix(Ip("10.244.0.0"), 16), index, "route");
        return device;
    }

    /// <summary>
    /// The packet source's socket buffer overflowing while nobody reads is counted (PACKET_STATISTICS,
    /// summed across reads, since each read resets the kernel's counter); nothing is counted before.
    /// </summary>
    [Fact]
    public void Frames_the_kernel_drops_at_the_packet_socket_are_counted()
    {
        using var ns = new TestNamespace();
        var (device, sender) = ns.Run(() => (OpenDevice("packet", "dpdrop0", Ip("10.244.1.0")),
            new Socket(AddressFamily.InterNetwork, SocketType.Dgram, System.Net.Sockets.ProtocolType.Udp)));
        using (device)
        using (sender)
        {
            Assert.Equal(0, device.Counters.KernelDrops);
            byte[] payload = new byte[1400];
            var to = new IPEndPoint(IPAddress.Parse("10.244.2.5"), 9999);
            // 40,000 x 1.4 KB (56 MB of frames) against a receive buffer of 8 MiB that nobody reads.
            for (int i = 0; i < 40_000; i++)
            {
                sender.SendTo(payload, to);
            }
            long first = device.Counters.KernelDrops;
            Assert.True(first > 1000, $"dropped {first}");
            Assert.True(device.Counters.KernelDrops >= first); // summed: a second read does not lose the first
        }
    }

    [Theory]
    [InlineData("tun")]
    [InlineData("packet")]
    public void A_uso_superpacket_from_the_kernel_is_split_into_valid_datagrams(string kind)
    {
        using var ns = new TestNamespace();
        var (tun, sender) = ns.Run(() =>
        {
            IPacketDevice t = OpenDevice(kind, "dpoff0", Ip("10.244.1.0"));
            // A plain socket that asks for UDP GSO itself: the superpacket reaches the device whole.
            var s = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, System.Net.Sockets.ProtocolType.Udp);
            s.SetRawSocketOption(17, 103, BitConverter.GetBytes(1000)); // SOL_UDP, UDP_SEGMENT
            return (t, s);
        });
        using (tun)
        using (sender)
        {
            Assert.Contains(kind == "tun" ? "uso4" : "vnet header", tun.Offloads);
            byte[] payload = new byte[8000];
            new Random(5).NextBytes(payload);
            sender.SendTo(payload, new IPEndPoint(IPAddress.Parse("10.244.2.5"), 9999));
            var batch = new PacketBatch(64, 2048);
            var datagrams = new List<byte[]>();
            var deadline = DateTime.UtcNow.AddSeconds(5);
            while (datagrams.Count < 8 && DateTime.UtcNow < deadline)
            {
                int n = tun.ReadBatch(batch, 200);
                for (int i = 0; i < n; i++)
                {
                    byte[] p = batch.Packet(i).ToArray();
                    if (p[0] >> 4 == 4 && p[9] == 17)
                    {
                        datagrams.Add(p);
                    }
                }
            }
            Assert.Equal(8, datagrams.Count);
            Assert.Equal(1, tun.Counters.SuperpacketsIn);
            for (int i = 0; i < 8; i++)
            {
                var ip = new IPv4Packet(new PacketDotNet.Utils.ByteArraySegment(datagrams[i]));
                Assert.True(ip.ValidIPChecksum);
                var udp = ip.Extract<UdpPacket>();
                Assert.True(udp.ValidUdpChecksum, $"datagram {i}");
                Assert.Equal(payload.AsSpan(i * 1000, 1000).ToArray(), udp.PayloadData);
            }
        }
    }

    /// <summary>
    /// Small UDP datagrams of one flow written in one batch leave the device as one GSO_UDP_L4
    /// superpacket (a TUN that took USO, a packet socket on Linux 6.2 or later), and the kernel cuts
    /// it back before the socket: each datagram arrives as written, in order.
    /// </summary>
    [Theory]
    [InlineData("tun")]
    [InlineData("packet")]
    public void Udp_datagrams_of_a_flow_are_written_as_one_uso_superpacket_and_arrive_as_sent(string kind)
    {
        using var ns = new TestNamespace();
        var (device, receiver) = ns.Run(() =>
        {
            IPacketDevice d = OpenDevice(kind, "dpuso0", Ip("10.244.1.7"));
            var r = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, System.Net.Sockets.ProtocolType.Udp);
            r.Bind(new IPEndPoint(IPAddress.Parse("10.244.1.7"), 9999));
            r.ReceiveTimeout = 1000;
            return (d, r);
        });
        using (device)
        using (receiver)
        {
            Assert.True(KernelRelease.AtLeast(6, 2), "this test expects a kernel that takes USO (6.2 or later)");
            Assert.Contains(kind == "tun" ? "uso4" : "small UDP datagrams written merged", device.Offloads);
            const int Count = 20, Size = 100;
            var batch = new PacketBatch(Count, 2048);
            for (int i = 0; i < Count; i++)
            {
                byte[] ip = new byte[28 + Size];
                Ipv4Header.Write(ip, ip.Length, (ushort)i, 0x4000, 64, Ipv4Header.ProtocolUdp, Ip("10.244.2.5"), Ip("10.244.1.7"));
                BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(20), 40000);
                BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(22), 9999);
                BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(24), 8 + Size);
                for (int k = 0; k < Size; k++)
                {
                    ip[28 + k] = (byte)(i * 31 + k);
                }
                ulong sum = InternetChecksum.Sum(ip.AsSpan(20), InternetChecksum.PseudoHeaderIpv4(Ip("10.244.2.5"), Ip("10.244.1.7"), Ipv4Header.ProtocolUdp, 8 + Size));
                BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(26), InternetChecksum.Finish(sum));
                batch.Set(i, ip);
            }
            batch.Count = Count;
            Assert.Equal(Count, device.WriteBatch(batch));
            Assert.Equal(1, device.Counters.SuperpacketsOut);
            Assert.Equal(Count - 1, device.Counters.Coalesced);
            byte[] got = new byte[2048];
            for (int i = 0; i < Count; i++)
            {
                int n = receiver.Receive(got);
                Assert.Equal(Size, n);
                Assert.True(got.AsSpan(0, n).SequenceEqual(Enumerable.Range(0, Size).Select(k => (byte)(i * 31 + k)).ToArray()), $"datagram {i} differs");
            }
        }
    }

    [Theory]
    [InlineData("tun")]
    [InlineData("packet")]
    public void A_flagged_unfinished_checksum_is_completed_by_the_kernel_and_an_unflagged_one_is_dropped(string kind)
    {
        using var ns = new TestNamespace();
        var (tun, receiver) = ns.Run(() =>
        {
            IPacketDevice t = OpenDevice(kind, "dpcsum0", Ip("10.244.1.7"));
            var r = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Dgram, System.Net.Sockets.ProtocolType.Udp);
            r.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Parse("10.244.1.7"), 9999));
            r.ReceiveTimeout = 1000;
            return (t, r);
        });
        using (tun)
        using (receiver)
        {
            // A UDP datagram as a kernel peer sends it: the checksum field holds the pseudo-header sum.
            byte[] Datagram(string text)
            {
                byte[] payload = System.Text.Encoding.ASCII.GetBytes(text);
                byte[] ip = new byte[28 + payload.Length];
                Ipv4Header.Write(ip, ip.Length, 1, 0, 64, Ipv4Header.ProtocolUdp, Ip("10.244.2.5"), Ip("10.244.1.7"));
                BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(20), 40000);
                BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(22), 9999);
                BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(24), (ushort)(8 + payload.Length));
                payload.CopyTo(ip, 28);
                ulong pseudo = InternetChecksum.PseudoHeaderIpv4(Ip("10.244.2.5"), Ip("10.244.1.7"), Ipv4Header.ProtocolUdp, 8 + payload.Length);
                BinaryPrimitives.WriteUInt16BigEndian(ip.AsSpan(26), (ushort)~InternetChecksum.Finish(pseudo));
                Assert.True(Encap.Offload.UnfinishedChecksum.IsUnfinished(ip, out _, out _));
                return ip;
            }
            var batch = new PacketBatch(2, 2048);
            batch.Set(0, Datagram("unflagged: the pod's stack drops it"));
            batch.Set(1, Datagram("flagged: the kernel completes it"));
            batch.Flags[1] = PacketBatch.FlagNeedsChecksum;
            batch.Count = 2;
            long csumErrors = ns.Run(UdpInCsumErrors);
            Assert.Equal(2, tun.WriteBatch(batch));
            byte[] got = new byte[2048];
            int n = receiver.Receive(got);
            Assert.Equal("flagged: the kernel completes it", System.Text.Encoding.ASCII.GetString(got, 0, n));
            Assert.Throws<System.Net.Sockets.SocketException>(() => receiver.Receive(got)); // the unflagged one never arrives...
            Assert.Equal(csumErrors + 1, ns.Run(UdpInCsumErrors)); // ...because the kernel found its checksum bad
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_tunnel_superpacket_arriving_as_one_datagram_comes_out_as_ordinary_datagrams(bool offload)
    {
        using var ns = new TestNamespace();
        var layout = new EncapsulationLayout(22, 1450);
        var (rx, tx) = ns.Run(() => (UdpBatchSocket.Bind(new UdpEndpoint(Ip("127.0.0.1"), 18490), 64, offload, layout: layout),
                                     new Socket(AddressFamily.InterNetwork, SocketType.Dgram, System.Net.Sockets.ProtocolType.Udp)));
        using (rx)
        using (tx)
        {
            // What a kernel flannel.1 on a veth sends: VXLAN + Ethernet, then one 20,052-byte inner TCP
            // superpacket whose checksum holds the pseudo-header sum.
            byte[] inner = new byte[20 + 20 + 20_000];
            Ipv4Header.Write(inner, inner.Length, 0x2000, 0x4000, 64, Ipv4Header.ProtocolTcp, Ip("10.244.2.5"), Ip("10.244.1.7"));
            BinaryPrimitives.WriteUInt16BigEndian(inner.AsSpan(20), 40000);
            BinaryPrimitives.WriteUInt16BigEndian(inner.AsSpan(22), 5201);
            BinaryPrimitives.WriteUInt32BigEndian(inner.AsSpan(24), 5000);
            inner[32] = 5 << 4;
            inner[33] = 0x18;
            for (int k = 40; k < inner.Length; k++)
            {
                inner[k] = (byte)(k * 13);
            }
            ulong pseudo = InternetChecksum.PseudoHeaderIpv4(Ip("10.244.2.5"), Ip("10.244.1.7"), 6, inner.Length - 20);
            BinaryPrimitives.WriteUInt16BigEndian(inner.AsSpan(36), (ushort)~InternetChecksum.Finish(pseudo));
            byte[] prefix = Convert.FromHexString("08000000000001000e005e0000010e005e0000020800");
            ns.Run(() => tx.SendTo([.. prefix, .. inner], new IPEndPoint(IPAddress.Loopback, 18490)));

            var batch = new PacketBatch(64, 2048);
            var payload = new List<byte>();
            uint seq = 5000;
            var deadline = DateTime.UtcNow.AddSeconds(5);
            while (payload.Count < 20_000 && DateTime.UtcNow < deadline)
            {
                int n = rx.ReceiveBatch(batch, 200);
                for (int k = 0; k < n; k++)
                {
                    byte[] d = batch.Packet(k).ToArray();
                    Assert.Equal(0, batch.Flags[k] & PacketBatch.FlagTruncated);
                    Assert.Equal(prefix, d[..22]);
                    Assert.True(d.Length - 22 <= 1450);
                    var tcp = new IPv4Packet(new PacketDotNet.Utils.ByteArraySegment(d[22..])).Extract<TcpPacket>();
                    Assert.True(tcp.ValidTcpChecksum); // the split finished every checksum
                    Assert.Equal(seq, tcp.SequenceNumber);
                    seq += (uint)tcp.PayloadData.Length;
                    payload.AddRange(tcp.PayloadData);
                }
            }
            Assert.Equal(inner[40..], payload.ToArray());
            Assert.Equal(1, rx.TunnelSuperpackets);
            Assert.Equal((20_000 + 1409) / 1410, rx.TunnelSegments); // 1450 - 20 - 20 bytes each
        }
    }

    /// <summary>The namespace's Udp InCsumErrors counter (read from a thread inside it).</summary>
    private static long UdpInCsumErrors()
    {
        string[] udp = [.. File.ReadAllLines("/proc/thread-self/net/snmp").Where(l => l.StartsWith("Udp:", StringComparison.Ordinal))];
        int column = Array.IndexOf(udp[0].Split(' '), "InCsumErrors");
        return long.Parse(udp[1].Split(' ')[column], System.Globalization.CultureInfo.InvariantCulture);
    }
}
