using System.Diagnostics.CodeAnalysis;
using System.Numerics;

namespace Dataplane.Capture;

/// <summary>
/// A bounded queue of capture records for many producers and consumers that never locks and never
/// allocates after it is made (D. Vyukov's bounded MPMC queue: each cell carries a sequence number
/// that says whose turn it is; a position is claimed with one compare-and-swap). The loops offer
/// records from several threads at once; a lock there (as in a bounded channel) is inflated on its
/// first contention, which allocates on a loop's thread.
///
/// It is made for a fixed set of records that never outnumber its cells (twice as many), so it is
/// never really full: a cell found taken is one a consumer is part-way through handing back (it
/// has claimed the position and not yet published the cell's next turn), and <see cref="Enqueue"/>
/// waits the few instructions that takes instead of failing, so no record is ever lost.
/// </summary>
internal sealed class RecordRing
{
    private struct Cell
    {
        public long Sequence;
        public CaptureRecord? Item;
    }

    private readonly Cell[] _cells;
    private readonly long _mask;
    private long _enqueueAt;
    private long _dequeueAt;

    /// <param name="records">The records that will ever be in it at once; it makes twice as many cells (a power of two).</param>
    public RecordRing(int records)
    {
        int size = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(records, 1) * 2);
        _cells = new Cell[size];
        _mask = size - 1;
        for (int i = 0; i < size; i++)
        {
            _cells[i].Sequence = i;
        }
    }

    /// <summary>Queues a record (one of those the ring was made for: there is always a cell for it).</summary>
    public void Enqueue(CaptureRecord item)
    {
        var wait = new SpinWait();
        while (!TryEnqueue(item))
        {
            wait.SpinOnce(); // a consumer is handing the cell back: wait for it to finish
        }
    }

    private bool TryEnqueue(CaptureRecord item)
    {
        long at = Volatile.Read(ref _enqueueAt);
        while (true)
        {
            ref Cell cell = ref _cells[at & _mask];
            long turn = Volatile.Read(ref cell.Sequence) - at;
            if (turn == 0)
            {
                if (Interlocked.CompareExchange(ref _enqueueAt, at + 1, at) == at)
                {
                    cell.Item = item;
                    Volatile.Write(ref cell.Sequence, at + 1); // now the consumer's turn at this cell
                    return true;
                }
                at = Volatile.Read(ref _enqueueAt); // another producer took it: try the next
            }
            else if (turn < 0)
            {
                return false; // the cell's consumer from one lap ago has not published its next turn yet
            }
            else
            {
                at = Volatile.Read(ref _enqueueAt);
            }
        }
    }

    /// <summary>False when empty.</summary>
    public bool TryDequeue([NotNullWhen(true)] out CaptureRecord? item)
    {
        long at = Volatile.Read(ref _dequeueAt);
        while (true)
        {
            ref Cell cell = ref _cells[at & _mask];
            long turn = Volatile.Read(ref cell.Sequence) - (at + 1);
            if (turn == 0)
            {
                if (Interlocked.CompareExchange(ref _dequeueAt, at + 1, at) == at)
                {
                    item = cell.Item!; // published before the sequence said so
                    cell.Item = null;
                    Volatile.Write(ref cell.Sequence, at + _mask + 1); // the producers' turn, one lap on
                    return true;
                }
                at = Volatile.Read(ref _dequeueAt);
            }
            else if (turn < 0)
            {
                item = null;
                return false; // nothing written here yet: empty
            }
            else
            {
                at = Volatile.Read(ref _dequeueAt);
            }
        }
    }
}
