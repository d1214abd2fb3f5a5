using System.CommandLine;
using Dataplane.Demo;
using Dataplane.Leases;
using Dataplane.Node;
using Dataplane.TunTap;
using Serilog;

namespace Dataplane.Cli;

/// <summary>The command line: <c>run</c>, <c>demo</c>, and hidden pod traffic tools used by the demo and tests.</summary>
internal static class Program
{
    public static int Main(string[] args)
    {
        RootCommand root = new("Dataplane: a userspace UDP/VXLAN data plane for flannel-style overlay networks")
        {
            RunCommand(),
            DemoCommandLine(),
            StatsCommandLine(),
            BenchCommandLine(),
            PodSink(),
            PodSend(),
            PodPing(),
            Flood(),
        };
        // The commands handle SIGINT/SIGTERM themselves (run: clean stop; demo: remove the namespaces).
        return root.Parse(args).Invoke(new InvocationConfiguration { ProcessTerminationTimeout = null });
    }

    private static Command RunCommand()
    {
        var leases = new Option<string?>("--leases") { Description = "the static cluster file (flannel's schema: {\"config\":..., \"subnets\":{...}})" };
        var publicIp = new Option<string?>("--public-ip") { Description = "this node's underlay address (default: the address of --iface)" };
        var iface = new Option<string?>("--iface") { Description = "the underlay interface (default: the one of the default route)" };
        var device = new Option<string?>("--device") { Description = "device name (default flannel0 for udp, flannel.1 for vxlan)" };
        var backend = new Option<string?>("--backend") { Description = "udp or vxlan (default: the config's Backend.Type)" };
        var port = new Option<int?>("--port") { Description = "UDP port (default: the config's, else 8285 udp / 8472 vxlan)" };
        var subnetFile = new Option<string>("--subnet-file") { Description = "where to write subnet.env", DefaultValueFactory = _ => "/run/flannel/subnet.env" };
        var ipMasq = new Option<bool>("--ip-masq") { Description = "install flanneld's masquerade rules for traffic leaving the overlay (removed on stop)" };
        var offload = new Option<string>("--offload") { Description = "on: TUN TSO/GRO and UDP GSO/GRO where the kernel has them; off: plain packets", DefaultValueFactory = _ => "on" };
        offload.AcceptOnlyFromAmong("on", "off");
        var batch = new Option<int>("--batch") { Description = "packets per system call at most (1: one packet per call, the naive mode)", DefaultValueFactory = _ => 64 };
        var queues = new Option<int>("--queues") { Description = "TUN queues and sockets, each with its own outbound and inbound loop (default: the number of cores)", DefaultValueFactory = _ => Environment.ProcessorCount };
        var metrics = new Option<string?>("--metrics") { Description = "serve Prometheus metrics at http://ADDR:PORT/metrics (for example 127.0.0.1:9100)" };
        var controlSocket = new Option<string?>("--control-socket") { Description = "Unix socket that 'dataplane stats' reads (default /run/dataplane/DEVICE.sock)" };
        var icmpRate = new Option<double>("--icmp-rate") { Description = "ICMP errors per second per loop at most (0: none)", DefaultValueFactory = _ => 1000 };
        var icmpBurst = new Option<double>("--icmp-burst") { Description = "ICMP errors a loop may send at once after a quiet time", DefaultValueFactory = _ => 50 };
        var etcdEndpoints = new Option<string?>("--etcd-endpoints") { Description = "etcd v3 endpoints (comma-separated URLs) holding flannel's config and leases" };
        var etcdPrefix = new Option<string>("--etcd-prefix") { Description = "etcd prefix of flannel's keys", DefaultValueFactory = _ => "/coreos.com/network" };
        var etcdTimeout = new Option<double>("--etcd-timeout") { Description = "seconds to wait for etcd per request (and at start)", DefaultValueFactory = _ => 5 };
        var etcdUser = new Option<string?>("--etcd-username") { Description = "etcd user" };
        var etcdCa = new Option<string?>("--etcd-cafile") { Description = "TLS: the CA that signed etcd's certificate (PEM)" };
        var etcdCert = new Option<string?>("--etcd-certfile") { Description = "TLS: our client certificate (PEM)" };
        var etcdKey = new Option<string?>("--etcd-keyfile") { Description = "TLS: the key of our client certificate (PEM)" };
        var etcdPassword = new Option<string?>("--etcd-password") { Description = "etcd password" };
        var renewMargin = new Option<double>("--subnet-lease-renew-margin") { Description = "minutes before expiry to renew our lease", DefaultValueFactory = _ => 60 };
        var leaseTtl = new Option<double>("--etcd-lease-ttl") { Description = "seconds our lease lives in etcd unless renewed (flannel: 24 h)", DefaultValueFactory = _ => 24 * 3600, Hidden = true };
        var vtepMacFile = new Option<string?>("--vtep-mac-file") { Description = "where our VTEP MAC is kept across restarts (etcd; default /var/lib/dataplane/DEVICE.vtepmac)" };
        var cmd = new Command("run", "run this node's data plane") { leases, publicIp, iface, device, backend, port, subnetFile, ipMasq, offload, batch, queues, metrics, controlSocket, icmpRate, icmpBurst,
            etcdEndpoints, etcdPrefix, etcdTimeout, etcdUser, etcdPassword, etcdCa, etcdCert, etcdKey, renewMargin, vtepMacFile, leaseTtl };
        cmd.SetAction(r =>
        {
            using Serilog.Core.Logger log = CreateLogger();
            var options = new RunOptions
            {
                LeasesPath = r.GetValue(leases),
                PublicIp = r.GetValue(publicIp),
                Iface = r.GetValue(iface),
                Device = r.GetValue(device),
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
                Etcd = r.GetValue(etcdEndpoints) is string endpoints
                    ? new Leases.EtcdOptions
                    {
                        Endpoints = endpoints.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
                        Prefix = r.GetValue(etcdPrefix)!.TrimEnd('/'),
                        Timeout = TimeSpan.FromSeconds(Math.Max(0.5, r.GetValue(etcdTimeout))),
                        Username = r.GetValue(etcdUser),
                        Password = r.GetValue(etcdPassword),
                        CaFile = r.GetValue(etcdCa),
                        CertFile = r.GetValue(etcdCert),
                        KeyFile = r.GetValue(etcdKey),
                        RenewMargin = TimeSpan.FromMinutes(r.GetValue(renewMargin)),
                        LeaseTtl = TimeSpan.FromSeconds(Math.Max(2, r.GetValue(leaseTtl))),
                        VtepMacFile = r.GetValue(vtepMacFile) ?? $"/var/lib/dataplane/{r.GetValue(device) ?? "flannel.1"}.vtepmac",
                    }
                    : null,
            };
            try
            {
                return NodeRunner.Run(options, log);
            }
            catch (ConfigException e)
            {
                return Fail(e.Message);
            }
            catch (NativeException e)
            {
                return Fail(e.Message);
            }
        });
        return cmd;
    }

