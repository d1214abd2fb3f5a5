namespace Dataplane.Engine;

/// <summary>
/// Counters of one loop. One thread at a time writes them (plain increments: the loop's own, or
/// for an outbound loop the inbound loop of its queue while it holds the loop's turn); readers
/// sum the loops' counters and accept a slightly stale view. Per-peer packets and bytes are kept
/// by subnet slot (<see cref="SubnetTable.PeerSlot"/>), so they survive table swaps; networks with
/// more than <see cref="MaxPeerSlots"/> subnets keep none.
///
/// Each scalar counter is described once, in <see cref="Rows"/>: that table drives the sum, the
/// Prometheus text, the stop line and <c>dataplane stats</c>. Adding a counter is one field and one row.
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
    /// <summary>
    /// Managed-heap bytes the loop's own thread has allocated since it started (set by the thread
    /// after each wait or batch, not a row: a gauge of the thread, not a count of packets). It grows
    /// while the loop starts and then stays: nothing is allocated per packet.
    /// </summary>
    public long AllocatedBytes;

    /// <summary>Every scalar counter: its field, its loops, its names (see <see cref="LoopCounterRow"/>).</summary>
    public static readonly LoopCounterRow[] Rows =
    [
        new(c => ref c.Packets, CounterLoops.Both, "packets", "dataplane_packets_total",
            "Packets handled, by direction (out: device to peers, in: peers to device)."),
        new(c => ref c.Bytes, CounterLoops.Both, "bytes", "dataplane_bytes_total",
            "Bytes handled, by direction (out: inner packets read from the device; in: datagrams received)."),
        new(c => ref c.Batches, CounterLoops.Both, "batches", "dataplane_batches_total",
            "Batches the loops handled, by direction (packets per batch: packets_total / batches_total)."),
        new(c => ref c.IcmpSent, CounterLoops.Outbound, "ICMP sent", "dataplane_icmp_errors_total",
            "ICMP errors written back into the device, and those the rate limit held back.", ("result", "sent")),
        new(c => ref c.IcmpRateLimited, CounterLoops.Outbound, "ICMP rate-limited", "dataplane_icmp_errors_total", null, ("result", "rate_limited")),
        new(c => ref c.ArpReplies, CounterLoops.Inbound, "ARP replies", "dataplane_arp_replies_total",
            "ARP requests for our VTEP address answered."),
        new(c => ref c.NdReplies, CounterLoops.Inbound, "ND replies", "dataplane_nd_replies_total",
            "IPv6 Neighbor Solicitations for our VTEP address answered."),
        new(c => ref c.ChecksumCompleted, CounterLoops.Inbound, "checksums completed", "dataplane_checksum_completed_total",
            "Inner TCP/UDP checksums a kernel peer left unfinished, completed on the way in (delivered, not dropped)."),
        new(c => ref c.Assists, CounterLoops.Outbound, "assists", "dataplane_assists_total",
            "Outbound batches the inbound loop of a queue read and sent right after writing into the device (the outbound loop slept)."),
    ];
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
            foreach (LoopCounterRow row in Rows)
            {
                row.Field(s) += Volatile.Read(ref row.Field(c));
            }
            for (int r = 0; r < ReasonCount; r++)
            {
                s.Drops[r] += Volatile.Read(ref c.Drops[r]);
            }
            s.AllocatedBytes += Volatile.Read(ref c.AllocatedBytes);
        }
        return s;
    }
}
