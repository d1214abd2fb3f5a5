using System.Diagnostics;

namespace Dataplane.Engine;

/// <summary>
/// A token bucket for generated ICMP errors, one per loop (no sharing, no locks): <see cref="Rate"/>
/// tokens a second up to <see cref="Burst"/>, as Linux limits its own (icmp_msgs_per_sec 1000,
/// burst 50). Refilled from the monotonic clock when asked, so an idle bucket costs nothing.
/// </summary>
internal sealed class TokenBucket(double rate, double burst)
{
    private double _tokens = burst;
    private long _last = Stopwatch.GetTimestamp();

    public double Rate { get; } = rate;
    public double Burst { get; } = burst;

    public bool TryTake()
    {
        if (Rate <= 0)
        {
            return false;
        }
        long now = Stopwatch.GetTimestamp();
        _tokens = Math.Min(Burst, _tokens + (now - _last) * Rate / Stopwatch.Frequency);
        _last = now;
        if (_tokens < 1)
        {
            return false;
        }
        _tokens -= 1;
        return true;
    }
}
