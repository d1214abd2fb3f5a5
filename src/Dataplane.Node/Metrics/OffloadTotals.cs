using Dataplane.TunTap;

namespace Dataplane.Metrics;

/// <summary>Offload and error counters of all queues of a node, summed when a report asks.</summary>
internal sealed class OffloadTotals
{
    public long SuperpacketsIn;
    public long SegmentsOut;
    public long SuperpacketsOut;
    public long Merged;
    public long SegmentationErrors;
    public long ReadErrors;
    public long DeviceKernelDrops;
    public long DeviceFramesSkipped;
    public long GsoSends;
    public long GroReceives;
    public long TunnelSuperpackets;
    public long TunnelSegments;
    public long SendErrors;
    public readonly long[] SendErrorsByErrno = new long[134];
    public string? GsoDisabledReason;

    /// <summary>The offload and error counters of the node's device queues and sockets, summed (a report).</summary>
    public static OffloadTotals Sum(Node.NodeDevice node)
    {
        var t = new OffloadTotals();
        foreach (Engine.EngineQueue q in node.Queues)
        {
            DeviceCounters d = q.Device.Counters;
            t.SuperpacketsIn += d.SuperpacketsIn;
            t.SegmentsOut += d.SegmentsOut;
            t.SuperpacketsOut += d.SuperpacketsOut;
            t.Merged += d.Coalesced;
            t.SegmentationErrors += d.SegmentationErrors;
            t.ReadErrors += d.ReadErrors;
            t.DeviceKernelDrops += d.KernelDrops;
            t.DeviceFramesSkipped += d.FramesSkipped;
        }
        foreach (UdpBatchSocket socket in node.Sockets)
        {
            t.Add(socket);
        }
        return t;
    }

    private void Add(UdpBatchSocket socket)
    {
        GsoSends += socket.GsoMessages;
        GroReceives += socket.GroMessages;
        TunnelSuperpackets += socket.TunnelSuperpackets;
        TunnelSegments += socket.TunnelSegments;
        SendErrors += socket.SendErrors;
        for (int e = 0; e < SendErrorsByErrno.Length; e++)
        {
            SendErrorsByErrno[e] += socket.SendErrorsByErrno[e];
        }
        GsoDisabledReason ??= socket.GsoDisabledReason;
    }
}
