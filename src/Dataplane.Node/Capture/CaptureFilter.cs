using Dataplane.Encap;

namespace Dataplane.Capture;

/// <summary>
/// What a capture keeps: everything, or what concerns one peer (its public IP as the outer address,
/// or a subnet the inner source or destination lies in), optionally drops only.
/// </summary>
internal sealed record CaptureFilter(uint? PeerIp, Ipv4Prefix? Subnet, bool DropsOnly)
{
    public bool Matches(uint outerPeer, uint innerSource, uint innerDestination, bool dropped) =>
        (!DropsOnly || dropped)
        && (PeerIp is not uint ip || outerPeer == ip)
        && (Subnet is not Ipv4Prefix s || s.Contains(innerSource) || s.Contains(innerDestination));

    /// <summary>"192.0.2.2" (a peer's public IP) or "10.244.2.0/24" (a subnet); null when it is neither.</summary>
    public static CaptureFilter? Parse(string? peer, bool dropsOnly)
    {
        if (string.IsNullOrEmpty(peer))
        {
            return new CaptureFilter(null, null, dropsOnly);
        }
        if (Ipv4Prefix.TryParseAddress(peer, out uint ip))
        {
            return new CaptureFilter(ip, null, dropsOnly);
        }
        return Ipv4Prefix.TryParse(peer, out Ipv4Prefix? subnet) ? new CaptureFilter(null, subnet, dropsOnly) : null;
    }
}
