using Dataplane.Leases;

namespace Dataplane.Node;

/// <summary>Everything <c>run</c> decided before creating anything.</summary>
internal sealed record NodePlan(ClusterSnapshot Snapshot, NodeIdentity Node, string UnderlayIface, string DeviceName, int DeviceMtu)
{
    public System.Net.IPEndPoint? MetricsEndpoint { get; init; }

    /// <summary>
    /// Our underlay address, where the socket listens. Usually the lease's public IP; not when the
    /// lease announces another one (a Kubernetes node's public-ip-overwrite: a NAT in front of us).
    /// </summary>
    public required uint BindAddress { get; init; }

    /// <summary>TUN or packet socket, decided (never <see cref="DeviceSource.Auto"/> here).</summary>
    public DeviceSource Source { get; init; } = DeviceSource.Tun;
}
