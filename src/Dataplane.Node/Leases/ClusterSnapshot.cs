namespace Dataplane.Leases;

/// <summary>
/// A validated network config and every lease, as one source read them at one moment; leases the
/// source could not read are left out and said in <see cref="Unreadable"/> (the peer tables log
/// them when that set changes, so a source that re-reads often does not repeat itself).
/// </summary>
internal sealed record ClusterSnapshot(NetworkConfig Config, IReadOnlyList<LeaseRecord> Leases)
{
    public IReadOnlyList<string> Unreadable { get; init; } = [];

    public LeaseRecord? LeaseOf(uint publicIp) => Leases.FirstOrDefault(l => l.PublicIp == publicIp);
}
