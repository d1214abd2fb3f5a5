using System.Diagnostics;
using Dataplane.Engine;

namespace Dataplane.Tests;

public class TableSwapTests
{
    [Fact]
    public void Live_table_swaps_lose_nothing_for_an_unchanged_peer()
    {
        using var f = new EngineFixture(BackendKind.Vxlan, EngineFixture.PeerB);
        f.Engine.Start();
        const int Packets = 50_000;
        int swaps = 0;
        using var done = new CancellationTokenSource();
        var swapper = new Thread(() =>
        {
            // Peer C comes and goes as fast as the control plane can publish.
            while (!done.IsCancellationRequested)
            {
                f.Engine.Publish(EngineFixture.Table(EngineFixture.PeerB, EngineFixture.PeerC));
                f.Engine.Publish(EngineFixture.Table(EngineFixture.PeerB));
                swaps += 2;
            }
        });
        swapper.Start();
        for (uint i = 0; i < Packets; i++)
        {
            f.Device.Inject(Tests.Packets.Udp("10.244.1.2", "10.244.2.9", seq: i));
        }
        var sw = Stopwatch.StartNew();
        while (f.Underlay.Sent.Count < Packets && sw.Elapsed < TimeSpan.FromSeconds(30))
        {
            Thread.Sleep(10);
        }
        done.Cancel();
        swapper.Join();
        f.Engine.Stop();

        Assert.Equal(Packets, f.Underlay.Sent.Count);
        Assert.All(f.Underlay.Sent, s => Assert.Equal(EngineFixture.PeerB.Endpoint, s.To));
        Assert.Equal(0, f.Engine.Outbound.Counters.Drops.Sum());
        Assert.True(swaps > 100, $"only {swaps} swaps happened during the run");
    }

    [Fact]
    public void A_published_table_is_used_from_the_next_batch()
    {
        using var f = new EngineFixture(BackendKind.Udp, EngineFixture.PeerB);
        f.Device.Inject(Tests.Packets.Udp("10.244.1.2", "10.244.3.9"));
        f.Engine.Outbound.RunOnce(1000);
        Assert.Equal(1, f.Drops(DropReason.NoRoute));
        f.Engine.Publish(EngineFixture.Table(EngineFixture.PeerB, EngineFixture.PeerC));
        f.Device.Inject(Tests.Packets.Udp("10.244.1.2", "10.244.3.9"));
        f.Engine.Outbound.RunOnce(1000);
        Assert.Equal(EngineFixture.PeerC.Endpoint, Assert.Single(f.Underlay.Sent).To);
    }
}
