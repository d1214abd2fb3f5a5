using Dataplane.Leases;

namespace Dataplane.Node;

/// <summary>Everything <c>run</c> decided before creating anything.</summary>
internal sealed record NodePlan(ClusterSnapshot Snapshot, NodeIdentity Node, string UnderlayIface, string DeviceName, int DeviceMtu)
{
    public System.Net.IPEndPoint? MetricsEndpoint { get; init; }
    /// <summary>The etcd source holding our lease, when leases come from etcd.</summary>
    public EtcdLeaseSource? Etcd { get; init; }
    /// <summary>Where the leases come from, for messages: "lease file X" or "etcd URL".</summary>
    public string LeaseSource { get; init; } = "";
}
