using BenchmarkDotNet.Attributes;
using Dataplane.Encap;
using Dataplane.Engine;
using Dataplane.TestSupport;

namespace Dataplane.Benchmarks;

/// <summary>Inbound: VXLAN header checks alone, and the whole validate-and-unwrap path per packet over in-memory edges.</summary>
[MemoryDiagnoser]
public class DecapBenchmarks
{
    private const int Batch = 64;
    private readonly byte[] _datagram = new byte[22 + 1428];
    private DataplaneEngine _udp = null!;
    private DataplaneEngine _vxlan = null!;

    [GlobalSetup]
    public void Setup()
    {
        SubnetTable table = BenchPackets.Table(255);
        Peer peer = table.Lookup(0x0AF4_0209)!;
        byte[] inner = BenchPackets.Udp(0x0AF4_0209, 0x0AF4_0102, 1400);
        inner.CopyTo(_datagram, 22);
        VxlanFrame.Encapsulate(_datagram, 22, 1, BenchPackets.OurMac, peer.VtepMac, EthernetHeader.EtherTypeIpv4);
        _udp = new DataplaneEngine(new ReplayDevice([]), new ReplaySocket([inner], peer.Endpoint), table, new EngineSettings(BackendKind.Udp, 1, BenchPackets.OurMac, Batch));
        _vxlan = new DataplaneEngine(new ReplayDevice([]), new ReplaySocket([_datagram], peer.Endpoint), table, new EngineSettings(BackendKind.Vxlan, 1, BenchPackets.OurMac, Batch));
    }

    [Benchmark(Description = "VXLAN decap checks (flags, VNI, MAC, EtherType)")]
    public VxlanDecapResult VxlanDecap() => VxlanFrame.Decapsulate(_datagram, 1, BenchPackets.OurMac, out _, out _, out _);

    [Benchmark(Description = "inner IPv4 header validation with checksum")]
    public IpParseResult Ipv4Validate() => Ipv4Header.TryRead(_datagram.AsSpan(22), out _);

    [Benchmark(OperationsPerInvoke = Batch, Description = "inbound udp: copy-in + peer check + validate, per packet")]
    public int InboundUdp() => _udp.Inbound.RunOnce(0);

    [Benchmark(OperationsPerInvoke = Batch, Description = "inbound vxlan: copy-in + peer check + decap + validate, per packet")]
    public int InboundVxlan() => _vxlan.Inbound.RunOnce(0);
}
