using Dataplane.Engine;
using Serilog;

namespace Dataplane.Leases;

/// <summary>
/// Turns what a lease source read into the subnet tables the loops use, the same way for every
/// source: every lease <see cref="LeaseCheck"/> accepts is a peer (<c>NodeIdentity.BuildTable</c>);
/// a new table is published only when the peers changed; each difference is logged in flanneld's
/// words ("Subnet added: 10.244.2.0/24 via 192.0.2.2", with the IPv6 subnet and address of a
/// dual-stack peer). A refused lease is said once when first seen (or its reason changes) and once
/// when it goes or becomes valid, however often the source reads it again; <see cref="Rejected"/>
/// holds the refused ones now (the gauge, stats, doctor). A network config in the store that is no
/// longer the one the node runs with is said once too. Sources may call it from their own threads;
/// one call at a time.
/// </summary>
internal sealed class PeerTables
{
    private readonly Lock _gate = new();
    private readonly NodeIdentity _node;
    private readonly Action<SubnetTable> _publish;
    private readonly ILogger _log;
    private readonly LeaseCheck _check;
    private IReadOnlyList<Peer> _peers = [];
    private List<string> _notes = [];
    private IReadOnlyList<RejectedLease> _rejected = [];
    private NetworkConfig? _configSaid;

    /// <param name="localAddresses">This host's addresses (a lease may neither use nor cover them; the node passes the host's); null: none.</param>
    public PeerTables(NodeIdentity node, Action<SubnetTable> publish, ILogger log, (HashSet<uint> Ipv4, HashSet<UInt128> Ipv6)? localAddresses = null)
    {
        _node = node;
        _publish = publish;
        _log = log;
        (HashSet<uint> v4, HashSet<UInt128> v6) = localAddresses ?? ([], []);
        _check = new LeaseCheck(node, v4, v6);
    }

    public NodeIdentity Node => _node;

    /// <summary>How many tables were published after the first (tests wait on it).</summary>
    public int Generation { get; private set; }

    /// <summary>The leases refused at the last read, each with its reason.</summary>
    public IReadOnlyList<RejectedLease> Rejected => Volatile.Read(ref _rejected);

    /// <summary>The first table, before the loops run: every peer is logged as added.</summary>
    public SubnetTable First(ClusterSnapshot snapshot)
    {
        lock (_gate)
        {
            SubnetTable table = Build(snapshot);
            LogChanges(_peers, table.Peers, _log);
            _peers = table.Peers;
            return table;
        }
    }

    /// <summary>
    /// Builds the table of <paramref name="snapshot"/> and publishes it if the peers differ from the
    /// current ones. Returns whether it published. Refused leases are left out, never the snapshot.
    /// </summary>
    public bool Offer(ClusterSnapshot snapshot)
    {
        lock (_gate)
        {
            SubnetTable table = Build(snapshot);
            if (table.Peers.SequenceEqual(_peers))
            {
                return false;
            }
            LogChanges(_peers, table.Peers, _log);
            _peers = table.Peers;
            _publish(table);
            Generation++;
            return true;
        }
    }

    /// <summary>Tables built from a snapshot of every lease (the first too): a store update no lease is made of builds none.</summary>
    public long Built => Interlocked.Read(ref _built);

    private long _built;

    private SubnetTable Build(ClusterSnapshot snapshot)
    {
        Interlocked.Increment(ref _built);
        var notes = new List<string>();
        SubnetTable table;
        List<RejectedLease> rejected;
        try
        {
            table = _node.BuildTable(snapshot, _check, notes, out rejected);
        }
        catch (ArgumentException e)
        {
            throw new ConfigException(e.Message); // a lease the checks let through that the table cannot hold: a bug, said as such
        }
        foreach (string s in notes.Except(_notes))
        {
            _log.Warning("Lease skipped: {Reason}", s);
        }
        _notes = notes;
        LogRejected(snapshot, rejected);
        SayConfigChange(snapshot.Config);
        return table;
    }

