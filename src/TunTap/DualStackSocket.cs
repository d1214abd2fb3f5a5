namespace Dataplane.TunTap;

/// <summary>
/// The underlay of a dual-stack queue: the IPv4 socket and the IPv6 one (each bound to the node's
/// public address of its family and the same port, as kernel flannel.1 and flannel-v6.1 each have
/// theirs), seen by the loops as one <see cref="IDatagramSocket"/>.
///
/// Receive: datagrams either socket received earlier are cut into the batch first; with none, one
/// poll() waits on both sockets and the wake event; then each readable socket is read without
/// waiting. A batch may hold datagrams of both families; their endpoints say which.
/// Send: each socket sends the slots addressed to its family (<see cref="UdpGso"/> skips the others),
/// so a batch with datagrams for both underlays costs one sendmmsg per family that has any.
/// </summary>
public sealed class DualStackSocket(UdpBatchSocket ipv4, UdpBatchSocket ipv6Socket) : IDatagramSocket
{
    public UdpBatchSocket Ipv4 => ipv4;
    public UdpBatchSocket Ipv6 => ipv6Socket;

    /// <summary>The IPv4 socket's address (what logs and captures name as "the underlay").</summary>
    public UdpEndpoint LocalEndpoint => ipv4.LocalEndpoint;

    public UdpEndpoint LocalEndpointOf(bool ipv6) => ipv6 ? ipv6Socket.LocalEndpoint : ipv4.LocalEndpoint;

    public int ReceiveBatch(PacketBatch batch, int timeoutMs)
    {
        batch.Count = 0;
        int n = ipv4.CutPending(batch, 0);
        n = ipv6Socket.CutPending(batch, n);
        if (ipv4.HasPending || ipv6Socket.HasPending)
        {
            batch.Count = n;
            return n;
        }
        bool read4 = true, read6 = true;
        if (n == 0 && !Wait(timeoutMs, out read4, out read6))
        {
            return 0;
        }
        if (read4)
        {
            n = ipv4.ReceiveReady(batch, n);
        }
        if (read6)
        {
            n = ipv6Socket.ReceiveReady(batch, n);
        }
        batch.Count = n;
        return n;
    }

    private bool Wait(int timeoutMs, out bool read4, out bool read6)
    {
        read4 = read6 = false;
        using DescriptorEntry entry4 = ipv4.Edge.Enter();
        using DescriptorEntry entry6 = ipv6Socket.Edge.Enter();
        if (!entry4.IsOpen || !entry6.IsOpen)
        {
            return false; // closed: the loop is stopping
        }
        return ipv4.Edge.WaitEither(entry4.Fd, entry6.Fd, timeoutMs, out read4, out read6) == Readiness.Ready;
    }

    public int SendBatch(PacketBatch batch) => ipv4.SendBatch(batch) + ipv6Socket.SendBatch(batch);

    public void StopWaiting()
    {
        ipv4.StopWaiting();
        ipv6Socket.StopWaiting();
    }

    public void Dispose()
    {
        ipv4.Dispose();
        ipv6Socket.Dispose();
    }
}
