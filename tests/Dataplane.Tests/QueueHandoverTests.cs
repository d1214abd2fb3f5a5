using System.Diagnostics;
using Dataplane.Engine;
using Dataplane.Node;

namespace Dataplane.Tests;

/// <summary>
/// The engine's part of a hand-over (a queue's loops stopped and started again, nothing they had
/// not read lost) and the offer a running node makes (written and read back, compared).
/// </summary>
public sealed class QueueHandoverTests
{
    [Fact]
    public void A_stopped_queue_reads_nothing_and_forwards_what_waited_once_started_again()
    {
        using var f = new EngineFixture(BackendKind.Vxlan, EngineFixture.PeerB);
        f.Engine.Start();
        Thread.Sleep(50); // both loops wait in their edges
        var sw = Stopwatch.StartNew();
        f.Engine.StopQueue(0);
        Assert.True(sw.Elapsed < TimeSpan.FromMilliseconds(EngineSettings.WaitTimeoutMs / 2), $"the stop took {sw.ElapsedMilliseconds} ms");
        Assert.False(f.Engine.IsRunning(0));

        f.Device.Inject(Packets.Udp("10.244.1.7", "10.244.2.5", 64));
        f.Underlay.Deliver(Packets.Vxlan(Packets.Udp("10.244.2.5", "10.244.1.7", 64), 1, EngineFixture.OurMac, EngineFixture.PeerB.VtepMac), EngineFixture.PeerB.Endpoint);
        Thread.Sleep(200);
        Assert.Empty(f.Underlay.Sent); // stopped: what arrives waits in the edges
        Assert.Empty(f.Device.Written);

        f.Engine.StartQueue(0);
        Assert.True(SpinWait.SpinUntil(() => f.Underlay.Sent.Count == 1 && f.Device.Written.Count == 1, TimeSpan.FromSeconds(5)),
            $"after the restart: {f.Underlay.Sent.Count} sent, {f.Device.Written.Count} written");
        Assert.Null(f.Engine.Failure);
        f.Engine.Stop();
        Assert.False(f.Engine.IsRunning(0));
    }

    private static HandoverOffer Offer() => new()
    {
        Version = 1,
        Pid = 4242,
        Device = "flannel.1",
        Source = "tun",
        Backend = "vxlan",
        Port = 8472,
        Queues = 2,
        Offload = true,
        TunFlags = 0x3f,
        Subnet = "10.244.1.0/24",
        Subnet6 = "",
        PublicIp = "192.0.2.1",
        PublicIpv6 = "",
        VtepMac = "0e:00:5e:00:00:01",
        IpMasq = true,
    };

    [Fact]
    public void An_offer_reads_back_as_written_and_a_reader_skips_keys_it_does_not_know()
    {
        HandoverOffer offer = Offer();
        string line = offer.Format();
        Assert.Equal("OFFER version=1 pid=4242 device=flannel.1 source=tun backend=vxlan port=8472 queues=2 offload=on tun_flags=0x3f "
            + "subnet=10.244.1.0/24 subnet6= public_ip=192.0.2.1 public_ipv6= vtep_mac=0e:00:5e:00:00:01 ip_masq=on", line);
        Assert.Equal(offer, HandoverOffer.Parse(line));
        Assert.Equal(offer, HandoverOffer.Parse(line + " queue_rings=5000 some_later_key=x")); // a later version's offer
        Assert.Empty(offer.DifferencesFrom(HandoverOffer.Parse(line)));
    }

    [Theory]
    [InlineData("OFFER version=1", "the offer has no pid")]
    [InlineData("STATS", "not an offer: 'STATS'")]
    [InlineData("# HELP dataplane_packets_total", "not an offer")]
    public void An_unreadable_offer_says_what_is_wrong(string line, string expected)
    {
        var e = Assert.Throws<FormatException>(() => HandoverOffer.Parse(line));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Every_difference_that_would_change_the_descriptors_or_the_lease_is_named()
    {
        HandoverOffer there = Offer();
        HandoverOffer here = there with
        {
            Pid = 1,
            Queues = 1,
            Offload = false,
            Port = 8473,
            Subnet = "10.244.7.0/24",
            VtepMac = "0e:00:5e:00:00:09",
            TunFlags = 0,
            IpMasq = false, // not compared: the flags are the kernel's answer, --ip-masq changes with the successor
        };
        Assert.Equal(
            ["--port 8472 there, 8473 here", "--queues 2 there, 1 here", "--offload on there, off here",
             "subnet 10.244.1.0/24 there, 10.244.7.0/24 here", "VTEP MAC 0e:00:5e:00:00:01 there, 0e:00:5e:00:00:09 here"],
            here.DifferencesFrom(there));
        Assert.Equal(["--source packet there, tun here", "IPv6 subnet fd00:1::/64 there, none here"],
            Offer().DifferencesFrom(there with { Source = "packet", Subnet6 = "fd00:1::/64" }));
    }
}
