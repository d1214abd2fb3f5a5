using System.Globalization;
using Dataplane.Engine;
using Dataplane.Metrics;

namespace Dataplane.Node;

/// <summary>
/// What the probes see (<c>--healthz-ip</c>/<c>--healthz-port</c>, flanneld's flags):
/// <c>/healthz</c> answers 200 while the process runs and no packet loop has failed or stopped
/// under it (flanneld's answers 200 while its process runs), <c>/readyz</c> 200 once this process
/// forwards (its lease held, its peers loaded, every queue's loops running) and until it stops or
/// hands over; otherwise 503 with the reason in one line. Set by the node's steps, read by the
/// HTTP thread.
/// </summary>
internal sealed class NodeHealth
{
    private DataplaneEngine? _engine;
    private volatile string? _notReady = "starting: making the device";
    private volatile string _forwarding = "";

    /// <summary>Step 4's end: the loops run, the lease and the peers are in place.</summary>
    public void Forwarding(DataplaneEngine engine, string lease)
    {
        Volatile.Write(ref _engine, engine);
        _forwarding = lease;
        _notReady = null;
    }

    /// <summary>No longer ready: stopping, or handed over.</summary>
    public void Stopping(string why) => _notReady = why;

    public HttpAnswer Live()
    {
        DataplaneEngine? engine = Volatile.Read(ref _engine);
        if (engine?.Failure is LoopFailure failure)
        {
            return new HttpAnswer(503, $"not alive: {failure.Reason}\n");
        }
        if (engine is not null && _notReady is null && StoppedQueue(engine) is int q)
        {
            return new HttpAnswer(503, $"not alive: queue {q}'s loops are not running\n");
        }
        return new HttpAnswer(200, "ok\n");
    }

    public HttpAnswer Ready()
    {
        DataplaneEngine? engine = Volatile.Read(ref _engine);
        if (engine?.Failure is LoopFailure failure)
        {
            return new HttpAnswer(503, $"not ready: {failure.Reason}\n");
        }
        if (_notReady is string why)
        {
            return new HttpAnswer(503, $"not ready: {why}\n");
        }
        if (engine is not null && StoppedQueue(engine) is int q)
        {
            return new HttpAnswer(503, $"not ready: queue {q}'s loops are not running\n");
        }
        int peers = engine?.Table.Peers.Count ?? 0, queues = engine?.InboundLoops.Count ?? 0;
        return new HttpAnswer(200, string.Create(CultureInfo.InvariantCulture,
            $"ready: lease {_forwarding}, {peers} {(peers == 1 ? "peer" : "peers")}, {queues} {(queues == 1 ? "queue" : "queues")} forwarding\n"));
    }

    private static int? StoppedQueue(DataplaneEngine engine)
    {
        for (int q = 0; q < engine.InboundLoops.Count; q++)
        {
            if (!engine.IsRunning(q))
            {
                return q;
            }
        }
        return null;
    }
}
