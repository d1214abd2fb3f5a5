namespace Dataplane.Tests;

/// <summary>
/// The zero-allocation checks run alone, after the other tests: the thread allocation counter they
/// read moves by a whole allocation quantum (8 KB) when another thread's allocations trigger a GC
/// during a measured window, which is an artifact of the counter, not an allocation of ours.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class AllocationCollection
{
    public const string Name = "zero-allocation checks";
}
