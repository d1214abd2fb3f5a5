namespace Dataplane.Leases.Etcd;

/// <summary>The etcd flags, with flanneld's names.</summary>
internal sealed record EtcdOptions
{
    /// <summary>The defaults, as the command line shows them.</summary>
    public static readonly EtcdOptions Defaults = new() { Endpoints = [], VtepMacFile = "" };

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
    /// <summary>A safety resync: how often the whole range is listed again although the watch holds (± 10 %).</summary>
    public TimeSpan Resync { get; init; } = TimeSpan.FromMinutes(10);
}
