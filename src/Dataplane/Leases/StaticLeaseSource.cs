using Dataplane.Engine;
using Serilog;

namespace Dataplane.Leases;

/// <summary>
/// Watches the static cluster file and applies edits live. The file is re-read a short settle
/// delay after the first change of a burst (editors write in several steps); the delay is not
/// pushed back by later changes, so a file that keeps changing is still applied every
/// <see cref="SettleDelay"/>. Each read is validated whole and only then turned into a new table
/// and published; a bad edit is logged and the current table stays. Peers are diffed by subnet so
/// the log says what changed in flanneld's words.
/// </summary>
internal sealed class StaticLeaseSource : IDisposable
{
    private static readonly TimeSpan SettleDelay = TimeSpan.FromMilliseconds(150);

    private readonly string _path;
    private readonly NodeIdentity _node;
    private readonly Action<SubnetTable> _publish;
    private readonly ILogger _log;
    private readonly FileSystemWatcher _watcher;
    private readonly Thread _thread;
    private readonly AutoResetEvent _changed = new(false);
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _gate = new();
    private IReadOnlyList<Peer> _peers;

    public StaticLeaseSource(string path, NodeIdentity node, SubnetTable initial, Action<SubnetTable> publish, ILogger log)
    {
        _path = Path.GetFullPath(path);
        _node = node;
        _publish = publish;
        _log = log;
        _peers = initial.Peers;
        _watcher = new FileSystemWatcher(Path.GetDirectoryName(_path)!, Path.GetFileName(_path))
        {
            NotifyFilter = NotifyFilters.LastWrite | NotifyFilters.FileName | NotifyFilters.Size | NotifyFilters.CreationTime,
        };
        _watcher.Changed += (_, _) => Schedule();
        _watcher.Created += (_, _) => Schedule();
        _watcher.Renamed += (_, _) => Schedule();
        _watcher.EnableRaisingEvents = true;
        // A thread of its own, not the thread pool: the packet loops may keep every core busy,
        // and lease changes must still be applied while they do.
        _thread = new Thread(WatchLoop) { Name = "lease-file", IsBackground = true };
        _thread.Start();
    }

    /// <summary>How many edits were applied (tests wait on it).</summary>
    public int Generation { get; private set; }

    private void Schedule() => _changed.Set();

    private void WatchLoop()
    {
        WaitHandle[] handles = [_changed, _stop.Token.WaitHandle];
        while (WaitHandle.WaitAny(handles) == 0)
        {
            // Let the writer finish; changes during the wait are covered by the read below, and
            // changes after it set the event again, so a file that keeps changing is re-read
            // every settle delay rather than never.
            if (_stop.Token.WaitHandle.WaitOne(SettleDelay))
            {
                return;
            }
            _changed.Reset();
            try
            {
                Reload();
            }
            catch (Exception e)
            {
                // A bug, not a bad file (those are ConfigExceptions): keep watching and say so.
                _log.Error(e, "Reading the lease file failed unexpectedly; keeping the current subnets");
            }
        }
    }

    /// <summary>Re-reads the file now; also the watcher's target.</summary>
    public void Reload()
    {
        lock (_gate)
        {
            ClusterSnapshot snapshot;
            try
            {
                snapshot = ClusterFile.Load(_path);
            }
            catch (ConfigException e)
            {
                _log.Error("Ignoring the edit, keeping the current subnets: {Error}", e.Message);
                return;
            }
            if (snapshot.Config.Network != _node.Config.Network || snapshot.Config.SubnetLength != _node.Config.SubnetLength)
            {
                _log.Error("Ignoring the edit: the network config changed ({Network}/{Len}); restart the node to apply it",
                    snapshot.Config.Network, snapshot.Config.SubnetLength);
                return;
            }
            LeaseRecord? ours = snapshot.LeaseOf(_node.Lease.PublicIp);
            if (ours is null || ours.Subnet != _node.Subnet)
            {
                _log.Error("Ignoring the edit: our lease {Subnet} via {PublicIP} is gone or changed; restart the node to apply it",
                    _node.Subnet, _node.Lease.PublicIpText);
                return;
            }
            var skipped = new List<string>();
            SubnetTable table;
            try
            {
                table = _node.BuildTable(snapshot, skipped);
            }
            catch (ArgumentException e)
            {
                _log.Error("Ignoring the edit: {Error}", e.Message);
                return;
            }
            foreach (string s in skipped)
            {
                _log.Warning("Lease skipped: {Reason}", s);
            }
            LogChanges(_peers, table.Peers, _log);
            _peers = table.Peers;
            _publish(table);
            Generation++;
        }
    }

    /// <summary>"Subnet added: 10.244.2.0/24 via 192.0.2.2" / "Subnet removed: ..." for each difference.</summary>
    public static void LogChanges(IReadOnlyList<Peer> before, IReadOnlyList<Peer> after, ILogger log)
    {
        var old = before.ToDictionary(p => p.Subnet);
        var now = after.ToDictionary(p => p.Subnet);
        foreach (Peer p in after)
        {
            if (!old.TryGetValue(p.Subnet, out Peer? was))
            {
                log.Information("Subnet added: {Subnet} via {PublicIP}", p.Subnet, Encap.Ipv4Prefix.Format(p.PublicIp));
            }
            else if (was != p)
            {
                log.Information("Subnet changed: {Subnet} via {PublicIP} (was via {OldIP})", p.Subnet,
                    Encap.Ipv4Prefix.Format(p.PublicIp), Encap.Ipv4Prefix.Format(was.PublicIp));
            }
        }
        foreach (Peer p in before)
        {
            if (!now.ContainsKey(p.Subnet))
            {
                log.Information("Subnet removed: {Subnet}", p.Subnet);
            }
        }
    }

    public void Dispose()
    {
        if (_stop.IsCancellationRequested)
        {
            return; // disposed already
        }
        _watcher.Dispose();
        _stop.Cancel();
        _thread.Join();
        _changed.Dispose();
    }
}
