using System.Buffers.Binary;

namespace Dataplane.Encap;

/// <summary>
/// IPv6 Neighbor Discovery (RFC 4861) as a VXLAN endpoint needs it: read a Neighbor Solicitation
/// and write the Neighbor Advertisement that answers it, the IPv6 counterpart of <see cref="Arp"/>.
/// A kernel flannel-v6.1 programmed by flanneld has permanent neighbour entries and normally never
/// asks; a peer without them sends the solicitation to the solicited-node multicast address
/// (33:33:ff:xx:xx:xx on the inner Ethernet).
/// </summary>
public static class NeighborDiscovery
{
    public const byte TypeSolicitation = 135;
    public const byte TypeAdvertisement = 136;
    /// <summary>Neighbor Discovery messages travel with hop limit 255, so a receiver knows they were not routed.</summary>
    public const byte HopLimit = 255;
    private const byte OptionSourceLinkLayer = 1, OptionTargetLinkLayer = 2;
    private const int MessageLength = 24; // type, code, checksum, flags/reserved 4, target 16

    /// <summary>An advertisement with its target link-layer address option: 40 IPv6 + 24 + 8.</summary>
    public const int AdvertisementLength = Ipv6Header.Length + MessageLength + 8;

    /// <summary>
    /// A Neighbor Solicitation (RFC 4861 section 7.1.1 checks: hop limit 255, ICMPv6 checksum, code 0,
    /// length, target not multicast): its source address and target address.
    /// </summary>
    public static bool TryReadSolicitation(ReadOnlySpan<byte> packet, out UInt128 source, out UInt128 target)
    {
        source = target = UInt128.Zero;
        if (Ipv6Header.TryRead(packet, out Ipv6Header h) != IpParseResult.Ok
            || h.NextHeader != Ipv6Header.NextHeaderIcmpv6 || h.HopLimit != HopLimit || h.PayloadLength < MessageLength)
        {
            return false;
        }
        ReadOnlySpan<byte> icmp = packet.Slice(Ipv6Header.Length, h.PayloadLength);
        if (icmp[0] != TypeSolicitation || icmp[1] != 0)
        {
            return false;
        }
        ulong sum = InternetChecksum.PseudoHeaderIpv6(packet.Slice(8, 16), packet.Slice(24, 16), Ipv6Header.NextHeaderIcmpv6, icmp.Length);
        if (InternetChecksum.Finish(InternetChecksum.Sum(icmp, sum)) != 0)
        {
            return false;
        }
        target = BinaryPrimitives.ReadUInt128BigEndian(icmp[8..]);
        source = h.Source;
        return (target >> 120) != 0xFF;
    }

    /// <summary>The solicited-node multicast address of <paramref name="address"/> (ff02::1:ffXX:XXXX).</summary>
    public static UInt128 SolicitedNode(UInt128 address) =>
        (new UInt128(0xFF02_0000_0000_0000, 0x0000_0001_FF00_0000)) | (address & 0xFF_FFFF);

    /// <summary>
    /// Writes a complete IPv6 Neighbor Advertisement for <paramref name="target"/> (our address) with
    /// our MAC as the target link-layer address: solicited and override, to
    /// <paramref name="destination"/> (the solicitor, or all-nodes ff02::1 when it had no address
    /// yet). Returns <see cref="AdvertisementLength"/>.
    /// </summary>
    public static int WriteAdvertisement(Span<byte> packet, UInt128 target, MacAddress ourMac, UInt128 destination)
    {
        bool solicited = destination != UInt128.Zero;
        UInt128 to = solicited ? destination : new UInt128(0xFF02_0000_0000_0000, 1);
        int icmpLength = MessageLength + 8;
        Ipv6Header.Write(packet, icmpLength, Ipv6Header.NextHeaderIcmpv6, HopLimit, target, to);
        Span<byte> icmp = packet.Slice(Ipv6Header.Length, icmpLength);
        icmp[0] = TypeAdvertisement;
        icmp[1] = 0;
        icmp[2] = icmp[3] = 0;
        // R=0, S (solicited), O=1 (override).
        BinaryPrimitives.WriteUInt32BigEndian(icmp[4..], (solicited ? 0x4000_0000u : 0) | 0x2000_0000u);
        BinaryPrimitives.WriteUInt128BigEndian(icmp[8..], target);
        icmp[24] = OptionTargetLinkLayer;
        icmp[25] = 1; // in units of 8 bytes
        ourMac.Write(icmp[26..]);
        ulong sum = InternetChecksum.PseudoHeaderIpv6(packet.Slice(8, 16), packet.Slice(24, 16), Ipv6Header.NextHeaderIcmpv6, icmpLength);
        BinaryPrimitives.WriteUInt16BigEndian(icmp[2..], InternetChecksum.Finish(InternetChecksum.Sum(icmp, sum)));
        return AdvertisementLength;
    }

    /// <summary>Writes a Neighbor Solicitation for <paramref name="target"/> from <paramref name="source"/> with a source link-layer option (tests, the lab).</summary>
    public static int WriteSolicitation(Span<byte> packet, UInt128 source, MacAddress sourceMac, UInt128 target)
    {
        int icmpLength = MessageLength + 8;
        Ipv6Header.Write(packet, icmpLength, Ipv6Header.NextHeaderIcmpv6, HopLimit, source, SolicitedNode(target));
        Span<byte> icmp = packet.Slice(Ipv6Header.Length, icmpLength);
        icmp.Clear();
        icmp[0] = TypeSolicitation;
        BinaryPrimitives.WriteUInt128BigEndian(icmp[8..], target);
        icmp[24] = OptionSourceLinkLayer;
        icmp[25] = 1;
        sourceMac.Write(icmp[26..]);
        ulong sum = InternetChecksum.PseudoHeaderIpv6(packet.Slice(8, 16), packet.Slice(24, 16), Ipv6Header.NextHeaderIcmpv6, icmpLength);
        BinaryPrimitives.WriteUInt16BigEndian(icmp[2..], InternetChecksum.Finish(InternetChecksum.Sum(icmp, sum)));
        return Ipv6Header.Length + icmpLength;
    }
}
