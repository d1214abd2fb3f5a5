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
    /// <summary>TUN offloads (virtio-net header, TSO/USO, GRO) and UDP GSO/GRO.</summary>
    public bool Offload { get; init; } = true;
    /// <summary>Packets per system call at most (1: the naive one-packet-per-call mode).</summary>
    public int Batch { get; init; } = 64;
    /// <summary>TUN queues and sockets, each with its own pair of loops.</summary>
    public int Queues { get; init; } = Environment.ProcessorCount;
    /// <summary>Prometheus endpoint ("127.0.0.1:9100", ":9100"), or none.</summary>
    public string? Metrics { get; init; }
    /// <summary>The Unix socket <c>dataplane stats</c> reads (default /run/dataplane/DEVICE.sock).</summary>
    public string? ControlSocket { get; init; }
    /// <summary>etcd as the lease source instead of a file.</summary>
    public Leases.EtcdOptions? Etcd { get; init; }
    public double IcmpRate { get; init; } = 1000;
    public double IcmpBurst { get; init; } = 50;
}
