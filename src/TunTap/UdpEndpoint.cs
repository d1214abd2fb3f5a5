using Dataplane.Encap;

namespace Dataplane.TunTap;

/// <summary>An IPv4 UDP endpoint: host-order address and port.</summary>
public readonly record struct UdpEndpoint(uint Address, ushort Port)
{
    public override string ToString() => $"{Ipv4Prefix.Format(Address)}:{Port}";
}
