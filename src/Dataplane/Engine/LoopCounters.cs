namespace Dataplane.Engine;

/// <summary>
/// Counters of one loop. Exactly one thread writes them (plain increments, no locks); readers
/// sum the loops' counters and accept a slightly stale view.
/// </summary>
internal sealed class LoopCounters
{
    public static readonly int ReasonCount = Enum.GetValues<DropReason>().Length;

    public long Packets;
    public long Bytes;
    public long IcmpSent;
    public long ArpReplies;
    public long Batches;
    public readonly long[] Drops = new long[ReasonCount];

    public void Drop(DropReason reason) => Drops[(int)reason]++;

    public long DropsOf(DropReason reason) => Volatile.Read(ref Drops[(int)reason]);
}
