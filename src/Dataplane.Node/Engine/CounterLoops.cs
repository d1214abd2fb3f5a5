namespace Dataplane.Engine;

/// <summary>Which loops count a counter: the outbound ones (device to peers), the inbound ones, or both (then it is shown per direction).</summary>
internal enum CounterLoops
{
    Outbound,
    Inbound,
    Both,
}