    private static Command DemoCommandLine()
    {
        var seconds = new Option<double>("--seconds") { Description = "length of each TCP transfer", DefaultValueFactory = _ => 5 };
        var cmd = new Command("demo", "two nodes and two pods in network namespaces: ping and TCP over both backends") { seconds };
        cmd.SetAction(r => DemoCommand.Run(r.GetValue(seconds), Console.Out));
        return cmd;
    }

    private static Command StatsCommandLine()
    {
        var socket = new Option<string?>("--socket") { Description = "the node's control socket (default /run/dataplane/DEVICE.sock)" };
        var device = new Option<string>("--device") { Description = "the node's device, to find its control socket", DefaultValueFactory = _ => "flannel.1" };
        var once = new Option<bool>("--once") { Description = "print one snapshot and exit" };
        var interval = new Option<double>("--interval") { Description = "seconds between refreshes", DefaultValueFactory = _ => 1 };
        var cmd = new Command("stats", "counters of a running node, live") { socket, device, once, interval };
        cmd.SetAction(r => Metrics.StatsCommand.Run(r.GetValue(socket) ?? Metrics.StatsCommand.DefaultSocket(r.GetValue(device)!),
            r.GetValue(once), Math.Max(0.2, r.GetValue(interval)), Console.Out));
        return cmd;
    }

