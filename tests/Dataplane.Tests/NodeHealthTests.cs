using Dataplane.Engine;
using Dataplane.Node;

namespace Dataplane.Tests;

/// <summary>What /healthz and /readyz answer through a node's life, over in-memory edges.</summary>
public sealed class NodeHealthTests
{
    [Fact]
    public void Readiness_follows_the_node_from_start_to_forwarding_to_a_stopped_queue_to_the_stop()
    {
        using var f = new EngineFixture(BackendKind.Vxlan, EngineFixture.PeerB);
        var health = new NodeHealth();
        Assert.Equal(503, health.Ready().Status); // starting
        Assert.Contains("starting", health.Ready().Body);
        Assert.Equal(200, health.Live().Status);

        f.Engine.Start();
        health.Forwarding(f.Engine, "10.244.1.0/24");
        Assert.Equal((200, "ready: lease 10.244.1.0/24, 1 peer, 1 queue forwarding\n"), (health.Ready().Status, health.Ready().Body));
        Assert.Equal(200, health.Live().Status);

        f.Engine.StopQueue(0); // a queue whose loops no longer run: neither alive nor ready
        Assert.Equal((503, "not ready: queue 0's loops are not running\n"), (health.Ready().Status, health.Ready().Body));
        Assert.Equal(503, health.Live().Status);
        f.Engine.StartQueue(0);
        Assert.Equal(200, health.Ready().Status);

        health.Stopping("handed over to pid 42"); // a hand-over stops the queues: alive, not ready
        f.Engine.Stop();
        Assert.Equal((503, "not ready: handed over to pid 42\n"), (health.Ready().Status, health.Ready().Body));
        Assert.Equal(200, health.Live().Status);
    }

    [Fact]
    public void A_failed_loop_is_neither_alive_nor_ready_and_says_why()
    {
        using var f = new EngineFixture(BackendKind.Vxlan, EngineFixture.PeerB);
        using var engine = new DataplaneEngine([FaultInjection.Wrap(FaultInjection.Loop.Outbound, new EngineQueue(f.Device, f.Underlay))],
            EngineFixture.Table(EngineFixture.PeerB), f.Settings);
        var health = new NodeHealth();
        engine.Start();
        health.Forwarding(engine, "10.244.1.0/24");
        f.Device.Inject(Packets.Udp("10.244.1.7", "10.244.2.5", 64));
        Assert.True(engine.Faulted.WaitOne(TimeSpan.FromSeconds(5)));
        Assert.Equal(503, health.Live().Status);
        Assert.StartsWith("not alive: loop dp-out-0 failed", health.Live().Body, StringComparison.Ordinal);
        Assert.Equal(503, health.Ready().Status);
        engine.Stop();
    }
}
