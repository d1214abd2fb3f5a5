namespace Dataplane.Engine;

/// <summary>
/// Counters of one loop. One thread at a time writes them (plain increments: the loop's own, or
/// for an outbound loop the inbound loop of its queue while it holds the loop's turn); readers
/// sum the loops' counters and accept a slightly stale view. Per-peer packets and bytes are kept
/// by subnet slot (<see cref="SubnetTable.PeerSlot"/>), so they survive table swaps; networks with
/// more than <see cref="MaxPeerSlots"/> subnets keep none.
/// </summary>
internal sealed class LoopCounters(int peerSlots = 0)
{
    public const int MaxPeerSlots = 1 << 16;

    public static readonly int ReasonCount = Enum.GetValues<DropReason>().Length;

    public long Packets;
    public long Bytes;
    public long IcmpSent;
    public long IcmpRateLimited;
    public long ArpReplies;
    /// <summary>IPv6 Neighbor Solicitations for our VTEP address answered (the IPv6 counterpart of ARP).</summary>
    public long NdReplies;
    /// <summary>Inner TCP/UDP checksums a kernel peer left unfinished, completed on the way in (not drops).</summary>
    public long ChecksumCompleted;
    public long Batches;
    /// <summary>Outbound batches the inbound loop of the queue read and sent on this loop's behalf.</summary>
    public long Assists;
    public readonly long[] Drops = new long[ReasonCount];
    public readonly long[] PeerPackets = new long[peerSlots <= MaxPeerSlots ? peerSlots : 0];
    public readonly long[] PeerBytes = new long[peerSlots <= MaxPeerSlots ? peerSlots : 0];

    public void CountPeer(int slot, int bytes)
    {
        if ((uint)slot < (uint)PeerPackets.Length)
        {
            PeerPackets[slot]++;
            PeerBytes[slot] += bytes;
        }
    }

    public void Drop(DropReason reason) => Drops[(int)reason]++;

    public long DropsOf(DropReason reason) => Volatile.Read(ref Drops[(int)reason]);

    /// <summary>A new set holding the sum of <paramref name="all"/> (read racily: a report, not a ledger).</summary>
    public static LoopCounters Sum(IEnumerable<LoopCounters> all)
    {
        LoopCounters[] list = [.. all];
        var s = new LoopCounters(list.Length == 0 ? 0 : list[0].PeerPackets.Length);
        foreach (LoopCounters c in list)
        {
            for (int p = 0; p < Math.Min(s.PeerPackets.Length, c.PeerPackets.Length); p++)
            {
                s.PeerPackets[p] += Volatile.Read(ref c.PeerPackets[p]);
                s.PeerBytes[p] += Volatile.Read(ref c.PeerBytes[p]);
            }
            s.Packets += Volatile.Read(ref c.Packets);
            s.Bytes += Volatile.Read(ref c.Bytes);
            s.IcmpSent += Volatile.Read(ref c.IcmpSent);
            s.IcmpRateLimited += Volatile.Read(ref c.IcmpRateLimited);
            s.ArpReplies += Volatile.Read(ref c.ArpReplies);
            s.NdReplies += Volatile.Read(ref c.NdReplies);
            s.ChecksumCompleted += Volatile.Read(ref c.ChecksumCompleted);
            s.Batches += Volatile.Read(ref c.Batches);
            s.Assists += Volatile.Read(ref c.Assists);
            for (int r = 0; r < ReasonCount; r++)
            {
                s.Drops[r] += Volatile.Read(ref c.Drops[r]);
            }
        }
        return s;
    }
}
