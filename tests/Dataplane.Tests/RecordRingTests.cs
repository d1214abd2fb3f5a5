using Dataplane.Capture;

namespace Dataplane.Tests;

/// <summary>The capture's lock-free ring: first in first out, and under many threads at once every record is in exactly one place.</summary>
public class RecordRingTests
{
    [Fact]
    public void It_gives_records_back_in_order_lap_after_lap_and_says_when_empty()
    {
        var ring = new RecordRing(5);
        CaptureRecord[] records = [.. Enumerable.Range(0, 5).Select(_ => new CaptureRecord(1))];
        Array.ForEach(records, ring.Enqueue);
        for (int lap = 0; lap < 7; lap++) // around its cells several times
        {
            for (int i = 0; i < records.Length; i++)
            {
                Assert.True(ring.TryDequeue(out CaptureRecord? r));
                Assert.Same(records[i], r);
                ring.Enqueue(r);
            }
        }
        for (int i = 0; i < records.Length; i++)
        {
            Assert.True(ring.TryDequeue(out _));
        }
        Assert.False(ring.TryDequeue(out CaptureRecord? none));
        Assert.Null(none);
    }

    [Fact]
    public void Under_four_producers_and_two_consumers_no_record_is_lost_or_doubled()
    {
        // As a capture uses them (loops take a free record and queue it, the writer hands it back),
        // with every side contended: each waits for a record rather than giving up.
        const int Records = 16, PerProducer = 100_000, Total = 4 * PerProducer;
        var free = new RecordRing(Records);
        var queue = new RecordRing(Records);
        CaptureRecord[] all = [.. Enumerable.Range(0, Records).Select(_ => new CaptureRecord(1))];
        Array.ForEach(all, free.Enqueue);
        long produced = 0, moved = 0;
        // Each side takes a turn (one of Total), then waits for a record; a producer touches each (a record held twice loses a count).
        void Move(RecordRing from, RecordRing to, ref long turns, bool touch)
        {
            while (Interlocked.Increment(ref turns) <= Total)
            {
                CaptureRecord? r;
                while (!from.TryDequeue(out r))
                {
                    Thread.Yield();
                }
                if (touch)
                {
                    r.Length++;
                }
                to.Enqueue(r);
            }
        }
        Thread[] threads =
        [
            .. Enumerable.Range(0, 4).Select(_ => new Thread(() => Move(free, queue, ref produced, touch: true)) { IsBackground = true }),
            .. Enumerable.Range(0, 2).Select(_ => new Thread(() => Move(queue, free, ref moved, touch: false)) { IsBackground = true }),
        ];
        Array.ForEach(threads, t => t.Start());
        Assert.All(threads, t => Assert.True(t.Join(TimeSpan.FromSeconds(60)), "a thread did not finish"));
        Assert.Equal(Total, all.Sum(r => (long)r.Length));
        var back = new HashSet<CaptureRecord>();
        while (free.TryDequeue(out CaptureRecord? r))
        {
            Assert.True(back.Add(r));
        }
        Assert.Equal(Records, back.Count);
    }
}
