using BenchmarkDotNet.Attributes;
using Dataplane.Encap;
using Dataplane.Engine;
using Dataplane.TestSupport;
using Dataplane.TunTap;

namespace Dataplane.Benchmarks;

/// <summary>Outbound: the header write alone, and the whole path (classify, lookup, encapsulate) per packet over in-memory edges.</summary>
[MemoryDiagnoser]
public class EncapBenchmarks
{
    private const int Batch = 64;
    private readonly byte[] _buffer = GC.AllocateArray<byte>(2048, pinned: true);
    private DataplaneEngine _udp = null!;
    private DataplaneEngine _vxlan = null!;

    [GlobalSetup]
    public void Setup()
    {
        byte[][] packets = [.. Enumerable.Range(0, 16).Select(i => BenchPackets.Udp(0x0AF4_0102, 0x0AF4_0009u + ((uint)(2 + i) << 8), 1400))];
        SubnetTable table = BenchPackets.Table(255);
        _udp = new DataplaneEngine(new ReplayDevice(packets), new ReplaySocket([], default), table, new EngineSettings(BackendKind.Udp, 1, BenchPackets.OurMac, Batch));
        _vxlan = new DataplaneEngine(new ReplayDevice(packets), new ReplaySocket([], default), table, new EngineSettings(BackendKind.Vxlan, 1, BenchPackets.OurMac, Batch));
    }

    [Benchmark(Description = "VXLAN+Ethernet header write (22 B in headroom)")]
    public int VxlanHeaderWrite() => VxlanFrame.Encapsulate(_buffer, PacketBatch.Headroom, 1, new MacAddress(0x0E00_0000_0002), BenchPackets.OurMac, EthernetHeader.EtherTypeIpv4);

    [Benchmark(OperationsPerInvoke = Batch, Description = "outbound udp: copy-in + classify + lookup + encap, per packet")]
    public int OutboundUdp() => _udp.Outbound.RunOnce(0);

    [Benchmark(OperationsPerInvoke = Batch, Description = "outbound vxlan: copy-in + classify + lookup + encap, per packet")]
    public int OutboundVxlan() => _vxlan.Outbound.RunOnce(0);
}
