namespace Dataplane.Engine;

/// <summary>
/// One counter of the loops, described once: the field the loops increment, which loops count it,
/// its name in the stop line and in <c>dataplane stats</c>, and its Prometheus family. Rows of one
/// family follow each other: the first gives the help text, each gives its own <see cref="Label"/>.
/// </summary>
internal sealed record LoopCounterRow(CounterField Field, CounterLoops Loops, string Name, string Metric, string? Help,
    (string Key, string Value)? Label = null)
{
    /// <summary>The sample's key in the Prometheus text (what <c>stats</c> looks up), for a row counted by one kind of loop.</summary>
    public string SampleKey => Label is (string key, string value) ? $"{Metric}{{{key}=\"{value}\"}}" : Metric;

    /// <summary>The value summed over <paramref name="outbound"/> and <paramref name="inbound"/> by the loops that count it.</summary>
    public long Of(LoopCounters outbound, LoopCounters inbound) => Loops switch
    {
        CounterLoops.Outbound => Volatile.Read(ref Field(outbound)),
        CounterLoops.Inbound => Volatile.Read(ref Field(inbound)),
        _ => Volatile.Read(ref Field(outbound)) + Volatile.Read(ref Field(inbound)),
    };
}