    /// <summary>"Lease refused: ..." when first seen or its reason changed; one line when it goes or becomes valid.</summary>
    private void LogRejected(ClusterSnapshot snapshot, List<RejectedLease> now)
    {
        var before = _rejected.ToDictionary(r => r.Name);
        var current = new Dictionary<string, RejectedLease>();
        foreach (RejectedLease r in now)
        {
            current.TryAdd(r.Name, r);
        }
        foreach (RejectedLease r in current.Values)
        {
            if (!before.TryGetValue(r.Name, out RejectedLease? was) || was != r)
            {
                _log.Warning("Lease refused ({Reason}): {Detail}", r.Reason, r.Detail);
            }
        }
        foreach (string gone in before.Keys.Where(k => !current.ContainsKey(k)))
        {
            bool valid = snapshot.Leases.Any(l => l.Name == gone);
            _log.Information(valid ? "Lease {Name} is valid now: no longer refused" : "Lease {Name} is gone: no longer refused", gone);
        }
        Volatile.Write(ref _rejected, [.. current.Values]);
    }

    /// <summary>flanneld applies a new network config on restart; so do we, and say so once.</summary>
    private void SayConfigChange(NetworkConfig stored)
    {
        NetworkConfig running = _node.Config;
        if (stored == running)
        {
            if (_configSaid is not null)
            {
                _log.Information("The network config in the store is again the one this node runs with");
                _configSaid = null;
            }
            return;
        }
        if (stored != _configSaid)
        {
            _log.Warning("The network config in the store changed ({Change}): this node keeps running with the config it started with, "
                + "and leases valid under it keep applying; restart the node to apply the new one (as flanneld does)", Differences(running, stored));
            _configSaid = stored;
        }
    }

    /// <summary>"Network 10.245.0.0/16, was 10.244.0.0/16, ...": what differs between the running config and a new one.</summary>
    public static string Differences(NetworkConfig a, NetworkConfig b)
    {
        var d = new List<string>();
        void Compare<T>(string name, T x, T y)
        {
            if (!EqualityComparer<T>.Default.Equals(x, y))
            {
                d.Add($"{name} {y}, was {x}");
            }
        }
        Compare("Network", a.Network, b.Network);
        Compare("SubnetLen", a.SubnetLength, b.SubnetLength);
        Compare("Backend", a.Backend, b.Backend);
        Compare("VNI", a.Vni, b.Vni);
        Compare("Port", a.Port, b.Port);
        Compare("IPv6Network", a.Ipv6Network?.ToString() ?? "none", b.Ipv6Network?.ToString() ?? "none");
        Compare("IPv6SubnetLen", a.Ipv6SubnetLength, b.Ipv6SubnetLength);
        return d.Count > 0 ? string.Join(", ", d) : "SubnetMin/SubnetMax";
    }

    /// <summary>"Subnet added: 10.244.2.0/24 via 192.0.2.2" / "Subnet changed: ..." / "Subnet removed: ..." for each difference.</summary>
    private static void LogChanges(IReadOnlyList<Peer> before, IReadOnlyList<Peer> after, ILogger log)
    {
        // Keyed by both halves: an IPv6-only network's peers all have the empty IPv4 subnet.
        var old = before.ToDictionary(p => (p.Subnet, p.Ipv6Subnet));
        var now = after.ToDictionary(p => (p.Subnet, p.Ipv6Subnet));
        foreach (Peer p in after)
        {
            if (!old.TryGetValue((p.Subnet, p.Ipv6Subnet), out Peer? was))
            {
                log.Information("Subnet added: {Peer:l}", p.Describe());
            }
            else if (was != p)
            {
                log.Information("Subnet changed: {Peer:l} (was {OldPeer:l})", p.Describe(), was.Describe());
            }
        }
        foreach (Peer p in before)
        {
            if (!now.ContainsKey((p.Subnet, p.Ipv6Subnet)))
            {
                log.Information("Subnet removed: {Subnet}", p.Subnet.Length == 0 ? p.Ipv6Subnet.ToString() : p.Subnet.ToString());
            }
        }
    }
}
