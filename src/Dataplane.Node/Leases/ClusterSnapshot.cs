namespace Dataplane.Leases;

/// <summary>
/// A validated network config and every lease, as one source read them at one moment; leases the
/// source could not read are left out and said in <see cref="Unreadable"/> (the peer tables log
/// them when that set changes, so a source that re-reads often does not repeat itself).
/// </summary>
internal sealed record ClusterSnapshot(NetworkConfig Config, IReadOnlyList<LeaseRecord> Leases)
{
    public IReadOnlyList<(string Name, string Message)> Unreadable { get; init; } = [];

    /// <summary>
    /// The public addresses the store says this node is to use (flanneld's GetStoredPublicIP: our
    /// Node's <c>node-public-ip</c> and <c>node-public-ipv6</c> annotations), with where they come
    /// from; they win over <c>--public-ip</c>/<c>--public-ipv6</c>, as in flanneld. Null: none.
    /// </summary>
    public (string Address, string From)? StoredPublicIp { get; init; }
    public (string Address, string From)? StoredPublicIpv6 { get; init; }

    public LeaseRecord? LeaseOf(uint publicIp) => Leases.FirstOrDefault(l => l.PublicIp == publicIp);

    /// <summary>The lease whose PublicIPv6 is <paramref name="publicIpv6"/> (how an IPv6-only node finds its own).</summary>
    public LeaseRecord? LeaseOf6(UInt128 publicIpv6) => Leases.FirstOrDefault(l => l.PublicIpv6 == publicIpv6);

    /// <summary>Our lease: by PublicIP, or on an IPv6-only network by PublicIPv6.</summary>
    public LeaseRecord? LeaseOf(LeaseRequest request) =>
        Config.EnableIpv4 ? LeaseOf(request.PublicIp) : request.PublicIpv6 is UInt128 v6 ? LeaseOf6(v6) : null;
}
