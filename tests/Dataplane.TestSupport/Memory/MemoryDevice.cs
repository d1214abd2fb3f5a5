using System.Collections.Concurrent;
using Dataplane.TunTap;

namespace Dataplane.TestSupport;

/// <summary>An in-memory TUN: tests push packets the host "routed into the device" and see what the engine wrote back.</summary>
internal sealed class MemoryDevice : IPacketDevice
{
    private readonly BlockingCollection<byte[]> _toEngine = new();
    private CancellationTokenSource _stopWaiting = new();

    public string Name => "mem0";
    public ConcurrentQueue<byte[]> Written { get; } = new();

    /// <summary>The slot flags each written packet carried (in the order of <see cref="Written"/>).</summary>
    public ConcurrentQueue<int> WrittenFlags { get; } = new();

    /// <summary>Pretend to be a device whose kernel completes flagged checksums (a TUN with a virtio header).</summary>
    public bool CompletesChecksums { get; set; }

    private byte[]? _waited; // taken by WaitReadable, read first by the next ReadBatch

    public void Inject(byte[] packet) => _toEngine.Add(packet);

    public Readiness WaitReadable(int timeoutMs)
    {
        if (_waited is not null || FailNextRead is not null)
        {
            return Readiness.Ready;
        }
        if (!TryTake(out byte[]? item, timeoutMs))
        {
            return _stopWaiting.IsCancellationRequested ? Readiness.Woken : Readiness.Timeout;
        }
        Volatile.Write(ref _waited, item);
        return Readiness.Ready;
    }

    public int ReadBatch(PacketBatch batch, int timeoutMs)
    {
        batch.Count = 0;
        if (FailNextRead is Exception fault)
        {
            FailNextRead = null;
            throw fault;
        }
        byte[]? first = Interlocked.Exchange(ref _waited, null); // the waiting thread may set it meanwhile
        if (first is null && !TryTake(out first, timeoutMs))
        {
            return 0;
        }
        batch.Set(0, first);
        int n = 1;
        while (n < batch.Capacity && _toEngine.TryTake(out byte[]? next))
        {
            batch.Set(n++, next);
        }
        batch.Count = n;
        return n;
    }

    public int WriteBatch(PacketBatch batch)
    {
        int n = 0;
        for (int i = 0; i < batch.Count; i++)
        {
            if (batch.Lengths[i] > 0)
            {
                Written.Enqueue(batch.Packet(i).ToArray());
                WrittenFlags.Enqueue(batch.Flags[i]);
                n++;
            }
        }
        return n;
    }

    private bool TryTake(out byte[]? item, int timeoutMs)
    {
        try
        {
            return _toEngine.TryTake(out item, timeoutMs, _stopWaiting.Token);
        }
        catch (OperationCanceledException)
        {
            item = null;
            return false;
        }
    }

    /// <summary>A fault to raise from the next read (an edge that throws, for the loops' guard).</summary>
    public Exception? FailNextRead { get; set; }

    public void StopWaiting() => _stopWaiting.Cancel();

    public void ResumeWaiting()
    {
        if (_stopWaiting.IsCancellationRequested)
        {
            _stopWaiting = new CancellationTokenSource();
        }
    }

    public void Dispose()
    {
        _stopWaiting.Cancel(); // no timer: nothing to dispose, and a late StopWaiting stays harmless
        _toEngine.Dispose();
    }
}
