using Dataplane.Engine;
using Dataplane.TunTap;

namespace Dataplane.Tests;

/// <summary>
/// The inbound loop's assist (issue 10): right after it wrote a small batch into the device, it
/// reads and sends what the host already answered, on the outbound loop's behalf, so the outbound
/// loop's thread need not be woken. Only after small batches, only while the outbound loop is not
/// busy, and never when turned off.
/// </summary>
public class AssistTests
{
    private static readonly UdpEndpoint FromB = EngineFixture.PeerB.Endpoint;

    private static EngineFixture Fixture(bool assist = true)
    {
        var f = new EngineFixture(BackendKind.Udp);
        if (!assist)
        {
            f.Engine.InboundLoops[0].Partner = null; // what EngineSettings.Assist = false does
        }
        return f;
    }

    [Fact]
    public void After_a_small_inbound_batch_the_hosts_answer_is_sent_from_the_inbound_loop()
    {
        using EngineFixture f = Fixture();
        f.Underlay.Deliver(Packets.Icmpv4Echo("10.244.2.9", "10.244.1.2"), FromB);
        byte[] answer = Packets.Udp("10.244.1.2", "10.244.2.9"); // what the host queued meanwhile
        f.Device.Inject(answer);

        Assert.Equal(1, f.Engine.Inbound.RunOnce(1000));

        Assert.Single(f.Device.Written);
        (byte[] data, UdpEndpoint to) = Assert.Single(f.Underlay.Sent);
        Assert.Equal(answer, data);
        Assert.Equal(EngineFixture.PeerB.Endpoint, to);
        Assert.Equal(1, f.Engine.Outbound.Counters.Assists);
        Assert.Equal(1, f.Engine.Outbound.Counters.Packets); // counted as the outbound loop's own
    }

    [Fact]
    public void A_full_inbound_batch_leaves_the_outbound_work_to_its_own_loop()
    {
        using EngineFixture f = Fixture();
        for (int i = 0; i < InboundLoop.AssistMaxBatch + 1; i++)
        {
            f.Underlay.Deliver(Packets.Udp("10.244.2.9", "10.244.1.2", seq: (uint)i), FromB);
        }
        f.Device.Inject(Packets.Udp("10.244.1.2", "10.244.2.9"));

        Assert.Equal(InboundLoop.AssistMaxBatch + 1, f.Engine.Inbound.RunOnce(1000));

        Assert.Empty(f.Underlay.Sent);
        Assert.Equal(0, f.Engine.Outbound.Counters.Assists);
        Assert.Equal(1, f.Engine.Outbound.RunOnce(1000)); // still there for the outbound loop
    }

    /// <summary>An IPv4 TCP segment 10.244.2.9:5201 -> 10.244.1.2:40000 with ACK set and <paramref name="payload"/> bytes, checksummed.</summary>
    private static byte[] Tcp(int payload)
    {
        byte[] p = new byte[40 + payload];
        Dataplane.Encap.Ipv4Header.Write(p, p.Length, 7, 0x4000, 64, Dataplane.Encap.Ipv4Header.ProtocolTcp, Packets.Ip("10.244.2.9"), Packets.Ip("10.244.1.2"));
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(20), 5201);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(22), 40000);
        p[32] = 5 << 4;
        p[33] = 0x10; // ACK
        ulong pseudo = Dataplane.Encap.InternetChecksum.PseudoHeaderIpv4(Packets.Ip("10.244.2.9"), Packets.Ip("10.244.1.2"), Dataplane.Encap.Ipv4Header.ProtocolTcp, 20 + payload);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(36), Dataplane.Encap.InternetChecksum.Finish(Dataplane.Encap.InternetChecksum.Sum(p.AsSpan(20), pseudo)));
        return p;
    }

    [Fact]
    public void Bare_tcp_acks_are_not_followed_by_an_assist_a_segment_with_data_is()
    {
        Assert.True(InboundLoop.IsBareTcpAck(Tcp(0)));
        Assert.False(InboundLoop.IsBareTcpAck(Tcp(1)));
        Assert.False(InboundLoop.IsBareTcpAck(Packets.Udp("10.244.2.9", "10.244.1.2", payload: 0)));

        using (EngineFixture f = Fixture())
        {
            // ACKs release more bulk data from the host: the outbound loop's own thread sends it.
            f.Underlay.Deliver(Tcp(0), FromB);
            f.Device.Inject(Packets.Udp("10.244.1.2", "10.244.2.9"));
            f.Engine.Inbound.RunOnce(1000);
            Assert.Single(f.Device.Written);
            Assert.Empty(f.Underlay.Sent);
        }
        using (EngineFixture f = Fixture())
        {
            // A request with data expects an answer.
            f.Underlay.Deliver(Tcp(100), FromB);
            f.Device.Inject(Packets.Udp("10.244.1.2", "10.244.2.9"));
            f.Engine.Inbound.RunOnce(1000);
            Assert.Single(f.Underlay.Sent);
        }
    }

    [Fact]
    public void Nothing_is_assisted_when_turned_off_or_when_nothing_was_written()
    {
        using (EngineFixture f = Fixture(assist: false))
        {
            f.Underlay.Deliver(Packets.Icmpv4Echo("10.244.2.9", "10.244.1.2"), FromB);
            f.Device.Inject(Packets.Udp("10.244.1.2", "10.244.2.9"));
            f.Engine.Inbound.RunOnce(1000);
            Assert.Empty(f.Underlay.Sent);
        }
        using (EngineFixture f = Fixture())
        {
            // A datagram from an unknown peer is dropped: nothing was written, nothing to answer.
            f.Underlay.Deliver(Packets.Icmpv4Echo("10.244.2.9", "10.244.1.2"), new UdpEndpoint(Packets.Ip("192.0.2.77"), 8472));
            f.Device.Inject(Packets.Udp("10.244.1.2", "10.244.2.9"));
            f.Engine.Inbound.RunOnce(1000);
            Assert.Empty(f.Underlay.Sent);
            Assert.Equal(0, f.Engine.Outbound.Counters.Assists);
        }
    }
}
