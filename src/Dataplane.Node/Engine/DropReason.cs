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
    MalformedInner,
    BadInnerChecksum,
    InnerSourceNotPeerSubnet,
    InnerDestinationNotOurSubnet,
    TunWriteFailed,
}
