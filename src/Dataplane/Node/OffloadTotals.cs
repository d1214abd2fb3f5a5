namespace Dataplane.Node;

/// <summary>Offload and error counters of all queues of a node, summed when a report asks.</summary>
internal sealed class OffloadTotals
{
    public long SuperpacketsIn;
    public long SegmentsOut;
    public long SuperpacketsOut;
    public long Merged;
    public long SegmentationErrors;
    public long ReadErrors;
    public long GsoSends;
    public long GroReceives;
    public long SendErrors;
    public readonly long[] SendErrorsByErrno = new long[134];
    public string? GsoDisabledReason;
}
