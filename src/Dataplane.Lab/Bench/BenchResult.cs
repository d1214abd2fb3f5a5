namespace Dataplane.Lab.Bench;

/// <summary>The figures of one configuration in one run (NaN where a measurement failed).</summary>
internal sealed record BenchResult(string Config, string Label)
{
    public double Tcp1Gbps { get; set; } = double.NaN;
    public double Tcp4Gbps { get; set; } = double.NaN;
    /// <summary>64-byte UDP packets per second received at the highest offered rate with at most 5% loss.</summary>
    public double Udp64Pps { get; set; } = double.NaN;
    public double Udp64LossPercent { get; set; } = double.NaN;
    public double RttMs { get; set; } = double.NaN;
    public string? Error { get; set; }
}
