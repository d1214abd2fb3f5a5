using Dataplane.Leases;

namespace Dataplane.Node;

/// <summary>Everything <c>run</c> decided before creating anything.</summary>
internal sealed record NodePlan(ClusterSnapshot Snapshot, NodeIdentity Node, string UnderlayIface, string DeviceName, int DeviceMtu)
{
    public System.Net.IPEndPoint? MetricsEndpoint { get; init; }
    /// <summary>Where /healthz and /readyz are served (--healthz-ip, --healthz-port), or none.</summary>
    public System.Net.IPEndPoint? HealthzEndpoint { get; init; }

    /// <summary>
    /// Our underlay address, where the socket listens. Usually the lease's public IP; not when the
    /// lease announces another one (a Kubernetes node's public-ip-overwrite: a NAT in front of us).
    /// </summary>
    public required uint BindAddress { get; init; }

    /// <summary>The IPv4 network and our IPv4 subnet (subnet.env's IPv4 lines), or null on an IPv6-only network.</summary>
    public (Encap.Ipv4Prefix Network, Encap.Ipv4Prefix Subnet)? Ipv4Subnets => Node.ForwardsIpv4 ? (Node.Config.Network, Node.Subnet) : null;

    /// <summary>The IPv6 network and our IPv6 subnet when this node forwards IPv6 (subnet.env's IPv6 lines), else null.</summary>
    public (Encap.Ipv6Prefix Network, Encap.Ipv6Prefix Subnet)? Ipv6Subnets =>
        Node.Ipv6Subnet is Encap.Ipv6Prefix s && Node.Config.Ipv6Network is Encap.Ipv6Prefix n ? (n, s) : null;

    /// <summary>The MTU of the IPv6 route (underlay MTU minus the IPv6 underlay's overhead), when the node forwards IPv6.</summary>
    public int Ipv6RouteMtu { get; init; }

    /// <summary>Our device as an earlier run kept it (or a crash left it), checked to be taken over; null when there is none.</summary>
    public ExistingDevice? Existing { get; init; }

    /// <summary>The running node that offered to hand its device and sockets over to this start (the connection to it), or null.</summary>
    public HandoverSuccessor? Predecessor { get; init; }

    /// <summary>The queues systemd kept for this device across a restart (FDSTORE), checked to be this start's, or null.</summary>
    public StoredDescriptors? Stored { get; init; }

    /// <summary>TUN or packet socket, decided (never <see cref="DeviceSource.Auto"/> here).</summary>
    public DeviceSource Source { get; init; } = DeviceSource.Tun;
}
