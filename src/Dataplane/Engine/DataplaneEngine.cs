using Dataplane.TunTap;

namespace Dataplane.Engine;

/// <summary>
/// The packet loops of one node: an outbound and an inbound loop over one device and one socket,
/// each on its own named thread (<c>dp-out-0</c>, <c>dp-in-0</c>). The control plane talks to the
/// engine only through <see cref="Publish"/>.
/// </summary>
internal sealed class DataplaneEngine : IDisposable
{
    private readonly TableHolder _table;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Thread> _threads = [];

    public DataplaneEngine(IPacketDevice device, IDatagramSocket socket, SubnetTable table, EngineSettings settings)
    {
        _table = new TableHolder(table);
        Outbound = new OutboundLoop(device, socket, _table, settings);
        Inbound = new InboundLoop(device, socket, _table, settings);
    }

    public OutboundLoop Outbound { get; }
    public InboundLoop Inbound { get; }
    public SubnetTable Table => _table.Current;

    /// <summary>Replaces the subnet table; the loops pick it up at their next batch.</summary>
    public void Publish(SubnetTable table) => _table.Publish(table);

    public void Start()
    {
        Start("dp-out-0", () => Outbound.Run(_stop.Token));
        Start("dp-in-0", () => Inbound.Run(_stop.Token));
    }

    private void Start(string name, Action body)
    {
        var t = new Thread(() => body()) { Name = name, IsBackground = true };
        _threads.Add(t);
        t.Start();
    }

    /// <summary>Stops the loops and waits for them (each notices within one poll timeout).</summary>
    public void Stop()
    {
        _stop.Cancel();
        foreach (Thread t in _threads)
        {
            t.Join();
        }
        _threads.Clear();
    }

    public void Dispose()
    {
        Stop();
        _stop.Dispose();
    }
}
