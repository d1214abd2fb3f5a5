namespace Dataplane.TunTap;

/// <summary>The underlay side: UDP datagrams to and from peers.</summary>
public interface IDatagramSocket : IDisposable
{
    UdpEndpoint LocalEndpoint { get; }

    /// <summary>
    /// Waits up to <paramref name="timeoutMs"/>, then receives as many datagrams as are ready at
    /// <see cref="PacketBatch.Headroom"/>, with their sources. Returns the count (0 on timeout).
    /// </summary>
    int ReceiveBatch(PacketBatch batch, int timeoutMs);

    /// <summary>
    /// Sends slots 0..Count-1 whose length is non-zero to their endpoints. Returns how many were
    /// sent. Safe to call from the inbound and the outbound loop of a queue at once.
    /// </summary>
    int SendBatch(PacketBatch batch);
}
