namespace Dataplane.TunTap;

/// <summary>
/// Where the inner IP packet sits in the datagrams a socket carries (<paramref name="InnerOffset"/>:
/// 22 for VXLAN's header and Ethernet frame, 0 for flannel's udp backend) and how large an ordinary
/// inner packet may be (<paramref name="InnerMtu"/>: the device MTU). With it the socket can tell a
/// kernel peer's tunnel superpacket from an ordinary datagram and split it.
/// </summary>
public sealed record EncapsulationLayout(int InnerOffset, int InnerMtu);
