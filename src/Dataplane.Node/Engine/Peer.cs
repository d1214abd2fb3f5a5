using Dataplane.Encap;
using Dataplane.TunTap;

namespace Dataplane.Engine;

/// <summary>Another node: the subnet it owns, where its UDP endpoint is, and (vxlan) its VTEP MAC.</summary>
internal sealed record Peer(Ipv4Prefix Subnet, UdpEndpoint Endpoint, MacAddress VtepMac)
{
    public uint PublicIp => Endpoint.Address;
}
