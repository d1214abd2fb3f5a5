using Dataplane.TunTap;

namespace Dataplane.Node;

/// <summary>
/// One queue of a node: its device descriptor, its IPv4 socket and, on a dual-stack node with an
/// IPv6 underlay, its IPv6 socket. <see cref="Underlay"/> is what the queue's loops use: the IPv4
/// socket alone, or both as one <see cref="DualStackSocket"/>.
/// </summary>
internal sealed class NodeQueue(IPacketDevice device, UdpBatchSocket socket, UdpBatchSocket? socket6)
{
    public IPacketDevice Device => device;
    public UdpBatchSocket Socket => socket;
    public UdpBatchSocket? Socket6 => socket6;
    public IDatagramSocket Underlay { get; } = socket6 is null ? socket : new DualStackSocket(socket, socket6);

    /// <summary>The queue's sockets (for counters).</summary>
    public IEnumerable<UdpBatchSocket> Sockets => socket6 is null ? [socket] : [socket, socket6];

    public void Dispose()
    {
        socket.Dispose();
        socket6?.Dispose();
        device.Dispose();
    }
}
