using System.CommandLine;
using System.Net;
using System.Net.Sockets;
using Dataplane.Engine;
using Dataplane.Leases;
using Dataplane.Leases.Etcd;
using Dataplane.Leases.Kube;
using Dataplane.Node;
using static Dataplane.Cli.TypedOptions;

namespace Dataplane.Cli;

/// <summary>
/// The flags of <c>dataplane run</c>, one class per concern. Each flag is declared once, with its
/// help, its check and its flanneld remark; each default comes from <see cref="RunOptions.Defaults"/>,
/// <see cref="EtcdOptions.Defaults"/> or <see cref="KubeOptions.Defaults"/>, so it is stated once.
/// Each group reads its part of <see cref="RunOptions"/> back from a parse.
/// </summary>
internal static class RunFlags
{
    /// <summary>One concern's flags, and how they set their part of <see cref="RunOptions"/>.</summary>
    public interface IGroup
    {
        IEnumerable<Option> Options { get; }

        RunOptions Read(ParseResult r, RunOptions o);
    }

    /// <summary>Where this node sits on the underlay: its addresses and interface.</summary>
    public sealed class Underlay : IGroup
    {
        public Option<IPAddress?> PublicIp { get; } = Parsed("--public-ip", "this node's underlay address (default: the address of --iface)",
            t => IPAddress.TryParse(t, out IPAddress? a) && a.AddressFamily == AddressFamily.InterNetwork && t.Count(c => c == '.') == 3 ? a : null,
            "not an IPv4 address").Flanneld();

        public Option<IPAddress?> PublicIpv6 { get; } = Parsed("--public-ipv6",
            "this node's IPv6 underlay address, for a network config with EnableIPv6 (default: the lease's PublicIPv6, else the first global IPv6 address of --iface)",
            t => IPAddress.TryParse(t, out IPAddress? a) && a.AddressFamily == AddressFamily.InterNetworkV6 && !a.IsIPv4MappedToIPv6 && a.ScopeId == 0
                && !a.IsIPv6LinkLocal && !a.IsIPv6Multicast && !a.Equals(IPAddress.IPv6Any) && !a.Equals(IPAddress.IPv6Loopback) ? a : null,
            "not a global IPv6 address").Flanneld();

        public Option<string[]> Iface { get; } = new Option<string[]>("--iface")
        {
            Description = "the underlay interface, a name or an address of this host; repeat it to try each in order, the first found wins "
                + "(default: the default route's interface)",
        }.Flanneld();

        public Option<string[]> IfaceRegex { get; } = IfaceRegexOption().Flanneld();

        public Option<IPAddress?> IfaceCanReach { get; } = Parsed("--iface-can-reach",
            "the underlay interface is the one this address is routed through (what ip route get ADDRESS says), tried after --iface and --iface-regex",
            t => IPAddress.TryParse(t, out IPAddress? a) ? a : null, "not an IP address").Flanneld();

        public IEnumerable<Option> Options => [PublicIp, PublicIpv6, Iface, IfaceRegex, IfaceCanReach];

        public RunOptions Read(ParseResult r, RunOptions o) => o with
        {
            PublicIp = r.GetValue(PublicIp),
            PublicIpv6 = r.GetValue(PublicIpv6),
            Ifaces = r.GetValue(Iface) ?? [],
            IfaceRegexes = r.GetValue(IfaceRegex) ?? [],
            IfaceCanReach = r.GetValue(IfaceCanReach),
        };

        private static Option<string[]> IfaceRegexOption()
        {
            var regex = new Option<string[]>("--iface-regex")
            {
                Description = "a regular expression matched against every interface's IPv4 addresses, then their names; repeat it to try each in order "
                    + "(after --iface)",
            };
            regex.Validators.Add(r =>
            {
                foreach (string pattern in r.GetValueOrDefault<string[]>() ?? [])
                {
                    try
                    {
                        _ = new System.Text.RegularExpressions.Regex(pattern);
                    }
                    catch (ArgumentException e)
                    {
                        r.AddError($"--iface-regex {pattern}: not a regular expression ({e.Message})");
                    }
                }
            });
            return regex;
        }
    }

