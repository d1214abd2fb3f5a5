namespace Dataplane.Tests;

/// <summary>
/// The zero-allocation checks run alone, after the other tests: the thread allocation counter they
/// read can move by part of an allocation quantum (8 KB) when another thread's allocations start a
/// GC during a measured window, an artifact of the counter, not an allocation of ours (such a
/// window is measured again, see <see cref="AllocationTests.AllocatedAfterWarmUp"/>).
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class AllocationCollection
{
    public const string Name = "zero-allocation checks";
}
