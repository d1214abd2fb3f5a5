using Dataplane.Engine;
using Dataplane.Metrics;
using Serilog;

namespace Dataplane.Node;

/// <summary>The loops' counters as lifecycle log lines (at stop), summed over queues, drops by reason where non-zero.</summary>
internal static class CountersReport
{
    public static void Log(DataplaneEngine engine, ILogger log)
    {
        LoopCounters o = engine.OutboundTotal, i = engine.InboundTotal;
        log.Information("Counters: {Counters}; drops: {Drops}", Figures(o, i), Drops(o, i));
    }

    public static void LogOffloads(NodeDevice device, ILogger log)
    {
        OffloadTotals t = OffloadTotals.Sum(device);
        log.Information("Offload counters: device superpackets in {SuperIn} (split into {Segments}), out {SuperOut} (merging {Merged} packets), "
            + "segmentation errors {SegErrors}, dropped by the kernel before we read them {KernelDrops}, frames skipped (not IP, or cut short) {Skipped}; "
            + "socket GSO sends {Gso}, GRO receives {Gro}, tunnel superpackets {Tunnel} (split into {TunnelSegments}), send errors {SendErrors}{GsoOff}",
            t.SuperpacketsIn, t.SegmentsOut, t.SuperpacketsOut, t.Merged, t.SegmentationErrors, t.DeviceKernelDrops, t.DeviceFramesSkipped,
            t.GsoSends, t.GroReceives, t.TunnelSuperpackets, t.TunnelSegments, t.SendErrors,
            t.GsoDisabledReason is null ? "" : $" (GSO turned off: {t.GsoDisabledReason})");
    }

    /// <summary>"out 12 in 10 packets, ..., ICMP sent 1, ...": every counter of <see cref="LoopCounters.Rows"/>, per direction where both loops count it.</summary>
    public static string Figures(LoopCounters outbound, LoopCounters inbound) =>
        string.Join(", ", LoopCounters.Rows.Select(r =>
            r.Loops == CounterLoops.Both ? $"out {r.Field(outbound)} in {r.Field(inbound)} {r.Name}" : $"{r.Name} {r.Of(outbound, inbound)}"));

    public static string Drops(LoopCounters outbound, LoopCounters inbound)
    {
        var parts = new List<string>();
        foreach (DropReason r in Enum.GetValues<DropReason>())
        {
            long n = outbound.DropsOf(r) + inbound.DropsOf(r);
            if (n > 0)
            {
                parts.Add($"{r} {n}");
            }
        }
        return parts.Count == 0 ? "none" : string.Join(", ", parts);
    }
}
