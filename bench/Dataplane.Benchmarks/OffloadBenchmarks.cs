using System.Buffers.Binary;
using BenchmarkDotNet.Attributes;
using Dataplane.Encap;
using Dataplane.Encap.Offload;

namespace Dataplane.Benchmarks;

/// <summary>
/// Segmentation offload work done in the edges: a 64 KiB TSO superpacket split, its segments
/// coalesced back, and 64 small UDP datagrams of one flow merged into one USO superpacket.
/// </summary>
[MemoryDiagnoser]
public class OffloadBenchmarks
{
    private const int Mss = 1398; // 1450 device MTU - 20 IPv4 - 32 TCP with timestamps
    private byte[] _super = null!;
    private VirtioNetHeader _header;
    private int _l4, _headers, _segments;
    private readonly byte[] _out = GC.AllocateArray<byte>(2048, pinned: true);
    private Memory<byte>[] _segmentMemory = null!;
    private readonly GroCoalescer _coalescer = new(64);
    private readonly GroCoalescer _udpCoalescer = new(64, mergeUdp: true);
    private Memory<byte>[] _datagrams = null!;

    [GlobalSetup]
    public void Setup()
    {
        int payload = 65535 - 52;
        _super = new byte[52 + payload];
        Ipv4Header.Write(_super, _super.Length, 1, 0x4000, 64, Ipv4Header.ProtocolTcp, 0x0AF4_0102, 0x0AF4_0202);
        _super[32] = 0x80; // 32-byte TCP header
        _super[33] = 0x10;
        new Random(1).NextBytes(_super.AsSpan(52));
        ulong pseudo = InternetChecksum.PseudoHeaderIpv4(0x0AF4_0102, 0x0AF4_0202, 6, _super.Length - 20);
        BinaryPrimitives.WriteUInt16BigEndian(_super.AsSpan(36), (ushort)~InternetChecksum.Finish(pseudo));
        _header = new VirtioNetHeader(1, VirtioNetHeader.GsoTcpV4, 52, Mss, 20, 16);
        Segmenter.TryDescribe(_super, _header, out _l4, out _headers, out _segments);
        _segmentMemory = new Memory<byte>[_segments];
        for (int i = 0; i < _segments; i++)
        {
            byte[] seg = new byte[2048];
            int len = Segmenter.WriteSegment(_super, _header, _l4, _headers, i, seg);
            _segmentMemory[i] = seg.AsMemory(0, len);
        }
        // 64 datagrams of 64 payload bytes (the bench's small-packet size), checksums complete.
        _datagrams = new Memory<byte>[GroCoalescer.MaxUdpSegments];
        for (int i = 0; i < _datagrams.Length; i++)
        {
            byte[] d = new byte[28 + 64];
            Ipv4Header.Write(d, d.Length, (ushort)i, 0x4000, 64, Ipv4Header.ProtocolUdp, 0x0AF4_0102, 0x0AF4_0202);
            BinaryPrimitives.WriteUInt16BigEndian(d.AsSpan(20), 5000);
            BinaryPrimitives.WriteUInt16BigEndian(d.AsSpan(22), 5201);
            BinaryPrimitives.WriteUInt16BigEndian(d.AsSpan(24), 8 + 64);
            new Random(i).NextBytes(d.AsSpan(28));
            ulong sum = InternetChecksum.Sum(d.AsSpan(20), InternetChecksum.PseudoHeaderIpv4(0x0AF4_0102, 0x0AF4_0202, 17, 8 + 64));
            BinaryPrimitives.WriteUInt16BigEndian(d.AsSpan(26), (ushort)~InternetChecksum.Finish(sum));
            _datagrams[i] = d;
        }
    }

    [Benchmark(Description = "TSO split of a 64 KiB superpacket into 47 segments (copy, IPv4 + TCP checksums), per superpacket")]
    public int TsoSplit64K()
    {
        int total = 0;
        for (int i = 0; i < _segments; i++)
        {
            total += Segmenter.WriteSegment(_super, _header, _l4, _headers, i, _out);
        }
        return total;
    }

    [Benchmark(Description = "GRO: coalesce 47 segments of one flow into a superpacket (verify, copy), per superpacket")]
    public int GroCoalesce64K()
    {
        GroCoalescer c = _coalescer;
        c.Reset();
        for (int i = 0; i < _segmentMemory.Length; i++)
        {
            c.Offer(_segmentMemory[i], i);
        }
        return c.Superpacket(0).Length;
    }

    [Benchmark(Description = "GRO: merge 64 UDP datagrams of 64 bytes into a USO superpacket (verify, copy), per superpacket")]
    public int UdpCoalesce64()
    {
        GroCoalescer c = _udpCoalescer;
        c.Reset();
        for (int i = 0; i < _datagrams.Length; i++)
        {
            c.Offer(_datagrams[i], i);
        }
        return c.Superpacket(0).Length;
    }
}
