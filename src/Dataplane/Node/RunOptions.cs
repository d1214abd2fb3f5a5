namespace Dataplane.Node;

/// <summary>The flags of <c>dataplane run</c> (flanneld's names where flanneld has one).</summary>
internal sealed record RunOptions
{
    public string? LeasesPath { get; init; }
    public string? PublicIp { get; init; }
    public string? Iface { get; init; }
    public string? Device { get; init; }
    public string? Backend { get; init; }
    public int? Port { get; init; }
    public string SubnetFile { get; init; } = "/run/flannel/subnet.env";
    public bool IpMasq { get; init; }
}
