using System.Collections.Concurrent;
using System.Text.Json;
using Dataplane.Leases.Schema;
using Etcdserverpb;

namespace Dataplane.Leases.Etcd;

/// <summary>
/// Watch, don't poll (flanneld's pkg/subnet/etcd does the same): what a node costs etcd is one list
/// at start and one watch stream, whatever the size of the cluster.
///
///  - A pump (an async task) runs one watch of flannel's keys (the config and <c>subnets/</c>) from
///    the cache's revision + 1 and
///    queues every response; the loop thread applies them to the cache as deltas and offers the
///    snapshot to the peer tables only when a lease changed (progress notifications move the
///    revision, nothing else).
///  - A broken stream (etcd stopped, a partition found by keep-alive pings) is said once
///    (<see cref="StoreOutage"/>) and the watch resumes from the last revision seen, after
///    0.2 s doubling to 2 s, jittered so thousands of nodes do not arrive in one instant; the
///    changes made meanwhile arrive as its first events. Nothing is listed again.
///  - Only when etcd answers that the revision was compacted (the node was away longer than etcd
///    keeps history) is everything listed again, said in one line. A safety resync lists too,
///    every <see cref="EtcdOptions.Resync"/> (10 min) ± 10 %.
///  - Our lease is renewed before it expires, and written again when no lease holds our address
///    with our subnet (at most once per 5 s).
/// </summary>
internal sealed partial class EtcdLeaseSource
{
    /// <summary>Our lease, found gone or changed, is written again at most this often (two nodes claiming one key never make a storm).</summary>
    private static readonly TimeSpan RewriteGap = TimeSpan.FromSeconds(5);

    // What each pump delivered: a WatchResponse, or the Exception that ended its stream. Items of a stopped pump are dropped.
    private readonly ConcurrentQueue<(int Pump, object Item)> _received = new();
    private CancellationTokenSource? _pump;
    private int _pumpNumber;
    private DateTime _lastRewrite = DateTime.MinValue;

    public void Watch(PeerTables tables)
    {
        _ = Store; // used before Start: fail here, not on the watch thread
        _thread = new Thread(() => Loop(tables)) { Name = "etcd-leases", IsBackground = true };
        _thread.Start();
    }

    private void Loop(PeerTables tables)
    {
        var outage = new StoreOutage(Description, log, TimeSpan.FromSeconds(0.2), TimeSpan.FromSeconds(2));
        DateTime resyncAt = Jittered(options.Resync);
        DateTime pumpAt = DateTime.UtcNow;
        WaitHandle[] handles = [_wake, _stop.Token.WaitHandle];
        while (true)
        {
            if (_pump is null && DateTime.UtcNow >= pumpAt)
            {
                StartPump(_cache!.Revision + 1);
            }
            DateTime next = Min(_leaseExpires - options.RenewMargin, resyncAt, _pump is null ? pumpAt : DateTime.MaxValue);
            TimeSpan wait = next - DateTime.UtcNow;
            if (WaitHandle.WaitAny(handles, wait < TimeSpan.Zero ? TimeSpan.Zero : wait > TimeSpan.FromHours(1) ? TimeSpan.FromHours(1) : wait) == 1)
            {
                StopPump();
                return;
            }
            try
            {
                bool changed = Drain(outage, ref pumpAt);
                if (DateTime.UtcNow >= resyncAt)
                {
                    ReadSnapshot();
                    resyncAt = Jittered(options.Resync);
                    changed = true;
                }
                ClusterSnapshot snapshot = _cache!.Snapshot(_config!);
                if (changed)
                {
                    tables.Offer(snapshot); // the peers first: keeping our lease may wait on etcd
                }
                KeepOurLease(tables.Node, snapshot, changed);
            }
            catch (Exception e) when (e is ConfigException || EtcdStore.IsRequestFailure(e) && !_stop.IsCancellationRequested)
            {
                outage.Failed(e is ConfigException ? e.Message : EtcdStore.Describe(e));
            }
        }
    }