    private static Command BenchCommandLine()
    {
        var seconds = new Option<double>("--seconds") { Description = "length of each TCP test", DefaultValueFactory = _ => 10 };
        var udpSeconds = new Option<double>("--udp-seconds") { Description = "length of each 64-byte UDP probe", DefaultValueFactory = _ => 3 };
        var only = new Option<string?>("--only") { Description = "comma-separated configurations (host-gw, dataplane-vxlan, dataplane-udp, naive-udp); kernel-vxlan always runs" };
        var rounds = new Option<int>("--rounds") { Description = "measure every configuration this many times, alternating; report medians", DefaultValueFactory = _ => 1 };
        var output = new Option<string>("--out") { Description = "folder for the JSON and SVG results", DefaultValueFactory = _ => "bench/results" };
        var queues = new Option<int>("--queues") { Description = "queues per node for this data plane (default: the number of cores)", DefaultValueFactory = _ => Environment.ProcessorCount };
        var cmd = new Command("bench", "compare this data plane with kernel VXLAN, host-gw and the naive mode in namespaces") { seconds, udpSeconds, only, rounds, queues, output };
        cmd.SetAction(r => Bench.BenchCommand.Run(r.GetValue(seconds), r.GetValue(udpSeconds), r.GetValue(only), Math.Max(1, r.GetValue(rounds)), Math.Max(1, r.GetValue(queues)), r.GetValue(output)!, Console.Out));
        return cmd;
    }

    private static Command PodSink()
    {
        var port = new Option<int>("--port") { DefaultValueFactory = _ => 5201 };
        var timeout = new Option<int>("--timeout") { DefaultValueFactory = _ => 60 };
        var cmd = new Command("pod-sink", "receive one TCP stream, print its size and SHA-256") { port, timeout };
        cmd.Hidden = true;
        cmd.SetAction(r => PodTraffic.Sink(r.GetValue(port), r.GetValue(timeout), Console.Out));
        return cmd;
    }

    private static Command PodSend()
    {
        var to = new Option<string>("--to") { Required = true };
        var bytes = new Option<long?>("--bytes");
        var seconds = new Option<double?>("--seconds");
        var cmd = new Command("pod-send", "send a seeded TCP stream, print its size, rate and SHA-256") { to, bytes, seconds };
        cmd.Hidden = true;
        cmd.SetAction(r =>
        {
            string target = r.GetValue(to)!;
            int colon = target.LastIndexOf(':');
            return PodTraffic.Send(target[..colon], int.Parse(target[(colon + 1)..], System.Globalization.CultureInfo.InvariantCulture),
                r.GetValue(bytes), r.GetValue(seconds) ?? (r.GetValue(bytes) is null ? 5 : null), Console.Out);
        });
        return cmd;
    }

    private static Command PodPing()
    {
        var host = new Argument<string>("host");
        var count = new Option<int>("--count") { DefaultValueFactory = _ => 5 };
        var cmd = new Command("pod-ping", "ICMP echo") { host, count };
        cmd.Hidden = true;
        cmd.SetAction(r => PodTraffic.Ping(r.GetValue(host)!, r.GetValue(count), Console.Out));
        return cmd;
    }

    private static Command Flood()
    {
        var from = new Option<string>("--from") { Required = true };
        var to = new Option<string>("--to") { Required = true };
        var count = new Option<int>("--count") { DefaultValueFactory = _ => 300_000 };
        var seconds = new Option<double>("--seconds") { DefaultValueFactory = _ => 10 };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 1 };
        var cmd = new Command("flood", "random datagrams to a node, bounded in count and time (fault tests)") { from, to, count, seconds, seed };
        cmd.Hidden = true;
        cmd.SetAction(r => GarbageFlood.Run(r.GetValue(from)!, r.GetValue(to)!, r.GetValue(count), r.GetValue(seconds), r.GetValue(seed), Console.Out));
        return cmd;
    }

    private static Serilog.Core.Logger CreateLogger() => new LoggerConfiguration()
        .MinimumLevel.Information()
        .WriteTo.Console(outputTemplate: "{Timestamp:HH:mm:ss.fff} {Level:u3} {Message:lj}{NewLine}{Exception}")
        .CreateLogger();

    private static int Fail(string message)
    {
        Console.Error.WriteLine($"dataplane: {message}");
        return 1;
    }
}
