using Dataplane.Engine;
using Dataplane.Metrics;
using Dataplane.Node;
using Dataplane.TestSupport;

namespace Dataplane.Tests;

/// <summary>
/// The loops' counters are described once (<see cref="LoopCounters.Rows"/>), and that one table drives the
/// sum over queues, the Prometheus text and the stop line: a counter with a row shows up in all three.
/// </summary>
public class CounterTableTests
{
    /// <summary>Counters whose row r holds the value base + r.</summary>
    private static LoopCounters Numbered(long @base)
    {
        var c = new LoopCounters();
        for (int r = 0; r < LoopCounters.Rows.Length; r++)
        {
            LoopCounters.Rows[r].Field(c) = @base + r;
        }
        return c;
    }

    [Fact]
    public void Every_row_is_a_field_of_its_own_and_sums_over_queues()
    {
        LoopCounters sum = LoopCounters.Sum([Numbered(100), Numbered(1000)]);
        for (int r = 0; r < LoopCounters.Rows.Length; r++)
        {
            Assert.Equal(1100 + 2 * r, LoopCounters.Rows[r].Field(sum)); // distinct fields: no row overwrote another
        }
        Assert.Equal(LoopCounters.Rows.Length, LoopCounters.Rows.Select(r => r.Name).Distinct().Count());
    }

    [Fact]
    public void Every_row_is_in_the_prometheus_text_and_the_stop_line()
    {
        using var f = new EngineFixture(BackendKind.Vxlan);
        for (int r = 0; r < LoopCounters.Rows.Length; r++)
        {
            LoopCounters.Rows[r].Field(f.Engine.Outbound.Counters) = 100 + r;
            LoopCounters.Rows[r].Field(f.Engine.Inbound.Counters) = 1000 + r;
        }
        string text = MetricsText.Render(new MetricsText.Source(f.Engine, "vxlan", "flannel.1", 64, null));
        Dictionary<string, double> samples = StatsCommand.Parse(text);
        string stop = CountersReport.Figures(f.Engine.OutboundTotal, f.Engine.InboundTotal);
        for (int r = 0; r < LoopCounters.Rows.Length; r++)
        {
            LoopCounterRow row = LoopCounters.Rows[r];
            if (row.Loops == CounterLoops.Both)
            {
                Assert.Equal(100 + r, samples[$"{row.Metric}{{direction=\"out\"}}"]);
                Assert.Equal(1000 + r, samples[$"{row.Metric}{{direction=\"in\"}}"]);
                Assert.Contains($"out {100 + r} in {1000 + r} {row.Name}", stop, StringComparison.Ordinal);
            }
            else
            {
                long expected = row.Loops == CounterLoops.Outbound ? 100 + r : 1000 + r;
                Assert.Equal(expected, samples[row.SampleKey]);
                Assert.Contains($"{row.Name} {expected}", stop, StringComparison.Ordinal);
            }
        }
        foreach (string metric in LoopCounters.Rows.Select(r => r.Metric).Distinct())
        {
            Assert.Single(text.Split('\n'), l => l.StartsWith($"# HELP {metric} ", StringComparison.Ordinal));
            Assert.Single(text.Split('\n'), l => l == $"# TYPE {metric} counter");
        }
    }

    /// <summary>
    /// While the loops count, every render's totals are the sums of the per-queue lines it shows: one
    /// read of each loop's counters per render (they were read twice, and a busy node's per-queue
    /// lines did not add up to its total).
    /// </summary>
    [Fact]
    public void Totals_and_per_queue_lines_come_from_one_read_while_the_loops_count()
    {
        var table = EngineFixture.Table(EngineFixture.PeerB);
        var settings = new EngineSettings(BackendKind.Vxlan, 1, EngineFixture.OurMac);
        using var engine = new DataplaneEngine([new EngineQueue(new MemoryDevice(), new MemoryUnderlay(default)),
            new EngineQueue(new MemoryDevice(), new MemoryUnderlay(default))], table, settings);
        using var stop = new CancellationTokenSource();
        var counting = Task.Run(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                foreach (OutboundLoop l in engine.OutboundLoops)
                {
                    l.Counters.Packets++;
                }
                foreach (InboundLoop l in engine.InboundLoops)
                {
                    l.Counters.Packets++;
                }
            }
        });
        try
        {
            Assert.True(SpinWait.SpinUntil(() => Volatile.Read(ref engine.OutboundLoops[1].Counters.Packets) > 100_000, TimeSpan.FromSeconds(10)));
            for (int r = 0; r < 300; r++)
            {
                Dictionary<string, double> m = StatsCommand.Parse(MetricsText.Render(new MetricsText.Source(engine, "vxlan", "flannel.1", 64, null)));
                foreach (string d in new[] { "out", "in" })
                {
                    Assert.Equal(m[$"dataplane_packets_total{{direction=\"{d}\"}}"],
                        m[$"dataplane_queue_packets_total{{queue=\"0\",direction=\"{d}\"}}"] + m[$"dataplane_queue_packets_total{{queue=\"1\",direction=\"{d}\"}}"]);
                }
            }
        }
        finally
        {
            stop.Cancel();
            counting.Wait();
        }
    }
}
