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
    public long IcmpRateLimited;
    public long ArpReplies;
    public long Batches;
    public readonly long[] Drops = new long[ReasonCount];

    public void Drop(DropReason reason) => Drops[(int)reason]++;

    public long DropsOf(DropReason reason) => Volatile.Read(ref Drops[(int)reason]);

    /// <summary>A new set holding the sum of <paramref name="all"/> (read racily: a report, not a ledger).</summary>
    public static LoopCounters Sum(IEnumerable<LoopCounters> all)
    {
        var s = new LoopCounters();
        foreach (LoopCounters c in all)
        {
            s.Packets += Volatile.Read(ref c.Packets);
            s.Bytes += Volatile.Read(ref c.Bytes);
            s.IcmpSent += Volatile.Read(ref c.IcmpSent);
            s.IcmpRateLimited += Volatile.Read(ref c.IcmpRateLimited);
            s.ArpReplies += Volatile.Read(ref c.ArpReplies);
            s.Batches += Volatile.Read(ref c.Batches);
            for (int r = 0; r < ReasonCount; r++)
            {
                s.Drops[r] += Volatile.Read(ref c.Drops[r]);
            }
        }
        return s;
    }
}