    /// <summary>The device side: its name, what it is, and how it is read (offloads, batches, queues).</summary>
    public sealed class Device : IGroup
    {
        private static readonly RunOptions D = RunOptions.Defaults;

        public Option<string?> Name { get; } = DeviceName();

        public Option<string> Source { get; } = Choice("--source",
            "the device side: tun (/dev/net/tun), packet (a veth pair; the data plane reads its other end with AF_PACKET), auto (tun when /dev/net/tun opens, else packet)",
            D.Source.ToString().ToLowerInvariant(), "auto", "tun", "packet").NotInFlanneld("it needs /dev/net/tun for the udp backend");

        public Option<string> Offload { get; } = Choice("--offload", "on: TUN TSO/GRO and UDP GSO/GRO where the kernel has them; off: plain packets",
            D.Offload ? "on" : "off", "on", "off").NotInFlanneld();

        public Option<int> Batch { get; } = new Option<int>("--batch")
        {
            Description = "packets per system call at most (1: one packet per call, the naive mode)",
            DefaultValueFactory = _ => D.Batch,
        }.InRange(1, EngineSettings.MaxBatch, $"must be 1 to {EngineSettings.MaxBatch}").NotInFlanneld();

        public Option<int> Queues { get; } = new Option<int>("--queues")
        {
            Description = "TUN queues and sockets, each with its own outbound and inbound loop and, with more than one, its own send port (default: the number of cores)",
            DefaultValueFactory = _ => D.Queues,
        }.InRange(1, RunOptions.MaxQueues, $"must be 1 to {RunOptions.MaxQueues}").NotInFlanneld();

        public Option<string> OnExit { get; } = Choice("--on-exit",
            "what a stop does with the device, its address and route and the --ip-masq rules: remove them, or keep them (the TUN persistent) "
            + "for the next start to take over, as flanneld keeps flannel.1; a crash leaves what keep keeps",
            D.OnExit.ToString().ToLowerInvariant(), "remove", "keep").NotInFlanneld("flanneld always keeps flannel.1");

        public Option<string> AfterHandover { get; } = Choice("--after-handover",
            "what this process does once a new one has taken its device and sockets over (a start beside it): exit 0, or wait for SIGTERM "
            + "holding nothing (a DaemonSet's pod, which would be restarted if it exited)",
            D.AfterHandover.ToString().ToLowerInvariant(), "exit", "wait").NotInFlanneld("it has no hand-over");

        public IEnumerable<Option> Options => [Name, Source, Offload, Batch, Queues, OnExit, AfterHandover];

        public RunOptions Read(ParseResult r, RunOptions o) => o with
        {
            Device = r.GetValue(Name),
            OnExit = Enum.Parse<OnExit>(r.GetValue(OnExit)!, ignoreCase: true),
            AfterHandover = Enum.Parse<AfterHandover>(r.GetValue(AfterHandover)!, ignoreCase: true),
            Source = Enum.Parse<DeviceSource>(r.GetValue(Source)!, ignoreCase: true),
            Offload = r.GetValue(Offload) == "on",
            Batch = r.GetValue(Batch),
            Queues = r.GetValue(Queues),
        };

        private static Option<string?> DeviceName()
        {
            var device = new Option<string?>("--device") { Description = "device name (default flannel0 for udp, flannel.1 for vxlan)" };
            device.Validators.Add(r =>
            {
                string? name = r.GetValueOrDefault<string?>();
                if (name is not null && (name.Length is 0 or > 15 || name.Contains('/') || name.Any(char.IsWhiteSpace)))
                {
                    r.AddError($"--device {name}: not a valid interface name (1 to 15 characters, no '/' or spaces)");
                }
            });
            return device.NotInFlanneld();
        }
    }

    /// <summary>The backend in force when it is not the config's.</summary>
    public sealed class Backend : IGroup
    {
        private const string FromConfig = "it takes them from the config only";

        public Option<BackendKind?> Kind { get; } = ParsedValue<BackendKind>("--backend", "udp or vxlan (default: the config's Backend.Type)",
            t => NetworkConfig.TryParseBackend(t, out BackendKind b) ? b : null, "unknown backend (supported: udp, vxlan)").NotInFlanneld(FromConfig);

