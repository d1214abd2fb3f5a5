using Dataplane.TunTap;

namespace Dataplane.TestSupport;

/// <summary>
/// An in-memory underlay for benchmarks and allocation tests: every receive fills the batch with
/// copies of fixed datagrams from a fixed source (or each from its own, <paramref name="froms"/>);
/// sends are counted and dropped. No allocation.
/// </summary>
internal sealed class ReplayUnderlay(IReadOnlyList<byte[]> datagrams, UdpEndpoint from, IReadOnlyList<UdpEndpoint>? froms = null) : IUnderlay
{
    private int _next;

    public UdpEndpoint LocalEndpointOf(bool ipv6) => default;
    public long Sent { get; private set; }
    public long SentBytes { get; private set; }

    public int ReceiveBatch(PacketBatch batch, int timeoutMs)
    {
        if (datagrams.Count == 0)
        {
            batch.Count = 0;
            return 0;
        }
        for (int i = 0; i < batch.Capacity; i++)
        {
            byte[] d = datagrams[_next];
            batch.Endpoints[i] = froms?[_next] ?? from;
            _next = _next + 1 == datagrams.Count ? 0 : _next + 1;
            d.CopyTo(batch.Slot(i)[PacketBatch.Headroom..]);
            batch.Offsets[i] = PacketBatch.Headroom;
            batch.Lengths[i] = d.Length;
            batch.Flags[i] = 0;
        }
        batch.Count = batch.Capacity;
        return batch.Count;
    }

    public int SendBatch(PacketBatch batch)
    {
        int n = 0;
        for (int i = 0; i < batch.Count; i++)
        {
            if (batch.Lengths[i] > 0)
            {
                n++;
                SentBytes += batch.Lengths[i];
            }
        }
        Sent += n;
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
