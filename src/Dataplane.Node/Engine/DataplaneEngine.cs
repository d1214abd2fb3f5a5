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
/// threads: after it returns no loop uses an edge, so the edges may be closed. A hand-over moves
/// the queues to the next process one at a time: <see cref="StopQueue"/> here, <see cref="StartQueue"/>
/// there (and here again, should the successor go away before it took every queue).
/// </summary>
internal sealed class DataplaneEngine : IDisposable
{
    private readonly TableHolder _table;
    private readonly CancellationTokenSource _stop = new();
    // Per queue, its two loop threads and their stop while they run (null when stopped).
    private readonly QueueThreads?[] _running;
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
        _running = new QueueThreads?[queues.Count];
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
        for (int q = 0; q < _queues.Count; q++)
        {
            StartQueue(q);
        }
    }

    /// <summary>
    /// Starts queue <paramref name="q"/>'s two loops (again, after <see cref="StopQueue"/>: its edges
    /// wait again first). A hand-over starts the successor's queues one by one this way.
    /// </summary>
    public void StartQueue(int q)
    {
        if (_running[q] is not null)
        {
            return;
        }
        _queues[q].Device.ResumeWaiting();
        _queues[q].Receiver.ResumeWaiting();
        var stop = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        _running[q] = new QueueThreads(stop,
            StartLoop($"dp-out-{q}", OutboundLoops[q].Run, stop.Token),
            StartLoop($"dp-in-{q}", InboundLoops[q].Run, stop.Token));
    }

    /// <summary>
    /// Stops queue <paramref name="q"/>'s loops and returns when both threads have ended: each
    /// finishes the batch it read (every packet it took from the device or the socket is sent or
    /// written) and reads nothing more; what arrives later waits in the device's ring and the
    /// socket's queue. The other queues keep running. A hand-over stops the predecessor's queues
    /// one by one this way.
    /// </summary>
    public void StopQueue(int q)
    {
        if (_running[q] is not QueueThreads running)
        {
            return;
        }
        running.Stop.Cancel();
        _queues[q].Device.StopWaiting();
        _queues[q].Receiver.StopWaiting();
        running.Outbound.Join();
        running.Inbound.Join();
        running.Stop.Dispose();
        _running[q] = null;
    }

    /// <summary>True while queue <paramref name="q"/>'s loops run.</summary>
    public bool IsRunning(int q) => _running[q] is not null;

    private Thread StartLoop(string name, Func<CancellationToken, string?> run, CancellationToken stop)
    {
        var t = new Thread(() => Guard(name, run, stop)) { Name = name, IsBackground = true };
        t.Start();
        return t;
    }

    /// <summary>The one guard around a loop thread: how the loop ended decides what the node does.</summary>
    private void Guard(string name, Func<CancellationToken, string?> run, CancellationToken stop)
    {
        try
        {
            if (run(stop) is string reason)
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
        for (int q = 0; q < _queues.Count; q++)
        {
            StopQueue(q);
        }
    }

    public void Dispose()
    {
        Stop();
        _stop.Dispose();
        _faulted.Dispose();
    }
}

/// <summary>A running queue's loop threads and what stops them.</summary>
internal sealed record QueueThreads(CancellationTokenSource Stop, Thread Outbound, Thread Inbound);

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
