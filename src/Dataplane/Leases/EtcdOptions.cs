namespace Dataplane.Leases;

/// <summary>The etcd flags, with flanneld's names.</summary>
internal sealed record EtcdOptions
{
    public required IReadOnlyList<string> Endpoints { get; init; }
    public string Prefix { get; init; } = "/coreos.com/network";
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(5);
    public string? Username { get; init; }
    public string? Password { get; init; }
    /// <summary>TLS: the CA that signed etcd's certificate, and our client certificate and key (PEM).</summary>
    public string? CaFile { get; init; }
    public string? CertFile { get; init; }
    public string? KeyFile { get; init; }
    /// <summary>Our lease's TTL in etcd (flannel: 24 h) and how long before expiry it is renewed (flannel: 1 h).</summary>
    public TimeSpan LeaseTtl { get; init; } = TimeSpan.FromHours(24);
    public TimeSpan RenewMargin { get; init; } = TimeSpan.FromMinutes(60);
    /// <summary>Where our VTEP MAC is kept across restarts, so peers' neighbour entries stay valid.</summary>
    public required string VtepMacFile { get; init; }
}
