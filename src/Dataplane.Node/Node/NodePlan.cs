using Dataplane.Leases;

namespace Dataplane.Node;

/// <summary>Everything <c>run</c> decided before creating anything.</summary>
internal sealed record NodePlan(ClusterSnapshot Snapshot, NodeIdentity Node, string UnderlayIface, string DeviceName, int DeviceMtu)
{
    public System.Net.IPEndPoint? MetricsEndpoint { get; init; }
}
