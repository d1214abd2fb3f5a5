using Dataplane.Engine;
using Serilog;

namespace Dataplane.Node;

/// <summary>The loops' counters as one lifecycle log line (at stop), drops by reason where non-zero.</summary>
internal static class CountersReport
{
    public static void Log(DataplaneEngine engine, ILogger log)
    {
        log.Information("Counters: out {OutPackets} packets {OutBytes} bytes, in {InPackets} packets {InBytes} bytes, ICMP sent {Icmp}, ARP replies {Arp}; drops: {Drops}",
            engine.Outbound.Counters.Packets, engine.Outbound.Counters.Bytes,
            engine.Inbound.Counters.Packets, engine.Inbound.Counters.Bytes,
            engine.Outbound.Counters.IcmpSent, engine.Inbound.Counters.ArpReplies, Drops(engine));
    }

    public static void LogOffloads(NodeDevice device, ILogger log)
    {
        log.Information("Offload counters: device superpackets in {SuperIn} (split into {Segments}), out {SuperOut} (merging {Merged} packets), segmentation errors {SegErrors}; socket GSO sends {Gso}, GRO receives {Gro}, send errors {SendErrors}{GsoOff}",
            device.Tun.SuperpacketsIn, device.Tun.SegmentsOut, device.Tun.SuperpacketsOut, device.Tun.Coalesced, device.Tun.SegmentationErrors,
            device.Socket.GsoMessages, device.Socket.GroMessages, device.Socket.SendErrors,
            device.Socket.GsoDisabledReason is null ? "" : $" (GSO turned off: {device.Socket.GsoDisabledReason})");
    }

    public static string Drops(DataplaneEngine engine)
    {
        var parts = new List<string>();
        foreach (DropReason r in Enum.GetValues<DropReason>())
        {
            long n = engine.Outbound.Counters.DropsOf(r) + engine.Inbound.Counters.DropsOf(r);
            if (n > 0)
            {
                parts.Add($"{r} {n}");
            }
        }
        return parts.Count == 0 ? "none" : string.Join(", ", parts);
    }
}
