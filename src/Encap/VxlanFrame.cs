namespace Dataplane.Encap;

/// <summary>
/// The VXLAN payload as flannel.1 puts it on the wire: 8-byte VXLAN header, 14-byte inner
/// Ethernet header, then the inner IP packet. <see cref="Encapsulate"/> writes the 22 bytes into
/// the headroom in front of a packet already in the buffer (no copy of the packet);
/// <see cref="Decapsulate"/> validates and locates the inner packet.
/// </summary>
public static class VxlanFrame
{
    /// <summary>
    /// Writes VXLAN + Ethernet headers immediately before <paramref name="packetOffset"/> and
    /// returns the offset where the UDP payload now starts. The caller guarantees 22 bytes of headroom.
    /// </summary>
    public static int Encapsulate(Span<byte> buffer, int packetOffset, uint vni, MacAddress dst, MacAddress src, ushort etherType)
    {
        int start = packetOffset - Overheads.VxlanPayloadPrefix;
        VxlanHeader.Write(buffer[start..], vni);
        EthernetHeader.Write(buffer[(start + VxlanHeader.Length)..], dst, src, etherType);
        return start;
    }

    /// <summary>
    /// Checks the VXLAN header, VNI and inner Ethernet header of a received UDP payload. On
    /// success <paramref name="innerOffset"/> is where the Ethernet payload (IP or ARP) starts.
    /// Frames to another unicast MAC are refused, as a kernel vxlan device refuses them;
    /// broadcast is let through only for ARP, and IPv6 multicast (33:33:..., where a Neighbor
    /// Solicitation goes) only for IPv6: the caller answers the solicitation or drops the frame.
    /// </summary>
    public static VxlanDecapResult Decapsulate(ReadOnlySpan<byte> payload, uint vni, MacAddress ourMac,
        out int innerOffset, out ushort etherType, out MacAddress innerSource)
    {
        innerOffset = 0;
        etherType = 0;
        innerSource = default;
        VxlanDecapResult header = VxlanHeader.TryRead(payload, out uint gotVni);
        if (header != VxlanDecapResult.Ok)
        {
            return header;
        }
        if (gotVni != vni)
        {
            return VxlanDecapResult.WrongVni;
        }
        if (!EthernetHeader.TryRead(payload[VxlanHeader.Length..], out MacAddress dst, out innerSource, out etherType))
        {
            return VxlanDecapResult.TooShort;
        }
        if (etherType is not (EthernetHeader.EtherTypeIpv4 or EthernetHeader.EtherTypeIpv6 or EthernetHeader.EtherTypeArp))
        {
            return VxlanDecapResult.BadEtherType;
        }
        if (dst != ourMac && !(dst.IsBroadcast && etherType == EthernetHeader.EtherTypeArp)
            && !(IsIpv6Multicast(dst) && etherType == EthernetHeader.EtherTypeIpv6))
        {
            return VxlanDecapResult.NotOurMac;
        }
        innerOffset = Overheads.VxlanPayloadPrefix;
        return VxlanDecapResult.Ok;
    }

    /// <summary>An Ethernet address IPv6 multicast maps to (RFC 2464: 33:33 and the group's low 32 bits).</summary>
    public static bool IsIpv6Multicast(MacAddress mac) => (mac.Value >> 32) == 0x3333;
}
