using Etcdserverpb;
using Mvccpb;

namespace Dataplane.Leases.Etcd;

/// <summary>
/// The leases under <c>subnets/</c> as the last list and the watch's events since left them, at
/// <see cref="Revision"/>: each value is parsed once, when it changes (an unreadable one is kept
/// with its error, for the peer tables to name), so an event costs one parse, not a re-list.
/// </summary>
internal sealed class EtcdLeaseCache(string subnetsPrefix)
{
    private readonly Dictionary<string, (LeaseRecord? Lease, string? Error)> _byKey = new(StringComparer.Ordinal);

    /// <summary>The store's revision the cache reflects: the next watch starts after it.</summary>
    public long Revision { get; private set; }

    public int Count => _byKey.Count;

    /// <summary>Everything as one list read it at <paramref name="revision"/>.</summary>
    public void Replace(IEnumerable<(string Key, byte[] Value)> values, long revision)
    {
        _byKey.Clear();
        foreach ((string key, byte[] value) in values)
        {
            _byKey[key] = Parse(key, value);
        }
        Revision = revision;
    }

    /// <summary>A watch response's events, in order; returns whether any lease changed (a progress notification only moves the revision).</summary>
    public bool Apply(WatchResponse response)
    {
        bool changed = false;
        foreach (Event e in response.Events)
        {
            string key = e.Kv.Key.ToStringUtf8();
            if (!key.StartsWith(subnetsPrefix, StringComparison.Ordinal))
            {
                continue;
            }
            key = key[subnetsPrefix.Length..];
            if (e.Type == Event.Types.EventType.Put)
            {
                _byKey[key] = Parse(key, e.Kv.Value.ToByteArray());
            }
            else
            {
                _byKey.Remove(key);
            }
            changed = true;
            Revision = Math.Max(Revision, e.Kv.ModRevision);
        }
        if (!response.Created && response.Header is { } header)
        {
            // Every event up to the header's revision has been sent (a progress notification says only that).
            // Not so for the response that creates the watch: its header is the store's revision, whose events follow.
            Revision = Math.Max(Revision, header.Revision);
        }
        return changed;
    }

    public ClusterSnapshot Snapshot(NetworkConfig config)
    {
        var leases = new List<LeaseRecord>(_byKey.Count);
        var unreadable = new List<(string, string)>();
        foreach ((string key, (LeaseRecord? lease, string? error)) in _byKey)
        {
            if (lease is not null)
            {
                leases.Add(lease);
            }
            else
            {
                unreadable.Add((key, error!));
            }
        }
        return new ClusterSnapshot(config, leases) { Unreadable = unreadable };
    }

    private (LeaseRecord?, string?) Parse(string key, byte[] value)
    {
        try
        {
            return (LeaseRecord.Parse(key, value, $"etcd {subnetsPrefix}{key}"), null);
        }
        catch (ConfigException e)
        {
            return (null, e.Message);
        }
    }
}
