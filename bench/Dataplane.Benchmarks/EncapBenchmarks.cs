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
    private DataplaneEngine _vxlan6 = null!;

    [GlobalSetup]
    public void Setup()
    {
        byte[][] packets = [.. Enumerable.Range(0, 16).Select(i => BenchPackets.Udp(0x0AF4_0102, 0x0AF4_0009u + ((uint)(2 + i) << 8), 1400))];
        SubnetTable table = BenchPackets.Table(255);
        _udp = new DataplaneEngine(new ReplayDevice(packets), new ReplayUnderlay([], default), table, new EngineSettings(BackendKind.Udp, 1, BenchPackets.OurMac, Batch));
        _vxlan = new DataplaneEngine(new ReplayDevice(packets), new ReplayUnderlay([], default), table, new EngineSettings(BackendKind.Vxlan, 1, BenchPackets.OurMac, Batch));
        byte[][] packets6 = [.. Enumerable.Range(0, 16).Select(i => BenchPackets.Udp6(BenchPackets.Network6 + 2, BenchPackets.Subnet6(2 + i) + 9, 1380))];
        _vxlan6 = new DataplaneEngine(new ReplayDevice(packets6), new ReplayUnderlay([], default), BenchPackets.Table(255, ipv6: true),
            new EngineSettings(BackendKind.Vxlan, 1, BenchPackets.OurMac, Batch) { OurVtepMacV6 = BenchPackets.OurMacV6 });
    }

    [Benchmark(Description = "VXLAN+Ethernet header write (22 B in headroom)")]
    public int VxlanHeaderWrite() => VxlanFrame.Encapsulate(_buffer, PacketBatch.Headroom, 1, new MacAddress(0x0E00_0000_0002), BenchPackets.OurMac, EthernetHeader.EtherTypeIpv4);

    [Benchmark(OperationsPerInvoke = Batch, Description = "outbound udp: copy-in + classify + lookup + encap, per packet")]
    public int OutboundUdp() => _udp.Outbound.RunOnce(0);

    [Benchmark(OperationsPerInvoke = Batch, Description = "outbound vxlan: copy-in + classify + lookup + encap, per packet")]
    public int OutboundVxlan() => _vxlan.Outbound.RunOnce(0);

    [Benchmark(OperationsPerInvoke = Batch, Description = "outbound vxlan, IPv6 inner to the IPv6 underlay: copy-in + classify + lookup6 + encap, per packet")]
    public int OutboundVxlanIpv6() => _vxlan6.Outbound.RunOnce(0);
}
