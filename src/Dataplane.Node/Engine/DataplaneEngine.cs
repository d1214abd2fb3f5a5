using Dataplane.TunTap;

namespace Dataplane.Engine;

/// <summary>
/// The packet loops of one node: per queue an outbound and an inbound loop over that queue's
/// edges (<see cref="EngineQueue"/>: the device descriptor, the underlay the inbound loop receives
/// on, the underlay the outbound loop sends with), each on its own named thread (<c>dp-out-Q</c>, <c>dp-in-Q</c>),
/// each with its own buffers and counters. Nothing on the packet path is shared and mutable
/// except the table reference, which the control plane replaces through <see cref="Publish"/>.
///
/// Each loop thread runs inside one guard: a loop that stops on its own (the device is gone) or
/// throws is recorded as the engine's <see cref="Failure"/> (the first one wins) and sets
/// <see cref="Faulted"/>; the node then stops through the same clean-up path as on SIGTERM. A
/// loop thread never dies silently and never takes the process with it.
///
/// <see cref="Stop"/> cancels the loops, wakes every edge's wait (<c>StopWaiting</c>) and joins the
/// threads: after it returns no loop uses an edge, so the edges may be closed.
/// </summary>
internal sealed class DataplaneEngine : IDisposable
{
    private readonly TableHolder _table;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Thread> _threads = [];
    private readonly ManualResetEventSlim _faulted = new();
    private readonly IReadOnlyList<EngineQueue> _queues;
    private LoopFailure? _failure;

    public DataplaneEngine(IPacketDevice device, IUnderlay underlay, SubnetTable table, EngineSettings settings)
        : this([new EngineQueue(device, underlay)], table, settings)
    {
    }

    /// <param name="capture">The node's captures, if it can be captured (the loops offer them packets while any runs).</param>
    public DataplaneEngine(IReadOnlyList<EngineQueue> queues, SubnetTable table, EngineSettings settings,
        Capture.CaptureHub? capture = null)
    {
        _queues = queues;
        _table = new TableHolder(table);
        OutboundLoops = [.. queues.Select(q => new OutboundLoop(q.Device, q.Sender, _table, settings, capture))];
        InboundLoops = [.. queues.Select(q => new InboundLoop(q.Device, q.Receiver, _table, settings, capture))];
        for (int q = 0; q < InboundLoops.Count; q++)
        {
            InboundLoops[q].Partner = settings.Assist ? OutboundLoops[q] : null;
        }
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

    /// <summary>Set when a loop stopped on its own or threw; <see cref="Failure"/> says why.</summary>
    public WaitHandle Faulted => _faulted.WaitHandle;
    public LoopFailure? Failure => Volatile.Read(ref _failure);

    /// <summary>Replaces the subnet table; the loops pick it up at their next batch.</summary>
    public void Publish(SubnetTable table) => _table.Publish(table);

    public void Start()
    {
        for (int q = 0; q < OutboundLoops.Count; q++)
        {
            StartLoop($"dp-out-{q}", OutboundLoops[q].Run);
            StartLoop($"dp-in-{q}", InboundLoops[q].Run);
        }
    }

    private void StartLoop(string name, Func<CancellationToken, string?> run)
    {
        var t = new Thread(() => Guard(name, run)) { Name = name, IsBackground = true };
        _threads.Add(t);
        t.Start();
    }

    /// <summary>The one guard around a loop thread: how the loop ended decides what the node does.</summary>
    private void Guard(string name, Func<CancellationToken, string?> run)
    {
        try
        {
            if (run(_stop.Token) is string reason)
            {
                Fail(new LoopFailure(name, reason, null));
            }
        }
        catch (Exception e)
        {
            Fail(new LoopFailure(name, $"loop {name} failed: {e.GetType().Name}: {e.Message}", e));
        }
    }

    private void Fail(LoopFailure failure)
    {
        if (Interlocked.CompareExchange(ref _failure, failure, null) is null)
        {
            _faulted.Set();
        }
    }

    /// <summary>Stops the loops, waking their waits, and returns when every loop thread has ended.</summary>
    public void Stop()
    {
        _stop.Cancel();
        foreach (EngineQueue q in _queues)
        {
            q.Device.StopWaiting();
            q.Receiver.StopWaiting();
        }
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

/// <summary>
/// One queue's edges: the device descriptor, the underlay its inbound loop receives on (and answers
/// ARP/ND with), and the underlay its outbound loop sends with: the same one, unless the queue sends
/// from a port of its own (several queues, see <see cref="TunTap.UdpBatchSocket.BindSendPorts"/>).
/// </summary>
internal sealed record EngineQueue(IPacketDevice Device, IUnderlay Receiver, IUnderlay Sender)
{
    /// <summary>A queue that sends with the underlay it receives on.</summary>
    public EngineQueue(IPacketDevice device, IUnderlay underlay) : this(device, underlay, underlay)
    {
    }
}
