using BenchmarkDotNet.Attributes;
using Dataplane.Encap;

namespace Dataplane.Benchmarks;

/// <summary>The Internet checksum over a full-size segment and over a 64 KiB superpacket; a copy with it in two passes and in one.</summary>
[MemoryDiagnoser]
public class ChecksumBenchmarks
{
    private readonly byte[] _data = new byte[65536];
    private readonly byte[] _copy = new byte[65536];

    [Params(1400, 65536)]
    public int Bytes { get; set; }

    [GlobalSetup]
    public void Setup() => new Random(2).NextBytes(_data);

    [Benchmark(Description = "InternetChecksum.Compute")]
    public ushort Checksum() => InternetChecksum.Compute(_data.AsSpan(0, Bytes));

    [Benchmark(Description = "copy, then InternetChecksum.Sum of the copy (two passes)")]
    public ulong CopyThenSum()
    {
        _data.AsSpan(0, Bytes).CopyTo(_copy);
        return InternetChecksum.Sum(_copy.AsSpan(0, Bytes), 0);
    }

    [Benchmark(Description = "InternetChecksum.CopyAndSum (one pass)")]
    public ulong CopyAndSum() => InternetChecksum.CopyAndSum(_data.AsSpan(0, Bytes), _copy, 0);
}
