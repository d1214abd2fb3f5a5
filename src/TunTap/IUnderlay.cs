namespace Dataplane.TunTap;

/// <summary>
/// The underlay side of a queue: UDP datagrams to and from peers, over IPv4, IPv6 or both. On Linux
/// it is <see cref="UnderlaySockets"/> (a socket per family); engine tests use in-memory ones.
/// </summary>
public interface IUnderlay : IDisposable
{
    /// <summary>Our endpoint on the underlay of the given family; default when this underlay has none of that family.</summary>
    UdpEndpoint LocalEndpointOf(bool ipv6);

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

    /// <summary>
    /// Wakes a loop waiting in <see cref="ReceiveBatch"/> on another thread (it returns 0 at once), and
    /// makes every later wait return at once too: the node (or this queue) is stopping.
    /// </summary>
    void StopWaiting();

    /// <summary>
    /// Undoes <see cref="StopWaiting"/>: waits block again, so a loop can run on this edge once more
    /// (a queue whose hand-over to a successor did not finish resumes).
    /// </summary>
    void ResumeWaiting();
}
