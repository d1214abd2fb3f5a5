using System.Collections.Concurrent;
using Dataplane.TunTap;

namespace Dataplane.Tests;

/// <summary>An in-memory UDP socket: tests deliver datagrams "from peers" and see what the engine sent.</summary>
internal sealed class MemorySocket(UdpEndpoint local) : IDatagramSocket
{
    private readonly BlockingCollection<(byte[] Data, UdpEndpoint From, bool Truncated)> _toEngine = new();

    public UdpEndpoint LocalEndpoint { get; } = local;
    public ConcurrentQueue<(byte[] Data, UdpEndpoint To)> Sent { get; } = new();

    public void Deliver(byte[] datagram, UdpEndpoint from, bool truncated = false) => _toEngine.Add((datagram, from, truncated));

    public int ReceiveBatch(PacketBatch batch, int timeoutMs)
    {
        batch.Count = 0;
        if (!_toEngine.TryTake(out var item, timeoutMs))
        {
            return 0;
        }
        int n = 0;
        do
        {
            batch.Set(n, item.Data, item.From);
            batch.Flags[n] = item.Truncated ? PacketBatch.FlagTruncated : 0;
            n++;
        }
        while (n < batch.Capacity && _toEngine.TryTake(out item));
        batch.Count = n;
        return n;
    }

    public int SendBatch(PacketBatch batch)
    {
        int n = 0;
        for (int i = 0; i < batch.Count; i++)
        {
            if (batch.Lengths[i] > 0)
            {
                Sent.Enqueue((batch.Packet(i).ToArray(), batch.Endpoints[i]));
                n++;
            }
        }
        return n;
    }

    public void Dispose() => _toEngine.Dispose();
}
