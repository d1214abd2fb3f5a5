namespace Dataplane.Encap;

/// <summary>Bytes each encapsulation adds in front of the inner packet, with the arithmetic.</summary>
public static class Overheads
{
    public const int Ipv4Header = 20;
    public const int Ipv6Header = 40;
    public const int UdpHeader = 8;

    /// <summary>flannel udp over IPv4: 20 IPv4 + 8 UDP.</summary>
    public const int UdpBackend = Ipv4Header + UdpHeader; // 28

    /// <summary>VXLAN over IPv4: 20 IPv4 + 8 UDP + 8 VXLAN + 14 Ethernet.</summary>
    public const int VxlanBackend = Ipv4Header + UdpHeader + VxlanHeader.Length + EthernetHeader.Length; // 50

    /// <summary>flannel udp over IPv6 (this data plane's udp backend between dual-stack nodes): 40 IPv6 + 8 UDP.</summary>
    public const int UdpBackendIpv6 = Ipv6Header + UdpHeader; // 48

    /// <summary>VXLAN over IPv6, as kernel flannel-v6.1: 40 IPv6 + 8 UDP + 8 VXLAN + 14 Ethernet.</summary>
    public const int VxlanBackendIpv6 = Ipv6Header + UdpHeader + VxlanHeader.Length + EthernetHeader.Length; // 70

    /// <summary>What VXLAN writes in front of the inner IP packet inside the UDP payload: 8 VXLAN + 14 Ethernet.</summary>
    public const int VxlanPayloadPrefix = VxlanHeader.Length + EthernetHeader.Length; // 22
}
