namespace Dataplane.Engine;

/// <summary>Why a packet was not delivered. Each is a counter; none is ever an exception or a log line.</summary>
internal enum DropReason
{
    // outbound (device -> peer)
    NoRoute,
    /// <summary>A multicast destination (IPv6 neighbour discovery, MLD): a point-to-point overlay carries none.</summary>
    Multicast,
    OwnSubnet,
    BadIpVersion,
    MalformedOutbound,
    UdpSendFailed,
    // inbound (peer -> device)
    Truncated,
    UnknownPeer,
    TooShort,
    BadVxlanFlags,
    WrongVni,
    NotOurMac,
    BadEtherType,
    ArpNotForUs,
    /// <summary>An IPv6 frame to a multicast MAC that is not a Neighbor Solicitation for our VTEP address.</summary>
    NdNotForUs,
    MalformedInner,
    BadInnerChecksum,
    InnerSourceNotPeerSubnet,
    InnerDestinationNotOurSubnet,
    /// <summary>The inner packet came over the peer's other underlay (IPv6 inside IPv4 where the peer sends it over IPv6, or the reverse).</summary>
    WrongUnderlayFamily,
    TunWriteFailed,
}
