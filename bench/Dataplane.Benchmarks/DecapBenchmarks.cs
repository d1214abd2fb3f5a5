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
    private DataplaneEngine _vxlan6 = null!;

    [GlobalSetup]
    public void Setup()
    {
        SubnetTable table = BenchPackets.Table(255);
        Peer peer = table.Lookup(0x0AF4_0209)!;
        byte[] inner = BenchPackets.Udp(0x0AF4_0209, 0x0AF4_0102, 1400);
        inner.CopyTo(_datagram, 22);
        VxlanFrame.Encapsulate(_datagram, 22, 1, BenchPackets.OurMac, peer.VtepMac, EthernetHeader.EtherTypeIpv4);
        _udp = new DataplaneEngine(new ReplayDevice([]), new ReplayUnderlay([inner], peer.Endpoint), table, new EngineSettings(BackendKind.Udp, 1, BenchPackets.OurMac, Batch));
        _vxlan = new DataplaneEngine(new ReplayDevice([]), new ReplayUnderlay([_datagram], peer.Endpoint), table, new EngineSettings(BackendKind.Vxlan, 1, BenchPackets.OurMac, Batch));

        SubnetTable table6 = BenchPackets.Table(255, ipv6: true);
        Peer peer6 = table6.Lookup6(BenchPackets.Subnet6(2) + 9)!;
        byte[] inner6 = BenchPackets.Udp6(BenchPackets.Subnet6(2) + 9, BenchPackets.Network6 + 2, 1380);
        byte[] datagram6 = new byte[22 + inner6.Length];
        inner6.CopyTo(datagram6, 22);
        VxlanFrame.Encapsulate(datagram6, 22, 1, BenchPackets.OurMacV6, peer6.VtepMacV6, EthernetHeader.EtherTypeIpv6);
        _vxlan6 = new DataplaneEngine(new ReplayDevice([]), new ReplayUnderlay([datagram6], peer6.Endpoint6), table6,
            new EngineSettings(BackendKind.Vxlan, 1, BenchPackets.OurMac, Batch) { OurVtepMacV6 = BenchPackets.OurMacV6 });
    }

    [Benchmark(Description = "VXLAN decap checks (flags, VNI, MAC, EtherType)")]
    public VxlanDecapResult VxlanDecap() => VxlanFrame.Decapsulate(_datagram, 1, BenchPackets.OurMac, out _, out _, out _);

    [Benchmark(Description = "inner IPv4 header validation with checksum")]
    public IpParseResult Ipv4Validate() => Ipv4Header.TryRead(_datagram.AsSpan(22), out _);

    [Benchmark(OperationsPerInvoke = Batch, Description = "inbound udp: copy-in + peer check + validate, per packet")]
    public int InboundUdp() => _udp.Inbound.RunOnce(0);

    [Benchmark(OperationsPerInvoke = Batch, Description = "inbound vxlan: copy-in + peer check + decap + validate, per packet")]
    public int InboundVxlan() => _vxlan.Inbound.RunOnce(0);

    [Benchmark(OperationsPerInvoke = Batch, Description = "inbound vxlan, IPv6 over the IPv6 underlay: copy-in + peer check + decap + validate, per packet")]
    public int InboundVxlanIpv6() => _vxlan6.Inbound.RunOnce(0);
}
