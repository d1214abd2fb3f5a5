using System.Diagnostics;
using Dataplane.Engine;

namespace Dataplane.Tests;

/// <summary>The loops' guard and their stop: a fault in an edge is contained and reported, and a stop wakes waiting loops at once.</summary>
public sealed class LoopGuardTests
{
    [Theory]
    [InlineData("outbound")]
    [InlineData("inbound")]
    public void An_edge_that_throws_is_reported_as_the_engines_failure_and_the_other_loops_stop_cleanly(string loop)
    {
        using var f = new EngineFixture(BackendKind.Vxlan);
        var fault = new InvalidOperationException("edge fault for the test");
        if (loop == "outbound")
        {
            f.Device.FailNextRead = fault;
        }
        else
        {
            f.Underlay.FailNextReceive = fault;
        }
        f.Engine.Start();
        Assert.True(f.Engine.Faulted.WaitOne(TimeSpan.FromSeconds(5)), "the engine did not report the fault");
        LoopFailure failure = f.Engine.Failure!;
        string thread = loop == "outbound" ? "dp-out-0" : "dp-in-0";
        Assert.Equal(thread, failure.Loop);
        Assert.Same(fault, failure.Exception);
        Assert.Equal($"loop {thread} failed: InvalidOperationException: edge fault for the test", failure.Reason);

        // The loop that did not fail is still forwarding until the node stops.
        if (loop == "outbound")
        {
            f.Underlay.Deliver(Packets.Vxlan(Packets.Udp("10.244.2.5", "10.244.1.7", 64), 1, EngineFixture.OurMac, EngineFixture.PeerB.VtepMac), EngineFixture.PeerB.Endpoint);
            Assert.True(SpinWait.SpinUntil(() => !f.Device.Written.IsEmpty, TimeSpan.FromSeconds(5)), "the inbound loop stopped with the outbound one");
        }
        var sw = Stopwatch.StartNew();
        f.Engine.Stop();
        Assert.True(sw.Elapsed < TimeSpan.FromMilliseconds(EngineSettings.WaitTimeoutMs / 2), $"stop took {sw.ElapsedMilliseconds} ms");
    }

    [Fact]
    public void Only_the_first_failure_is_kept()
    {
        using var f = new EngineFixture(BackendKind.Udp);
        f.Device.FailNextRead = new InvalidOperationException("first");
        f.Engine.Start();
        Assert.True(f.Engine.Faulted.WaitOne(TimeSpan.FromSeconds(5)));
        f.Underlay.FailNextReceive = new InvalidOperationException("second");
        f.Underlay.Deliver([1, 2, 3], EngineFixture.PeerB.Endpoint); // wakes the inbound loop, which throws now
        Assert.True(SpinWait.SpinUntil(() => f.Underlay.FailNextReceive is null, TimeSpan.FromSeconds(5)), "the second fault was never thrown");
        f.Engine.Stop();
        Assert.Equal("first", f.Engine.Failure!.Exception!.Message);
    }

    [Fact]
    public void Stop_wakes_loops_waiting_for_packets_at_once()
    {
        using var f = new EngineFixture(BackendKind.Udp);
        f.Engine.Start();
        Thread.Sleep(100); // both loops are now waiting in their edges
        var sw = Stopwatch.StartNew();
        f.Engine.Stop();
        Assert.True(sw.Elapsed < TimeSpan.FromMilliseconds(EngineSettings.WaitTimeoutMs / 2), $"stop took {sw.ElapsedMilliseconds} ms");
        Assert.Null(f.Engine.Failure);
        Assert.False(f.Engine.Faulted.WaitOne(0));
    }
}
