using Dataplane.Engine;
using Serilog;

namespace Dataplane.Leases;

/// <summary>
/// Turns what a lease source read into the subnet tables the loops use, the same way for every
/// source: every lease but ours is a peer (<see cref="NodeIdentity.BuildTable"/>); a new table is
/// published only when the peers changed; each difference is logged in flanneld's words
/// ("Subnet added: 10.244.2.0/24 via 192.0.2.2", with the IPv6 subnet and address of a dual-stack
/// peer), and leases that cannot be used are logged when
/// that set changes. Sources may call it from their own threads; one call at a time.
/// </summary>
internal sealed class PeerTables(NodeIdentity node, Action<SubnetTable> publish, ILogger log)
{
    private readonly Lock _gate = new();
    private IReadOnlyList<Peer> _peers = [];
    private List<string> _skipped = [];

    public NodeIdentity Node => node;

    /// <summary>How many tables were published after the first (tests wait on it).</summary>
    public int Generation { get; private set; }

    /// <summary>The first table, before the loops run: every peer is logged as added.</summary>
    public SubnetTable First(ClusterSnapshot snapshot)
    {
        lock (_gate)
        {
            SubnetTable table = Build(snapshot);
            LogChanges(_peers, table.Peers, log);
            _peers = table.Peers;
            return table;
        }
    }

    /// <summary>
    /// Builds the table of <paramref name="snapshot"/> and publishes it if the peers differ from the
    /// current ones. Returns whether it published. A snapshot whose table cannot be built (overlapping
    /// or foreign subnets) is a <see cref="ConfigException"/> and changes nothing.
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
            LogChanges(_peers, table.Peers, log);
            _peers = table.Peers;
            publish(table);
            Generation++;
            return true;
        }
    }

    private SubnetTable Build(ClusterSnapshot snapshot)
    {
        var skipped = new List<string>();
        SubnetTable table;
        try
        {
            table = node.BuildTable(snapshot, skipped);
        }
        catch (ArgumentException e)
        {
            throw new ConfigException(e.Message);
        }
        if (!skipped.SequenceEqual(_skipped))
        {
            foreach (string s in skipped.Except(_skipped))
            {
                log.Warning("Lease skipped: {Reason}", s);
            }
            _skipped = skipped;
        }
        return table;
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
