using BenchmarkDotNet.Attributes;
using Dataplane.Encap;
using Dataplane.Engine;
using Dataplane.TunTap;

namespace Dataplane.Benchmarks;

/// <summary>The control plane's work when leases change: build a new table of 65,536 peers and publish it.</summary>
[MemoryDiagnoser]
public class TableBenchmarks
{
    private List<Peer> _peers = null!;
    private readonly TableHolder _holder = new(BenchPackets.Table(1));
    private readonly Ipv4Prefix _network = new(0x0A00_0000, 8);

    [GlobalSetup]
    public void Setup()
    {
        _peers = [.. Enumerable.Range(1, 65_535).Select(i => new Peer(new Ipv4Prefix(0x0A00_0000u + ((uint)i << 8), 24),
            new UdpEndpoint(0xC633_0000u + (uint)i, 8472), new MacAddress(0x0E00_0000_0000UL + (ulong)i)))];
    }

    [Benchmark(Description = "rebuild a table of 65,536 subnets and swap it in")]
    public int RebuildAndSwap()
    {
        var table = new SubnetTable(_network, 24, new Ipv4Prefix(0x0A00_0000, 24), _peers);
        _holder.Publish(table);
        return table.Peers.Count;
    }
}
