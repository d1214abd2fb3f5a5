using BenchmarkDotNet.Attributes;
using Dataplane.Engine;

namespace Dataplane.Benchmarks;

/// <summary>Subnet table lookup: one range check, a shift and an array load, whatever the size, for either family.</summary>
[MemoryDiagnoser]
public class LookupBenchmarks
{
    private const int Lookups = 1024;
    private SubnetTable _table = null!;
    private uint[] _destinations = null!;
    private UInt128[] _destinations6 = null!;

    [Params(256, 65_536)]
    public int Subnets { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _table = BenchPackets.Table(Subnets - 1, ipv6: true);
        var rng = new Random(1);
        uint network = _table.Network.Address;
        uint span = ~_table.Network.Mask;
        _destinations = [.. Enumerable.Range(0, Lookups).Select(_ => network + (uint)rng.NextInt64(span))];
        _destinations6 = [.. Enumerable.Range(0, Lookups).Select(_ => BenchPackets.Subnet6(rng.Next(Subnets)) + (ulong)rng.NextInt64())];
    }

    [Benchmark(OperationsPerInvoke = Lookups, Description = "SubnetTable.Lookup6, random IPv6 destinations")]
    public int Lookup6()
    {
        int found = 0;
        SubnetTable t = _table;
        foreach (UInt128 d in _destinations6)
        {
            if (t.Lookup6(d) is not null)
            {
                found++;
            }
        }
        return found;
    }

    [Benchmark(OperationsPerInvoke = Lookups, Description = "SubnetTable.Lookup, random destinations")]
    public int Lookup()
    {
        int found = 0;
        SubnetTable t = _table;
        foreach (uint d in _destinations)
        {
            if (t.Lookup(d) is not null)
            {
                found++;
            }
        }
        return found;
    }
}
