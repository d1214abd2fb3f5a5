using System.CommandLine;
using System.Net;
using System.Net.Sockets;
using Dataplane.Engine;
using Dataplane.Leases;
using Dataplane.Leases.Etcd;
using Dataplane.Leases.Kube;
using Dataplane.Node;
using Dataplane.TunTap;
using static Dataplane.Cli.TypedOptions;

namespace Dataplane.Cli;

/// <summary>
/// <c>dataplane run</c>: the node's flags, typed and checked here (addresses, enums, host:port,
/// ranges), each default taken from <see cref="RunOptions.Defaults"/> and <see cref="EtcdOptions.Defaults"/>
/// so it is stated once. What can only be checked against the host or the leases (the interface, our
/// lease, the device) is checked by <see cref="NodeRunner"/> before anything is created.
/// </summary>
internal static class RunCommandLine
{
    public static Command Create(Func<Serilog.Core.Logger> createLogger)
    {
        RunOptions d = RunOptions.Defaults;
        EtcdOptions e = EtcdOptions.Defaults;
        var leases = new Option<string?>("--leases") { Description = "the static cluster file (flannel's schema: {\"config\":..., \"subnets\":{...}})" };
        var publicIp = Parsed("--public-ip", "this node's underlay address (default: the address of --iface)",
            t => IPAddress.TryParse(t, out IPAddress? a) && a.AddressFamily == AddressFamily.InterNetwork && t.Count(c => c == '.') == 3 ? a : null,
            "not an IPv4 address");
        var publicIpv6 = Parsed("--public-ipv6", "this node's IPv6 underlay address, for a network config with EnableIPv6 (default: the lease's PublicIPv6, else the first global IPv6 address of --iface)",
            t => IPAddress.TryParse(t, out IPAddress? a) && a.AddressFamily == AddressFamily.InterNetworkV6 && !a.IsIPv4MappedToIPv6 && a.ScopeId == 0
                && !a.IsIPv6LinkLocal && !a.IsIPv6Multicast && !a.Equals(IPAddress.IPv6Any) && !a.Equals(IPAddress.IPv6Loopback) ? a : null,
            "not a global IPv6 address");
        var iface = new Option<string?>("--iface") { Description = "the underlay interface (default: the one of the default route)" };
        var device = new Option<string?>("--device") { Description = "device name (default flannel0 for udp, flannel.1 for vxlan)" };
        device.Validators.Add(r =>
        {
            string? name = r.GetValueOrDefault<string?>();
            if (name is not null && (name.Length is 0 or > 15 || name.Contains('/') || name.Any(char.IsWhiteSpace)))
            {
                r.AddError($"--device {name}: not a valid interface name (1 to 15 characters, no '/' or spaces)");
            }
        });
        var source = new Option<string>("--source")
        {
            Description = "the device side: tun (/dev/net/tun), packet (a veth pair; the data plane reads its other end with AF_PACKET), " +
                "auto (tun when /dev/net/tun opens, else packet)",
            DefaultValueFactory = _ => d.Source.ToString().ToLowerInvariant(),
        };
        source.AcceptOnlyFromAmong("auto", "tun", "packet");
        var backend = ParsedValue<BackendKind>("--backend", "udp or vxlan (default: the config's Backend.Type)",
            t => NetworkConfig.TryParseBackend(t, out BackendKind b) ? b : null, "unknown backend (supported: udp, vxlan)");
        var port = new Option<int?>("--port") { Description = "UDP port, the same on every node (default: the config's, else 8285 udp / 8472 vxlan)" };
        port.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int?>() is int p && p is < 1 or > 65535)
            {
                r.AddError($"--port {p}: not a UDP port");
            }
        });
        var subnetFile = new Option<string>("--subnet-file") { Description = "where to write subnet.env for the CNI plugin", DefaultValueFactory = _ => d.SubnetFile };
        var ipMasq = new Option<bool>("--ip-masq") { Description = "install flanneld's masquerade rules for traffic leaving the overlay (removed on stop)" };
        var offload = new Option<string>("--offload") { Description = "on: TUN TSO/GRO and UDP GSO/GRO where the kernel has them; off: plain packets", DefaultValueFactory = _ => d.Offload ? "on" : "off" };
        offload.AcceptOnlyFromAmong("on", "off");
        var batch = new Option<int>("--batch") { Description = "packets per system call at most (1: one packet per call, the naive mode)", DefaultValueFactory = _ => d.Batch }
            .InRange(1, EngineSettings.MaxBatch, $"must be 1 to {EngineSettings.MaxBatch}");
        var queues = new Option<int>("--queues") { Description = "TUN queues and sockets, each with its own outbound and inbound loop and, with more than one, its own send port (default: the number of cores)", DefaultValueFactory = _ => d.Queues }
            .InRange(1, RunOptions.MaxQueues, $"must be 1 to {RunOptions.MaxQueues}");
        var metrics = Parsed("--metrics", "serve Prometheus metrics at http://ADDR:PORT/metrics (for example 127.0.0.1:9100, or :9100 for every address)",
            ParseEndpoint, "not ADDR:PORT (for example 127.0.0.1:9100 or :9100)");
        var controlSocket = new Option<string?>("--control-socket") { Description = "Unix socket that 'dataplane stats' reads (default /run/dataplane/DEVICE.sock)" };
        var icmpRate = new Option<double>("--icmp-rate") { Description = "ICMP errors per second per loop at most (0: none)", DefaultValueFactory = _ => d.IcmpRate }
            .InRange(0, double.MaxValue, "the rate must be 0 or more");
        var icmpBurst = new Option<double>("--icmp-burst") { Description = "ICMP errors a loop may send at once after a quiet time", DefaultValueFactory = _ => d.IcmpBurst }
            .InRange(1, double.MaxValue, "the burst must be 1 or more");
        var etcdEndpoints = Parsed("--etcd-endpoints", "etcd v3 endpoints (comma-separated URLs) holding flannel's config and leases",
            ParseEndpoints, "not a comma-separated list of URLs like http://192.0.2.100:2379");
        var etcdPrefix = new Option<string>("--etcd-prefix") { Description = "etcd prefix of flannel's keys", DefaultValueFactory = _ => e.Prefix };
        var etcdTimeout = new Option<double>("--etcd-timeout") { Description = "seconds to wait for etcd per request (and at start)", DefaultValueFactory = _ => e.Timeout.TotalSeconds }
            .InRange(0.5, 3600, "must be 0.5 to 3600 seconds");
        var etcdUser = new Option<string?>("--etcd-username") { Description = "etcd user" };
        var etcdPassword = new Option<string?>("--etcd-password") { Description = "etcd password" };
        var etcdCa = new Option<string?>("--etcd-cafile") { Description = "TLS: the CA that signed etcd's certificate (PEM)" };
        var etcdCert = new Option<string?>("--etcd-certfile") { Description = "TLS: our client certificate (PEM)" };
        var etcdKey = new Option<string?>("--etcd-keyfile") { Description = "TLS: the key of our client certificate (PEM)" };
        var renewMargin = new Option<double>("--subnet-lease-renew-margin") { Description = "minutes before expiry to renew our lease", DefaultValueFactory = _ => e.RenewMargin.TotalMinutes }
            .InRange(0, 24 * 60, "must be 0 to 1440 minutes");
        var leaseTtl = new Option<double>("--etcd-lease-ttl") { Description = "seconds our lease lives in etcd unless renewed (flannel: 24 h)", DefaultValueFactory = _ => e.LeaseTtl.TotalSeconds, Hidden = true }
            .InRange(2, 10 * 24 * 3600, "must be 2 seconds to 10 days");
        var resync = new Option<double>("--etcd-resync") { Description = "seconds between full re-reads of the leases (tests lengthen it to prove the watch)", DefaultValueFactory = _ => e.Resync.TotalSeconds, Hidden = true }
            .InRange(1, 24 * 3600, "must be 1 second to 1 day");
        var vtepMacFile = new Option<string?>("--vtep-mac-file") { Description = "where our VTEP MAC is kept across restarts (etcd, Kubernetes; default /var/lib/dataplane/DEVICE.vtepmac)" };
        KubeOptions k = KubeOptions.Defaults;
        var kubeSubnetMgr = new Option<bool>("--kube-subnet-mgr") { Description = "leases from the Kubernetes API: our subnet is our Node's podCIDR, peers are the Nodes flanneld (or we) annotated" };
        var kubeApiUrl = new Option<string?>("--kube-api-url") { Description = "Kubernetes API server URL (default: the kubeconfig's, else the in-cluster service account's)" };
        var kubeconfig = new Option<string?>("--kubeconfig-file") { Description = "kubeconfig file (default: the in-cluster service account)" };
        var kubePrefix = new Option<string>("--kube-annotation-prefix") { Description = "prefix of the Node annotations that carry the leases", DefaultValueFactory = _ => k.AnnotationPrefix };
        var netConfigPath = new Option<string>("--net-config-path") { Description = "the network config with --kube-subnet-mgr (kube-flannel's ConfigMap key net-conf.json)", DefaultValueFactory = _ => k.NetConfigPath };
        var setUnavailable = new Option<bool>("--set-node-network-unavailable") { Description = "set our Node's NetworkUnavailable condition to False once we forward", DefaultValueFactory = _ => k.SetNodeNetworkUnavailable, Arity = ArgumentArity.ZeroOrOne };
        var kubeResync = new Option<double>("--kube-resync") { Description = "seconds a watch of the nodes runs before they are listed again", DefaultValueFactory = _ => k.Resync.TotalSeconds, Hidden = true }
            .InRange(1, 24 * 3600, "must be 1 second to 1 day");
        var assist = new Option<string>("--assist") { Description = "for measuring: the inbound loop reads the host's answers right after its writes", Hidden = true, DefaultValueFactory = _ => "on" };
        assist.AcceptOnlyFromAmong("on", "off");
        var injectFault = new Option<FaultInjection.Loop>("--inject-fault") { Description = "test seam: make this loop's edge throw on its first packet", Hidden = true };

        var cmd = new Command("run", "run this node's data plane (each flag says whether flanneld has it)")
        {
            leases, publicIp, publicIpv6, iface, device, source, backend, port, subnetFile, ipMasq, offload, batch, queues, metrics, controlSocket, icmpRate, icmpBurst,
            etcdEndpoints, etcdPrefix, etcdTimeout, etcdUser, etcdPassword, etcdCa, etcdCert, etcdKey, renewMargin, vtepMacFile, leaseTtl, resync,
            kubeSubnetMgr, kubeApiUrl, kubeconfig, kubePrefix, netConfigPath, setUnavailable, kubeResync, assist, injectFault,
        };
        MarkFlanneldFlags(cmd);
        cmd.SetAction(r =>
        {
            string vtepMacPath = r.GetValue(vtepMacFile) ?? VtepMacFile.DefaultPath(r.GetValue(device) ?? BackendProfile.Vxlan.DefaultDevice);
            var options = new RunOptions
            {
                LeasesPath = r.GetValue(leases),
                PublicIp = r.GetValue(publicIp),
                PublicIpv6 = r.GetValue(publicIpv6),
                Iface = r.GetValue(iface),
                Device = r.GetValue(device),
                Source = Enum.Parse<DeviceSource>(r.GetValue(source)!, ignoreCase: true),
                Backend = r.GetValue(backend),
                Port = r.GetValue(port),
                SubnetFile = r.GetValue(subnetFile)!,
                IpMasq = r.GetValue(ipMasq),
                Offload = r.GetValue(offload) == "on",
                Batch = r.GetValue(batch),
                Queues = r.GetValue(queues),
                Metrics = r.GetValue(metrics),
                ControlSocket = r.GetValue(controlSocket),
                IcmpRate = r.GetValue(icmpRate),
                IcmpBurst = r.GetValue(icmpBurst),
                InjectFault = r.GetValue(injectFault),
                Assist = r.GetValue(assist) == "on",

                // An array option not given reads as an empty array.
                Etcd = r.GetValue(etcdEndpoints) is { Length: > 0 } endpoints
                    ? new EtcdOptions
                    {
                        Endpoints = endpoints,
                        Prefix = r.GetValue(etcdPrefix)!.TrimEnd('/'),
                        Timeout = TimeSpan.FromSeconds(r.GetValue(etcdTimeout)),
                        Username = r.GetValue(etcdUser),
                        Password = r.GetValue(etcdPassword),
                        CaFile = r.GetValue(etcdCa),
                        CertFile = r.GetValue(etcdCert),
                        KeyFile = r.GetValue(etcdKey),
                        RenewMargin = TimeSpan.FromMinutes(r.GetValue(renewMargin)),
                        LeaseTtl = TimeSpan.FromSeconds(r.GetValue(leaseTtl)),
                        Resync = TimeSpan.FromSeconds(r.GetValue(resync)),
                        VtepMacFile = vtepMacPath,
                    }
                    : null,
                Kube = r.GetValue(kubeSubnetMgr)
                    ? new KubeOptions
                    {
                        ApiUrl = r.GetValue(kubeApiUrl),
                        KubeconfigFile = r.GetValue(kubeconfig),
                        AnnotationPrefix = r.GetValue(kubePrefix)!,
                        NetConfigPath = r.GetValue(netConfigPath)!,
                        SetNodeNetworkUnavailable = r.GetValue(setUnavailable),
                        Resync = TimeSpan.FromSeconds(r.GetValue(kubeResync)),
                        VtepMacFile = vtepMacPath,
                        // flanneld's environment: the DaemonSet sets NODE_NAME (or POD_NAME and POD_NAMESPACE) from the downward API.
                        NodeName = Environment.GetEnvironmentVariable("NODE_NAME"),
                        PodName = Environment.GetEnvironmentVariable("POD_NAME"),
                        PodNamespace = Environment.GetEnvironmentVariable("POD_NAMESPACE"),
                    }
                    : null,
            };
            using Serilog.Core.Logger log = createLogger();
            try
            {
                return NodeRunner.Run(options, log);
            }
            catch (Exception ex) when (ex is ConfigException or NativeException)
            {
                return Program.Fail(ex.Message);
            }
        });
        return cmd;
    }

    /// <summary>Our flags that are flanneld's too, with the same name and meaning (the rest are ours alone).</summary>
    public static readonly IReadOnlySet<string> FlanneldFlags = new HashSet<string>(StringComparer.Ordinal)
    {
        "--public-ip", "--public-ipv6", "--iface", "--ip-masq", "--subnet-file", "--etcd-endpoints", "--etcd-prefix", "--etcd-username", "--etcd-password",
        "--etcd-cafile", "--etcd-certfile", "--etcd-keyfile", "--subnet-lease-renew-margin", "--kube-subnet-mgr", "--kube-api-url",
        "--kubeconfig-file", "--kube-annotation-prefix", "--net-config-path", "--set-node-network-unavailable",
    };

    /// <summary>Each flag's help says whether flanneld has it: "[flanneld: the same]" or "[not in flanneld: why]".</summary>
    private static void MarkFlanneldFlags(Command cmd)
    {
        foreach (Option o in cmd.Options.Where(o => o.Name.StartsWith("--", StringComparison.Ordinal)))
        {
            o.Description += FlanneldFlags.Contains(o.Name) ? " [flanneld: the same]" : o.Name switch
            {
                "--leases" => " [not in flanneld]",
                "--backend" or "--port" => " [not in flanneld: it takes them from the config only]",
                "--vtep-mac-file" => " [not in flanneld: it keeps the MAC with its lease]",
                "--metrics" => " [not in flanneld: it serves --healthz-port instead]",
                "--source" => " [not in flanneld: it needs /dev/net/tun for the udp backend]",
                _ => " [not in flanneld]",
            };
        }
    }

    /// <summary>"127.0.0.1:9100", or ":9100" for every address.</summary>
    private static IPEndPoint? ParseEndpoint(string text) =>
        IPEndPoint.TryParse(text.StartsWith(':') ? "0.0.0.0" + text : text, out IPEndPoint? ep) && ep.Port != 0 ? ep : null;

    /// <summary>"http://192.0.2.100:2379,https://..." as a list of absolute http(s) URLs.</summary>
    private static string[]? ParseEndpoints(string text)
    {
        string[] urls = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return urls.Length > 0 && urls.All(u => Uri.TryCreate(u, UriKind.Absolute, out Uri? uri) && uri.Scheme is "http" or "https") ? urls : null;
    }
}