        public Option<int?> Port { get; } = PortOption().NotInFlanneld(FromConfig);

        public IEnumerable<Option> Options => [Kind, Port];

        public RunOptions Read(ParseResult r, RunOptions o) => o with { Backend = r.GetValue(Kind), Port = r.GetValue(Port) };

        private static Option<int?> PortOption()
        {
            var port = new Option<int?>("--port") { Description = "UDP port, the same on every node (default: the config's, else 8285 udp / 8472 vxlan)" };
            port.Validators.Add(r =>
            {
                if (r.GetValueOrDefault<int?>() is int p && p is < 1 or > 65535)
                {
                    r.AddError($"--port {p}: not a UDP port");
                }
            });
            return port;
        }
    }

    /// <summary>What the node leaves on the host for others: subnet.env, the masquerade rules, the VTEP MAC file.</summary>
    public sealed class Host : IGroup
    {
        public Option<string> SubnetFile { get; } = new Option<string>("--subnet-file")
        {
            Description = "where to write subnet.env for the CNI plugin",
            DefaultValueFactory = _ => RunOptions.Defaults.SubnetFile,
        }.Flanneld();

        public Option<bool> IpMasq { get; } = new Option<bool>("--ip-masq")
        {
            Description = "install flanneld's masquerade rules for traffic leaving the overlay (removed on stop)",
        }.Flanneld();

        public Option<string?> VtepMacFile { get; } = new Option<string?>("--vtep-mac-file")
        {
            Description = "where our VTEP MAC is kept across restarts (etcd, Kubernetes; default /var/lib/dataplane/DEVICE.vtepmac)",
        }.NotInFlanneld("it keeps the MAC with its lease");

        public Option<string?> ReadyFile { get; } = new Option<string?>("--ready-file")
        {
            Description = "a file that exists while this process forwards: written at Ready (after a hand-over, once it took every queue), "
                + "removed when it stops or hands over (a readiness probe: test -f FILE)",
        }.NotInFlanneld();

        public Option<bool> ForwardRules { get; } = new Option<bool>("--iptables-forward-rules")
        {
            Description = "accept the overlay's traffic in FORWARD (filter FLANNEL-FWD), whatever its policy; --iptables-forward-rules=false: leave FORWARD alone",
            DefaultValueFactory = _ => RunOptions.Defaults.ForwardRules,
        }.Flanneld();

        public Option<int> RulesResync { get; } = new Option<int>("--iptables-resync")
        {
            Description = "seconds between checks of the rules and the blackhole route; what someone else removed is put back",
            DefaultValueFactory = _ => (int)RunOptions.Defaults.RulesResync.TotalSeconds,
        }.InRange(1, 86400, "must be 1 to 86400 seconds").Flanneld();

        public Option<bool> BlackholeRoute { get; } = new Option<bool>("--ip-blackhole-route")
        {
            Description = "a blackhole route for our subnet (traffic to an address no pod has is dropped here), when no other route covers it",
        }.Flanneld();

        public Option<bool> FullyRandomDisable { get; } = new Option<bool>("--ip-masq-fully-random-disable")
        {
            Description = "masquerade without --random-fully",
        }.Flanneld();

        public IEnumerable<Option> Options => [SubnetFile, IpMasq, ForwardRules, RulesResync, BlackholeRoute, FullyRandomDisable, VtepMacFile, ReadyFile];

        public RunOptions Read(ParseResult r, RunOptions o) => o with
        {
            SubnetFile = r.GetValue(SubnetFile)!,
            IpMasq = r.GetValue(IpMasq),
            ForwardRules = r.GetValue(ForwardRules),
            RulesResync = TimeSpan.FromSeconds(r.GetValue(RulesResync)),
            BlackholeRoute = r.GetValue(BlackholeRoute),
            MasqueradeFullyRandomDisable = r.GetValue(FullyRandomDisable),
            ReadyFile = r.GetValue(ReadyFile),
        };

        /// <summary>The VTEP MAC file: the flag's, else the device's default.</summary>
        public string VtepMacPath(ParseResult r, string? device) =>
            r.GetValue(VtepMacFile) ?? Leases.VtepMacFile.DefaultPath(device ?? BackendProfile.Vxlan.DefaultDevice);
    }

