namespace Dataplane.Leases;

/// <summary>A validated network config and every lease, as one source read them at one moment.</summary>
internal sealed record ClusterSnapshot(NetworkConfig Config, IReadOnlyList<LeaseRecord> Leases)
{
    public LeaseRecord? LeaseOf(uint publicIp) => Leases.FirstOrDefault(l => l.PublicIp == publicIp);
}
