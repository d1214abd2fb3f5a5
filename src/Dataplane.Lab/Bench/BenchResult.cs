namespace Dataplane.Lab.Bench;

/// <summary>The figures of one configuration in one run (NaN where a measurement failed).</summary>
internal sealed record BenchResult(string Config, string Label)
{
    public double Tcp1Gbps { get; set; } = double.NaN;
    public double Tcp4Gbps { get; set; } = double.NaN;
    /// <summary>64-byte UDP packets per second received at the highest offered rate with at most 5% loss.</summary>
    public double Udp64Pps { get; set; } = double.NaN;
    public double Udp64LossPercent { get; set; } = double.NaN;
    /// <summary>64-byte UDP packets per second received when one iperf3 sender offers all it can, and the loss then.</summary>
    public double Udp64FullPps { get; set; } = double.NaN;
    public double Udp64FullLossPercent { get; set; } = double.NaN;
    /// <summary>ping on an idle path: the average round trip of pings 50 ms apart.</summary>
    public double RttMs { get; set; } = double.NaN;
    /// <summary>sockperf UDP ping-pong, 64-byte messages: average, median and 99th percentile latency (half a round trip, as sockperf reports it), in microseconds.</summary>
    public double PingPongAvgUs { get; set; } = double.NaN;
    public double PingPongP50Us { get; set; } = double.NaN;
    public double PingPongP99Us { get; set; } = double.NaN;
    /// <summary>CPU time of the data plane's own loop threads (dp-*) on both nodes during the one-stream TCP test, in cores per Gbit/s (NaN for kernel paths).</summary>
    public double CpuCoresPerGbps { get; set; } = double.NaN;
    public string? Error { get; set; }
}
