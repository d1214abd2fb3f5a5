using BenchmarkDotNet.Attributes;
using Dataplane.Encap;

namespace Dataplane.Benchmarks;

/// <summary>The Internet checksum over a full-size segment and over a 64 KiB superpacket.</summary>
[MemoryDiagnoser]
public class ChecksumBenchmarks
{
    private readonly byte[] _data = new byte[65536];

    [Params(1400, 65536)]
    public int Bytes { get; set; }

    [GlobalSetup]
    public void Setup() => new Random(2).NextBytes(_data);

    [Benchmark(Description = "InternetChecksum.Compute")]
    public ushort Checksum() => InternetChecksum.Compute(_data.AsSpan(0, Bytes));
}
