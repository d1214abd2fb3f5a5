using System.Collections.Concurrent;
using Dataplane.TunTap;

namespace Dataplane.TestSupport;

/// <summary>An in-memory underlay (one endpoint for both families): tests deliver datagrams "from peers" and see what the engine sent.</summary>
internal sealed class MemoryUnderlay(UdpEndpoint local) : IUnderlay
{
    private readonly BlockingCollection<(byte[] Data, UdpEndpoint From, bool Truncated)> _toEngine = new();
    private CancellationTokenSource _stopWaiting = new();

    public UdpEndpoint LocalEndpoint { get; } = local;
    public UdpEndpoint LocalEndpointOf(bool ipv6) => LocalEndpoint;
    public ConcurrentQueue<(byte[] Data, UdpEndpoint To)> Sent { get; } = new();

    public void Deliver(byte[] datagram, UdpEndpoint from, bool truncated = false) => _toEngine.Add((datagram, from, truncated));

    public int ReceiveBatch(PacketBatch batch, int timeoutMs)
    {
        batch.Count = 0;
        if (FailNextReceive is Exception fault)
        {
            FailNextReceive = null;
            throw fault;
        }
        (byte[] Data, UdpEndpoint From, bool Truncated) item;
        try
        {
            if (!_toEngine.TryTake(out item, timeoutMs, _stopWaiting.Token))
            {
                return 0;
            }
        }
        catch (OperationCanceledException)
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

    /// <summary>A fault to raise from the next receive (an edge that throws, for the loops' guard).</summary>
    public Exception? FailNextReceive { get; set; }

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
