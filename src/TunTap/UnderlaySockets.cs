namespace Dataplane.TunTap;

/// <summary>
/// A queue's underlay as wireguard-go's <c>conn/bind_std.go</c> keeps it: an IPv4 socket and an IPv6
/// socket, either of which may be absent (an IPv4-only node has no IPv6 one, an IPv6-only node no
/// IPv4 one), never swapped; each is bound to the node's public address of its family and the same
/// port, as kernel flannel.1 and flannel-v6.1 each have theirs. A datagram's endpoint chooses the
/// socket by its family.
///
/// Receive: with one socket, its own wait and receive. With both, datagrams either socket received
/// earlier are cut into the batch first; with none, one poll() waits on both sockets and the IPv4
/// socket's wake event; then each readable socket is read without waiting. A batch may hold
/// datagrams of both families; their endpoints say which.
/// Send: each socket sends the slots addressed to its family (<see cref="UdpGso"/> skips the others),
/// so a batch with datagrams for both underlays costs one sendmmsg per family that has any. A slot
/// of a family this underlay has no socket for is not sent (the loop counts it as a send failure).
/// </summary>
public sealed class UnderlaySockets : IUnderlay
{
    // The one socket when only one family is present: every call goes straight to it.
    private readonly UdpBatchSocket? _only;

    public UnderlaySockets(UdpBatchSocket? ipv4, UdpBatchSocket? ipv6)
    {
        if (ipv4 is null && ipv6 is null)
        {
            throw new ArgumentException("an underlay needs a socket of at least one family");
        }
        if (ipv4 is { LocalEndpoint.IsIpv6: true } || ipv6 is { LocalEndpoint.IsIpv6: false })
        {
            throw new ArgumentException("each family's socket goes in its own place");
        }
        Ipv4 = ipv4;
        Ipv6 = ipv6;
        _only = ipv6 is null ? ipv4 : ipv4 is null ? ipv6 : null;
    }

    /// <summary>The IPv4 socket, absent on an IPv6-only node.</summary>
    public UdpBatchSocket? Ipv4 { get; }

    /// <summary>The IPv6 socket, present on a node with an IPv6 underlay address.</summary>
    public UdpBatchSocket? Ipv6 { get; }

    /// <summary>The sockets present, IPv4 first.</summary>
    public IEnumerable<UdpBatchSocket> Sockets => new[] { Ipv4, Ipv6 }.OfType<UdpBatchSocket>();

    public UdpEndpoint LocalEndpointOf(bool ipv6) => (ipv6 ? Ipv6 : Ipv4)?.LocalEndpoint ?? default;

    /// <summary>"192.0.2.1:8472", or "192.0.2.1:8472 and [2001:db8:2::1]:8472" (logs, capture names).</summary>
    public override string ToString() => string.Join(" and ", Sockets.Select(s => s.LocalEndpoint.ToString()));

    public int ReceiveBatch(PacketBatch batch, int timeoutMs)
    {
        if (_only is not null)
        {
            return _only.ReceiveBatch(batch, timeoutMs);
        }
        UdpBatchSocket ipv4 = Ipv4!, ipv6 = Ipv6!;
        batch.Count = 0;
        int n = ipv4.CutPending(batch, 0);
        n = ipv6.CutPending(batch, n);
        if (ipv4.HasPending || ipv6.HasPending)
        {
            batch.Count = n;
            return n;
        }
        bool read4 = true, read6 = true;
        if (n == 0 && !WaitEither(ipv4, ipv6, timeoutMs, out read4, out read6))
        {
            return 0;
        }
        if (read4)
        {
            n = ipv4.ReceiveReady(batch, n);
        }
        if (read6)
        {
            n = ipv6.ReceiveReady(batch, n);
        }
        batch.Count = n;
        return n;
    }

    private static bool WaitEither(UdpBatchSocket ipv4, UdpBatchSocket ipv6, int timeoutMs, out bool read4, out bool read6)
    {
        read4 = read6 = false;
        using DescriptorEntry entry4 = ipv4.Edge.Enter();
        using DescriptorEntry entry6 = ipv6.Edge.Enter();
        if (!entry4.IsOpen || !entry6.IsOpen)
        {
            return false; // closed: the loop is stopping
        }
        return ipv4.Edge.WaitEither(entry4.Fd, entry6.Fd, timeoutMs, out read4, out read6) == Readiness.Ready;
    }

    public int SendBatch(PacketBatch batch) =>
        _only is not null ? _only.SendBatch(batch) : Ipv4!.SendBatch(batch) + Ipv6!.SendBatch(batch);

    public void StopWaiting()
    {
        Ipv4?.StopWaiting();
        Ipv6?.StopWaiting();
    }

    public void ResumeWaiting()
    {
        Ipv4?.ResumeWaiting();
        Ipv6?.ResumeWaiting();
    }

    public void Dispose()
    {
        Ipv4?.Dispose();
        Ipv6?.Dispose();
    }
}
