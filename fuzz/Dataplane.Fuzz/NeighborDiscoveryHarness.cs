using System.Buffers.Binary;
using Dataplane.Encap;

namespace Dataplane.Fuzz;

/// <summary>
/// Neighbor Discovery on any bytes: what <see cref="NeighborDiscovery.TryReadSolicitation"/> accepts
/// must be a Neighbor Solicitation as RFC 4861 defines one (IPv6, ICMPv6 type 135 code 0, hop
/// limit 255, checksum verifying, unicast target), and the advertisement written for it must verify
/// too and never read as a solicitation. The inbound loop's use of it is the inbound6-vxlan target.
/// </summary>
internal static class NeighborDiscoveryHarness
{
    private static readonly byte[] Answer = new byte[NeighborDiscovery.AdvertisementLength];

    public static void Run(byte[] input)
    {
        if (!NeighborDiscovery.TryReadSolicitation(input, out UInt128 source, out UInt128 target))
        {
            return;
        }
        Property.Check(input.Length >= 64 && input[0] >> 4 == 6 && input[6] == Ipv6Header.NextHeaderIcmpv6 && input[7] == 255,
            "accepted without an IPv6 ICMPv6 header of hop limit 255");
        Property.Check(input[40] == NeighborDiscovery.TypeSolicitation && input[41] == 0, "accepted another ICMPv6 message");
        int length = 40 + BinaryPrimitives.ReadUInt16BigEndian(input.AsSpan(4));
        Property.Check(Sum(input.AsSpan(0, length)) == 0, "accepted a solicitation whose checksum does not verify");
        Property.Check((target >> 120) != 0xFF, "accepted a multicast target");
        Property.Check(source == BinaryPrimitives.ReadUInt128BigEndian(input.AsSpan(8)), "the source read is not the packet's");

        int written = NeighborDiscovery.WriteAdvertisement(Answer, target, new MacAddress(0x0E_00_5E_06_00_01), source);
        Property.Check(written == Answer.Length && Sum(Answer) == 0, "the advertisement's checksum does not verify");
        Property.Check(!NeighborDiscovery.TryReadSolicitation(Answer, out _, out _), "the advertisement reads as a solicitation");
        Property.Check(BinaryPrimitives.ReadUInt128BigEndian(Answer.AsSpan(48)) == target, "the advertisement names another target");
    }

    private static ushort Sum(ReadOnlySpan<byte> packet)
    {
        ulong pseudo = InternetChecksum.PseudoHeaderIpv6(packet.Slice(8, 16), packet.Slice(24, 16), Ipv6Header.NextHeaderIcmpv6, packet.Length - 40);
        return InternetChecksum.Finish(InternetChecksum.Sum(packet[40..], pseudo));
    }
}