    /// <summary>How the node is watched and measured: metrics, the control socket, the loops' ICMP budget, hidden test seams.</summary>
    public sealed class Operation : IGroup
    {
        private static readonly RunOptions D = RunOptions.Defaults;

        public Option<IPEndPoint?> Metrics { get; } = Parsed("--metrics",
            "serve Prometheus metrics at http://ADDR:PORT/metrics (for example 127.0.0.1:9100, or :9100 for every address)",
            ParseEndpoint, "not ADDR:PORT (for example 127.0.0.1:9100 or :9100)").NotInFlanneld();

        public Option<IPAddress?> HealthzIp { get; } = Parsed("--healthz-ip",
            "the address /healthz and /readyz are served on (default 0.0.0.0, every address)",
            t => IPAddress.TryParse(t, out IPAddress? a) ? a : null, "not an IP address").Flanneld();

        public Option<int> HealthzPort { get; } = new Option<int>("--healthz-port")
        {
            Description = "serve /healthz (200 while the process and its packet loops run) and /readyz (200 while it forwards: lease held, "
                + "peers loaded, every queue running) on this port; 0: none",
        }.InRange(0, 65535, "must be 0 to 65535").Flanneld();

        public Option<string?> ControlSocket { get; } = new Option<string?>("--control-socket")
        {
            Description = "Unix socket that 'dataplane stats', 'capture' and 'doctor' talk to (default /run/dataplane/DEVICE.sock)",
        }.NotInFlanneld();

        public Option<double> IcmpRate { get; } = new Option<double>("--icmp-rate")
        {
            Description = "ICMP errors per second per loop at most (0: none)",
            DefaultValueFactory = _ => D.IcmpRate,
        }.InRange(0, double.MaxValue, "the rate must be 0 or more").NotInFlanneld();

        public Option<double> IcmpBurst { get; } = new Option<double>("--icmp-burst")
        {
            Description = "ICMP errors a loop may send at once after a quiet time",
            DefaultValueFactory = _ => D.IcmpBurst,
        }.InRange(1, double.MaxValue, "the burst must be 1 or more").NotInFlanneld();

        public Option<string> Assist { get; } = Choice("--assist", "for measuring: the inbound loop reads the host's answers right after its writes",
            "on", "on", "off").Hidden().NotInFlanneld();

        public Option<FaultInjection.Loop> InjectFault { get; } = new Option<FaultInjection.Loop>("--inject-fault")
        {
            Description = "test seam: make this loop's edge throw on its first packet",
            Hidden = true,
        }.NotInFlanneld();

        public IEnumerable<Option> Options => [Metrics, HealthzIp, HealthzPort, ControlSocket, IcmpRate, IcmpBurst, Assist, InjectFault];

        public RunOptions Read(ParseResult r, RunOptions o) => o with
        {
            Metrics = r.GetValue(Metrics),
            Healthz = r.GetValue(HealthzPort) is int port and > 0 ? new IPEndPoint(r.GetValue(HealthzIp) ?? IPAddress.Any, port) : null,
            ControlSocket = r.GetValue(ControlSocket),
            IcmpRate = r.GetValue(IcmpRate),
            IcmpBurst = r.GetValue(IcmpBurst),
            Assist = r.GetValue(Assist) == "on",
            InjectFault = r.GetValue(InjectFault),
        };

        /// <summary>"127.0.0.1:9100", or ":9100" for every address.</summary>
        private static IPEndPoint? ParseEndpoint(string text) =>
            IPEndPoint.TryParse(text.StartsWith(':') ? "0.0.0.0" + text : text, out IPEndPoint? ep) && ep.Port != 0 ? ep : null;
    }

    /// <summary>An option that takes one of <paramref name="choices"/>, with its default.</summary>
    private static Option<string> Choice(string name, string description, string defaultValue, params string[] choices)
    {
        var option = new Option<string>(name) { Description = description, DefaultValueFactory = _ => defaultValue };
        option.AcceptOnlyFromAmong(choices);
        return option;
    }

    private static T Hidden<T>(this T option) where T : Option
    {
        option.Hidden = true;
        return option;
    }
}
