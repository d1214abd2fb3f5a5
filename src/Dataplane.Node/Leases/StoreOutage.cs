using Serilog;

namespace Dataplane.Leases;

/// <summary>
/// A lease store's watch thread while the store is unreachable, the same for etcd and the
/// Kubernetes API: one warning when it goes away ("forwarding on the last known subnets": the
/// table stays), one line when it answers again, and a retry delay doubling from
/// <paramref name="first"/> to <paramref name="longest"/> (default 1 s to 30 s), each ± 20 % so
/// the nodes of a cluster do not all arrive in one instant when the store comes back.
/// </summary>
internal sealed class StoreOutage(string source, ILogger log, TimeSpan? first = null, TimeSpan? longest = null)
{
    private readonly TimeSpan _first = first ?? TimeSpan.FromSeconds(1), _longest = longest ?? TimeSpan.FromSeconds(30);
    private TimeSpan _next = first ?? TimeSpan.FromSeconds(1);

    public bool Away { get; private set; }

    /// <summary>A request failed: says so the first time; returns how long to wait before the next try.</summary>
    public TimeSpan Failed(string error)
    {
        if (!Away)
        {
            log.Warning("{Source}: {Error}; forwarding on the last known subnets", source, error);
            Away = true;
        }
        TimeSpan wait = _next * (0.8 + (Random.Shared.NextDouble() * 0.4));
        _next = _next * 2 < _longest ? _next * 2 : _longest;
        return wait;
    }

    /// <summary>A request succeeded: says so if the store had been away, and resets the delay.</summary>
    public void Reached()
    {
        if (Away)
        {
            log.Information("{Source} reachable again", source);
            Away = false;
            _next = _first;
        }
    }
}
