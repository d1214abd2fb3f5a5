using Dataplane.TunTap;

namespace Dataplane.Node;

/// <summary>
/// One queue of a node: its device descriptor, its IPv4 socket and, on a dual-stack node with an
/// IPv6 underlay, its IPv6 socket. <see cref="Underlay"/> is what the queue's loops receive on: the
/// IPv4 socket alone, or both as one <see cref="DualStackSocket"/>. With several queues each also
/// has its own send-only socket(s) on a port of its own (<see cref="UdpBatchSocket.BindSendPorts"/>):
/// <see cref="Sender"/> is what its outbound loop sends with (the underlay sockets otherwise).
/// </summary>
internal sealed class NodeQueue
{
    private readonly UdpBatchSocket? _sender, _sender6;

    public NodeQueue(IPacketDevice device, UdpBatchSocket socket, UdpBatchSocket? socket6, UdpBatchSocket? sender = null, UdpBatchSocket? sender6 = null)
    {
        Device = device;
        Socket = socket;
        Socket6 = socket6;
        _sender = sender;
        _sender6 = sender6;
        Underlay = socket6 is null ? socket : new DualStackSocket(socket, socket6);
        Sender = sender is null ? Underlay : sender6 is null ? sender : new DualStackSocket(sender, sender6);
    }

    public IPacketDevice Device { get; }
    public UdpBatchSocket Socket { get; }
    public UdpBatchSocket? Socket6 { get; }
    public IDatagramSocket Underlay { get; }
    public IDatagramSocket Sender { get; }

    /// <summary>The queue's sockets, the send-only ones too (for counters).</summary>
    public IEnumerable<UdpBatchSocket> Sockets => new[] { Socket, Socket6, _sender, _sender6 }.OfType<UdpBatchSocket>();

    public void Dispose()
    {
        foreach (UdpBatchSocket s in Sockets)
        {
            s.Dispose();
        }
        Device.Dispose();
    }
}
