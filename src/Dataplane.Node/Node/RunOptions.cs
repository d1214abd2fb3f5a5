using System.Net;
using Dataplane.Engine;
using Dataplane.Leases.Etcd;
using Dataplane.Leases.Kube;

namespace Dataplane.Node;

/// <summary>
/// The flags of <c>dataplane run</c> (flanneld's names where flanneld has one), typed and checked by
/// the command line before they arrive here. Every default is stated once, here (or in the settings
/// it feeds: <see cref="EngineSettings"/>, <see cref="EtcdOptions"/>); the command line shows these.
/// A null means "decide from the config or the host" (the backend, the port, the public IP...).
/// </summary>
internal sealed record RunOptions
{
    public static readonly RunOptions Defaults = new();

    public string? LeasesPath { get; init; }
    /// <summary>etcd as the lease source instead of a file.</summary>
    public EtcdOptions? Etcd { get; init; }
    /// <summary>The Kubernetes API (Node annotations, as flanneld's --kube-subnet-mgr) as the lease source.</summary>
    public KubeOptions? Kube { get; init; }
    public IPAddress? PublicIp { get; init; }
    /// <summary>Our IPv6 underlay address (a dual-stack network config only).</summary>
    public IPAddress? PublicIpv6 { get; init; }
    /// <summary>flanneld's --iface (names or addresses, tried in order), --iface-regex (in order) and --iface-can-reach: see <see cref="UnderlayInterface"/>.</summary>
    public IReadOnlyList<string> Ifaces { get; init; } = [];
    public IReadOnlyList<string> IfaceRegexes { get; init; } = [];
    public IPAddress? IfaceCanReach { get; init; }
    public string? Device { get; init; }
    /// <summary>The device side: a TUN, a veth pair read with a packet socket, or whichever the host allows.</summary>
    public DeviceSource Source { get; init; } = DeviceSource.Auto;
    /// <summary>What a stop without a successor does with the device, its address, route and rules.</summary>
    public OnExit OnExit { get; init; } = OnExit.Remove;
    /// <summary>What the node does once a successor took its device and sockets over.</summary>
    public AfterHandover AfterHandover { get; init; } = AfterHandover.Exit;
    /// <summary>A file that exists while this process forwards (a readiness probe's), or none.</summary>
    public string? ReadyFile { get; init; }
    public BackendKind? Backend { get; init; }
    public int? Port { get; init; }
    public string SubnetFile { get; init; } = "/run/flannel/subnet.env";
    public bool IpMasq { get; init; }
    /// <summary>flanneld's --iptables-forward-rules (default true): FORWARD accepts the overlay's traffic.</summary>
    public bool ForwardRules { get; init; } = true;
    /// <summary>flanneld's --ip-masq-fully-random-disable: MASQUERADE without --random-fully.</summary>
    public bool MasqueradeFullyRandomDisable { get; init; }
    /// <summary>flanneld's --ip-blackhole-route: a blackhole route for our subnet.</summary>
    public bool BlackholeRoute { get; init; }
    /// <summary>flanneld's --iptables-resync: how often the rules and the blackhole route are checked and put back.</summary>
    public TimeSpan RulesResync { get; init; } = TimeSpan.FromSeconds(5);
    /// <summary>TUN offloads (virtio-net header, TSO/USO, GRO) and UDP GSO/GRO.</summary>
    public bool Offload { get; init; } = true;
    /// <summary>Packets per system call at most (1: the naive one-packet-per-call mode).</summary>
    public int Batch { get; init; } = EngineSettings.DefaultBatch;
    /// <summary>TUN queues and sockets, each with its own pair of loops.</summary>
    public int Queues { get; init; } = Environment.ProcessorCount;
    public const int MaxQueues = 64;
    /// <summary>Where Prometheus text is served, or none.</summary>
    public IPEndPoint? Metrics { get; init; }
    /// <summary>Where /healthz and /readyz are served (flanneld's --healthz-ip and --healthz-port; port 0: none).</summary>
    public IPEndPoint? Healthz { get; init; }
    /// <summary>The Unix socket <c>dataplane stats</c> reads (default /run/dataplane/DEVICE.sock).</summary>
    public string? ControlSocket { get; init; }
    public double IcmpRate { get; init; } = EngineSettings.DefaultIcmpRate;
    public double IcmpBurst { get; init; } = EngineSettings.DefaultIcmpBurst;
    /// <summary>Hidden flag, for measuring: the inbound loop's assist of the outbound one (<see cref="EngineSettings.Assist"/>).</summary>
    public bool Assist { get; init; } = true;
    /// <summary>Test seam (hidden flag): make a loop's edge throw on its first packet, to prove the clean-up path.</summary>
    public FaultInjection.Loop InjectFault { get; init; }

}
