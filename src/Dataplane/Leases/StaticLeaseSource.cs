using Dataplane.Engine;
using Serilog;

namespace Dataplane.Leases;

/// <summary>
/// Watches the static cluster file and applies edits live. An edit is re-read after a short
/// settle delay (editors write in several steps), validated whole, and only then turned into a
/// new table and published; a bad edit is logged and the current table stays. Peers are diffed
/// by subnet so the log says what changed in flanneld's words.
/// </summary>
internal sealed class StaticLeaseSource : IDisposable
{
    private static readonly TimeSpan SettleDelay = TimeSpan.FromMilliseconds(150);

    private readonly string _path;
    private readonly NodeIdentity _node;
    private readonly Action<SubnetTable> _publish;
    private readonly ILogger _log;
    private readonly FileSystemWatcher _watcher;
    private readonly Timer _timer;
    private readonly Lock _gate = new();
    private IReadOnlyList<Peer> _peers;
    private DateTime _lastWrite;

    public StaticLeaseSource(string path, NodeIdentity node, SubnetTable initial, Action<SubnetTable> publish, ILogger log)
    {
        _path = Path.GetFullPath(path);
        _node = node;
        _publish = publish;
        _log = log;
        _peers = initial.Peers;
        _lastWrite = File.GetLastWriteTimeUtc(_path);
        _timer = new Timer(_ => Reload(), null, Timeout.Infinite, Timeout.Infinite);
        _watcher = new FileSystemWatcher(Path.GetDirectoryName(_path)!, Path.GetFileName(_path))
        {
            NotifyFilter = NotifyFilters.LastWrite | NotifyFilters.FileName | NotifyFilters.Size | NotifyFilters.CreationTime,
        };
        _watcher.Changed += (_, _) => Schedule();
        _watcher.Created += (_, _) => Schedule();
        _watcher.Renamed += (_, _) => Schedule();
        _watcher.EnableRaisingEvents = true;
    }

    /// <summary>How many edits were applied (tests wait on it).</summary>
    public int Generation { get; private set; }

    private void Schedule() => _timer.Change(SettleDelay, Timeout.InfiniteTimeSpan);

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
        _watcher.Dispose();
        _timer.Dispose();
    }
}