    /// <summary>Applies what the watch delivered; a failed stream is retried after the outage's delay, a compacted revision lists again.</summary>
    private bool Drain(StoreOutage outage, ref DateTime pumpAt)
    {
        bool changed = false;
        while (_received.TryDequeue(out (int Pump, object Item) received))
        {
            object item = received.Item;
            if (_pump is null || received.Pump != _pumpNumber)
            {
                continue; // a stopped pump's last words
            }
            if (item is Exception e)
            {
                StopPump();
                pumpAt = DateTime.UtcNow + outage.Failed(e is EndOfStreamException ? e.Message : EtcdStore.Describe(e));
                continue;
            }
            var response = (WatchResponse)item;
            outage.Reached();
            if (response.CompactRevision > 0 || response.Canceled)
            {
                log.Warning("{Source}: the watch from revision {Revision} was {Why}: listing the leases again", Description, _cache!.Revision + 1,
                    response.CompactRevision > 0 ? $"compacted (etcd keeps revisions from {response.CompactRevision})" : $"cancelled ({response.CancelReason})");
                StopPump();
                ReadSnapshot();
                pumpAt = DateTime.UtcNow;
                return true;
            }
            changed |= ConfigChanged(response);
            changed |= _cache!.Apply(response);
        }
        return changed;
    }

    /// <summary>
    /// The network config, written anew under a running node: the peer tables say once that it is not
    /// the one the node runs with (it applies on restart, as flanneld's). One that does not parse is said
    /// once and the last good one kept.
    /// </summary>
    private bool ConfigChanged(WatchResponse response)
    {
        EtcdStore store = Store;
        bool changed = false;
        foreach (Mvccpb.Event e in response.Events.Where(e => e.Kv.Key.ToStringUtf8() == store.ConfigKey))
        {
            string where = $"etcd {store.ConfigKey}";
            if (e.Type != Mvccpb.Event.Types.EventType.Put)
            {
                log.Warning("{Where} was deleted: this node keeps the network config it runs with; new nodes cannot start until it is back", where);
                continue;
            }
            try
            {
                using JsonDocument doc = FlannelDocument.Parse(e.Kv.Value.Span, where);
                _config = NetworkConfig.Parse(doc.RootElement, where);
                changed = true;
            }
            catch (ConfigException bad)
            {
                log.Warning("{Error}: this node keeps the network config it runs with", bad.Message);
            }
        }
        return changed;
    }

    /// <summary>Renews our lease when due; writes it again when it vanished (at most once per <see cref="RewriteGap"/>).</summary>
    private void KeepOurLease(NodeIdentity node, ClusterSnapshot snapshot, bool changed)
    {
        bool due = DateTime.UtcNow > _leaseExpires - options.RenewMargin;
        if (due || changed && !node.StillHolds(snapshot) && DateTime.UtcNow >= _lastRewrite + RewriteGap)
        {
            _lastRewrite = due ? _lastRewrite : DateTime.UtcNow;
            Renew(node);
        }
    }

    private void StartPump(long fromRevision)
    {
        var pump = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        _pump = pump;
        int number = ++_pumpNumber;
        EtcdStore store = Store;
        _ = Task.Run(async () =>
        {
            try
            {
                await store.WatchAsync(fromRevision, r =>
                {
                    _received.Enqueue((number, r));
                    _wake.Set();
                }, pump.Token).ConfigureAwait(false);
                throw new EndOfStreamException("etcd ended the watch");
            }
            catch (Exception e) when (!pump.IsCancellationRequested)
            {
                _received.Enqueue((number, e));
                _wake.Set();
            }
            catch (Exception)
            {
                // stopped: nothing to say
            }
        });
    }

    private void StopPump()
    {
        _pump?.Cancel();
        _pump?.Dispose();
        _pump = null;
    }

    private static DateTime Jittered(TimeSpan period) => DateTime.UtcNow + period * (0.9 + (Random.Shared.NextDouble() * 0.2));

    private static DateTime Min(DateTime a, DateTime b, DateTime c) => a < b ? (a < c ? a : c) : (b < c ? b : c);
}
