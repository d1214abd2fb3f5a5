namespace Dataplane.Engine;

/// <summary>A loop counter's field, as the rows of <see cref="LoopCounters.Rows"/> reach it.</summary>
internal delegate ref long CounterField(LoopCounters counters);
