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
        log.Information("Counters: out {OutPackets} packets {OutBytes} bytes, in {InPackets} packets {InBytes} bytes, ICMP sent {Icmp}, ARP replies {Arp}, neighbor advertisements {Nd}, checksums completed {Completed}, outbound batches sent by the inbound loop {Assists}; drops: {Drops}",
            o.Packets, o.Bytes, i.Packets, i.Bytes, o.IcmpSent, i.ArpReplies, i.NdReplies, i.ChecksumCompleted, o.Assists, Drops(o, i));
    }

    public static void LogOffloads(NodeDevice device, ILogger log)
    {
        OffloadTotals t = OffloadTotals.Sum(device);
        log.Information("Offload counters: device superpackets in {SuperIn} (split into {Segments}), out {SuperOut} (merging {Merged} packets), segmentation errors {SegErrors}, dropped by the kernel before we read them {KernelDrops}, frames skipped (not IP, or cut short) {Skipped}; socket GSO sends {Gso}, GRO receives {Gro}, tunnel superpackets {Tunnel} (split into {TunnelSegments}), send errors {SendErrors}{GsoOff}",
            t.SuperpacketsIn, t.SegmentsOut, t.SuperpacketsOut, t.Merged, t.SegmentationErrors, t.DeviceKernelDrops, t.DeviceFramesSkipped, t.GsoSends, t.GroReceives, t.TunnelSuperpackets, t.TunnelSegments, t.SendErrors,
            t.GsoDisabledReason is null ? "" : $" (GSO turned off: {t.GsoDisabledReason})");
    }

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
