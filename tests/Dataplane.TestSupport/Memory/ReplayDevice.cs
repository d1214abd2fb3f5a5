using Dataplane.TunTap;

namespace Dataplane.TestSupport;

/// <summary>
/// An in-memory device for benchmarks and allocation tests: every read fills the whole batch with
/// copies of a fixed set of packets (a copy into the pinned slot, no allocation); writes are
/// counted and dropped. Like wireguard-go's tuntest, it lets the engine run without root.
/// </summary>
internal sealed class ReplayDevice(IReadOnlyList<byte[]> packets) : IPacketDevice
{
    private int _next;

    public string Name => "replay0";
    public long Written { get; private set; }
    public long WrittenBytes { get; private set; }

    /// <summary>Always ready: every read fills the batch.</summary>
    public Readiness WaitReadable(int timeoutMs) => Readiness.Ready;

    public int ReadBatch(PacketBatch batch, int timeoutMs)
    {
        for (int i = 0; i < batch.Capacity; i++)
        {
            byte[] p = packets[_next];
            _next = _next + 1 == packets.Count ? 0 : _next + 1;
            p.CopyTo(batch.Slot(i)[PacketBatch.Headroom..]);
            batch.Offsets[i] = PacketBatch.Headroom;
            batch.Lengths[i] = p.Length;
            batch.Flags[i] = 0;
        }
        batch.Count = batch.Capacity;
        return batch.Count;
    }

    public int WriteBatch(PacketBatch batch)
    {
        int n = 0;
        for (int i = 0; i < batch.Count; i++)
        {
            if (batch.Lengths[i] > 0)
            {
                n++;
                WrittenBytes += batch.Lengths[i];
            }
        }
        Written += n;
        return n;
    }

    /// <summary>Never waits: nothing to wake.</summary>
    public void StopWaiting()
    {
    }

    public void ResumeWaiting()
    {
    }

    public void Dispose()
    {
    }
}
