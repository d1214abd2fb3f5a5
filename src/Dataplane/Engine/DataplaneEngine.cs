using Dataplane.TunTap;

namespace Dataplane.Engine;

/// <summary>
/// The packet loops of one node: per queue an outbound and an inbound loop over that queue's
/// device descriptor and socket, each on its own named thread (<c>dp-out-Q</c>, <c>dp-in-Q</c>),
/// each with its own buffers and counters. Nothing on the packet path is shared and mutable
/// except the table reference, which the control plane replaces through <see cref="Publish"/>.
/// </summary>
internal sealed class DataplaneEngine : IDisposable
{
    private readonly TableHolder _table;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Thread> _threads = [];
    private readonly ManualResetEventSlim _faulted = new();

    public DataplaneEngine(IPacketDevice device, IDatagramSocket socket, SubnetTable table, EngineSettings settings)
        : this([(device, socket)], table, settings)
    {
    }

    public DataplaneEngine(IReadOnlyList<(IPacketDevice Device, IDatagramSocket Socket)> queues, SubnetTable table, EngineSettings settings)
    {
        _table = new TableHolder(table);
        OutboundLoops = [.. queues.Select(q => new OutboundLoop(q.Device, q.Socket, _table, settings))];
        InboundLoops = [.. queues.Select(q => new InboundLoop(q.Device, q.Socket, _table, settings))];
    }

    public IReadOnlyList<OutboundLoop> OutboundLoops { get; }
    public IReadOnlyList<InboundLoop> InboundLoops { get; }
    /// <summary>The first queue's loops (engine tests run one queue).</summary>
    public OutboundLoop Outbound => OutboundLoops[0];
    public InboundLoop Inbound => InboundLoops[0];
    public SubnetTable Table => _table.Current;

    /// <summary>The outbound and inbound counters summed over the queues (a snapshot for reports).</summary>
    public LoopCounters OutboundTotal => LoopCounters.Sum(OutboundLoops.Select(l => l.Counters));
    public LoopCounters InboundTotal => LoopCounters.Sum(InboundLoops.Select(l => l.Counters));

    /// <summary>Set when a loop stopped on its own; <see cref="Failure"/> says why.</summary>
    public WaitHandle Faulted => _faulted.WaitHandle;
    public string? Failure { get; private set; }

    /// <summary>Replaces the subnet table; the loops pick it up at their next batch.</summary>
    public void Publish(SubnetTable table) => _table.Publish(table);

    public void Start()
    {
        for (int q = 0; q < OutboundLoops.Count; q++)
        {
            OutboundLoop o = OutboundLoops[q];
            InboundLoop i = InboundLoops[q];
            Start($"dp-out-{q}", () =>
            {
                string? failure = o.Run(_stop.Token);
                if (failure is not null)
                {
                    Failure ??= failure;
                    _faulted.Set();
                }
            });
            Start($"dp-in-{q}", () => i.Run(_stop.Token));
        }
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
        _faulted.Dispose();
    }
}
