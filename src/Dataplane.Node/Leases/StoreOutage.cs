using Serilog;

namespace Dataplane.Leases;

/// <summary>
/// A lease store's watch thread while the store is unreachable, the same for etcd and the
/// Kubernetes API: one warning when it goes away ("forwarding on the last known subnets": the
/// table stays), one line when it answers again, and a retry delay doubling from 1 s to 30 s.
/// </summary>
internal sealed class StoreOutage(string source, ILogger log)
{
    private static readonly TimeSpan First = TimeSpan.FromSeconds(1), Longest = TimeSpan.FromSeconds(30);
    private TimeSpan _next = First;

    public bool Away { get; private set; }

    /// <summary>A request failed: says so the first time; returns how long to wait before the next try.</summary>
    public TimeSpan Failed(string error)
    {
        if (!Away)
        {
            log.Warning("{Source}: {Error}; forwarding on the last known subnets", source, error);
            Away = true;
        }
        TimeSpan wait = _next;
        _next = _next * 2 < Longest ? _next * 2 : Longest;
        return wait;
    }

    /// <summary>A request succeeded: says so if the store had been away, and resets the delay.</summary>
    public void Reached()
    {
        if (Away)
        {
            log.Information("{Source} reachable again", source);
            Away = false;
            _next = First;
        }
    }
}
