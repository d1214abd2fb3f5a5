using Serilog;

namespace Dataplane.Leases;

/// <summary>
/// Leases from the static cluster file (<see cref="ClusterFile"/>), the default source: no server.
///
///  1. Start: read and validate the whole file.
///  2. Acquire: our lease is the one whose PublicIP is ours; vxlan needs its VtepMAC.
///  3. Watch: a thread of its own re-reads the file a short settle delay after the first change
///     of a burst (editors write in several steps); the delay is not pushed back by later changes,
///     so a file that keeps changing is still applied every <see cref="SettleDelay"/>. Each read is
///     validated whole and only then offered to the peer tables; a bad edit, or one that changes
///     the network or our own lease (those need a restart), is logged and the current table stays.
/// </summary>
internal sealed class StaticLeaseSource(string path, ILogger log) : ILeaseSource
{
    private static readonly TimeSpan SettleDelay = TimeSpan.FromMilliseconds(150);

    private readonly string _path = Path.GetFullPath(path);
    private readonly AutoResetEvent _changed = new(false);
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _gate = new();
    private FileSystemWatcher? _watcher;
    private Thread? _thread;
    private PeerTables? _tables;

    public string Description { get; } = $"lease file {path}";

    /// <summary>How many valid edits were read since <see cref="Watch"/> (tests wait on it).</summary>
    public int Generation { get; private set; }

    public ClusterSnapshot Start() => ClusterFile.Load(path);

    public LeaseRecord Acquire(ClusterSnapshot snapshot, LeaseRequest request)
    {
        LeaseRecord lease = snapshot.LeaseOf(request)
            ?? throw new ConfigException(snapshot.Config.EnableIpv4
                ? $"{Description}: no lease has PublicIP {Encap.Ipv4Prefix.Format(request.PublicIp)} (this node)"
                : $"{Description}: no lease has PublicIPv6 {Encap.Ipv6Prefix.Format(request.PublicIpv6.GetValueOrDefault())} (this node; the network is IPv6-only)");
        if (Engine.BackendProfile.Of(request.Backend).NeedsVtepMac && (snapshot.Config.EnableIpv4 ? lease.VtepMac : lease.VtepMacV6) is null)
        {
            throw new ConfigException($"{Description}: our lease {lease.Key} has no {(snapshot.Config.EnableIpv4 ? "BackendData" : "BackendV6Data")}.VtepMAC, which vxlan needs");
        }
        return lease;
    }

    /// <summary>The file is the operator's, shared by every node: a lease in it is theirs to remove.</summary>
    public IReadOnlyList<string> Release() =>
        throw new ConfigException($"--release-lease: the leases in {_path} are the operator's: remove ours from the file by hand");

    public void Watch(PeerTables tables)
    {
        _tables = tables;
        _watcher = new FileSystemWatcher(Path.GetDirectoryName(_path)!, Path.GetFileName(_path))
        {
            NotifyFilter = NotifyFilters.LastWrite | NotifyFilters.FileName | NotifyFilters.Size | NotifyFilters.CreationTime,
        };
        _watcher.Changed += (_, _) => _changed.Set();
        _watcher.Created += (_, _) => _changed.Set();
        _watcher.Renamed += (_, _) => _changed.Set();
        _watcher.EnableRaisingEvents = true;
        // A thread of its own, not the thread pool: the packet loops may keep every core busy,
        // and lease changes must still be applied while they do.
        _thread = new Thread(WatchLoop) { Name = "lease-file", IsBackground = true };
        _thread.Start();
    }

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
                log.Error(e, "Reading the lease file failed unexpectedly; keeping the current subnets");
            }
        }
    }

    /// <summary>Re-reads the file now; also the watcher's target.</summary>
    public void Reload()
    {
        PeerTables tables = _tables ?? throw new InvalidOperationException("Reload before Watch");
        NodeIdentity node = tables.Node;
        lock (_gate)
        {
            try
            {
                ClusterSnapshot snapshot = ClusterFile.Load(_path);
                if (snapshot.Config.Network != node.Config.Network || snapshot.Config.SubnetLength != node.Config.SubnetLength)
                {
                    log.Error("Ignoring the edit: the network config changed ({Network}/{Len}); restart the node to apply it",
                        snapshot.Config.Network, snapshot.Config.SubnetLength);
                    return;
                }
                if (!node.StillHolds(snapshot))
                {
                    log.Error("Ignoring the edit: our lease {Subnet} via {PublicIP} is gone or changed; restart the node to apply it",
                        node.Subnet, node.Lease.PublicIpText);
                    return;
                }
                tables.Offer(snapshot);
                Generation++;
            }
            catch (ConfigException e)
            {
                log.Error("Ignoring the edit, keeping the current subnets: {Error}", e.Message);
            }
        }
    }

    public void Dispose()
    {
        if (_stop.IsCancellationRequested)
        {
            return; // disposed already
        }
        _watcher?.Dispose();
        _stop.Cancel();
        _thread?.Join();
        _changed.Dispose();
        _stop.Dispose();
    }
}
