using System.Collections.Concurrent;
using Dataplane.TunTap;

namespace Dataplane.Tests;

/// <summary>An in-memory TUN: tests push packets the host "routed into the device" and see what the engine wrote back.</summary>
internal sealed class MemoryDevice : IPacketDevice
{
    private readonly BlockingCollection<byte[]> _toEngine = new();

    public string Name => "mem0";
    public ConcurrentQueue<byte[]> Written { get; } = new();

    public void Inject(byte[] packet) => _toEngine.Add(packet);

    public int ReadBatch(PacketBatch batch, int timeoutMs)
    {
        batch.Count = 0;
        if (!_toEngine.TryTake(out byte[]? first, timeoutMs))
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
                n++;
            }
        }
        return n;
    }

    public void Dispose() => _toEngine.Dispose();
}
