using System.CommandLine;
using Dataplane.Lab;
using Serilog;

namespace Dataplane.Cli;

/// <summary>The command line: the node's <c>run</c>, <c>stats</c>, <c>capture</c> and <c>doctor</c>, and the lab's <c>demo</c>, <c>bench</c> and hidden pod tools.</summary>
internal static class Program
{
    public static int Main(string[] args)
    {
        RootCommand root = new("Dataplane: a userspace UDP/VXLAN data plane for flannel-style overlay networks")
        {
            RunCommandLine.Create(CreateLogger),
        };
        foreach (Command node in NodeCommands())
        {
            root.Subcommands.Add(node);
        }
        root.Subcommands.Add(UninstallCommandLine());
        foreach (Command lab in LabCommands.All())
        {
            root.Subcommands.Add(lab);
        }
        ParseResult parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            // Bad input is one line that says what is wrong, like every other configuration error.
            return Fail(parsed.Errors[0].Message);
        }
        // The commands handle SIGINT/SIGTERM themselves (run: clean stop; demo: remove the namespaces).
        // No silent exit: System.CommandLine's own handler returns 1 without a word for an
        // OperationCanceledException, so every unexpected exception is said here, in one line.
        try
        {
            return parsed.Invoke(new InvocationConfiguration { ProcessTerminationTimeout = null, EnableDefaultExceptionHandler = false });
        }
        catch (Exception e)
        {
            return Fail($"unexpected {e.GetType().Name}: {e.Message.ReplaceLineEndings(" ")} (a bug: please report it with the command line)");
        }
    }

    /// <summary>The release and the commit it was built from ("0.9.0+COMMIT"), as <c>dataplane --version</c> prints it.</summary>
    internal static string Version =>
        typeof(Program).Assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false)
            .OfType<System.Reflection.AssemblyInformationalVersionAttribute>().FirstOrDefault()?.InformationalVersion ?? "unknown";

    /// <summary>The commands that talk to a running node through its control socket (<see cref="ControlSocketFlags"/>).</summary>
    internal static IEnumerable<Command> NodeCommands() => [StatsCommandLine(), DoctorCommandLine(), CaptureCommandLine()];

    private static Command StatsCommandLine()
    {
        var node = new ControlSocketFlags();
        var once = new Option<bool>("--once") { Description = "print one snapshot and exit" };
        var interval = new Option<double>("--interval") { Description = "seconds between refreshes", DefaultValueFactory = _ => 1 }
            .InRange(0.2, 3600, "must be 0.2 to 3600 seconds");
        var cmd = new Command("stats", "counters of a running node, live") { once, interval };
        node.Options.ToList().ForEach(cmd.Options.Add);
        cmd.SetAction(r => Metrics.StatsCommand.Run(node.Path(r), r.GetValue(once), r.GetValue(interval), Console.Out));
        return cmd;
    }

    private static Command CaptureCommandLine()
    {
        var node = new ControlSocketFlags();
        var write = new Option<string>("-w") { Description = "the pcapng file to write, or - for stdout (| tshark -r - -d udp.port==8472,vxlan)", Required = true };
        var count = new Option<long>("--count") { Description = "stop after this many packets (0: no limit)" }.InRange(0, long.MaxValue, "must be 0 or more");
        var duration = new Option<double>("--duration") { Description = "stop after this many seconds (0: no limit)" }.InRange(0, 86400, "must be 0 to 86400 seconds");
        var peer = new Option<string?>("--peer") { Description = "only what concerns this peer: its public IP, or a subnet (inner source or destination)" };
        var dropsOnly = new Option<bool>("--drops-only") { Description = "only dropped packets, each with its drop reason as the packet comment" };
        var snapLength = new Option<int>("--snaplen") { Description = "bytes kept of each packet", DefaultValueFactory = _ => Capture.CaptureServer.DefaultSnapLength }
            .InRange(64, 262144, "must be 64 to 262144");
        var cmd = new Command("capture", "a running node's inner and outer packets, and its drops with their reasons, as pcapng")
        {
            write, count, duration, peer, dropsOnly, snapLength,
        };
        node.Options.ToList().ForEach(cmd.Options.Add);
        cmd.SetAction(r => Capture.CaptureClient.Run(node.Path(r), r.GetValue(write)!,
            r.GetValue(count), r.GetValue(duration), r.GetValue(peer), r.GetValue(dropsOnly), r.GetValue(snapLength), Console.Error));
        return cmd;
    }

    private static Command DoctorCommandLine()
    {
        var node = new ControlSocketFlags();
        var json = new Option<bool>("--json") { Description = "the checks as JSON" };
        var cniDir = new Option<string>("--cni-dir") { Description = "where the CNI configuration lives", DefaultValueFactory = _ => Doctor.DoctorCommand.DefaultCniDirectory };
        var cmd = new Command("doctor", "check this node as an operator would: PASS/WARN/FAIL per check, with the fix for each failure") { json, cniDir };
        node.Options.ToList().ForEach(cmd.Options.Add);
        cmd.SetAction(r => Doctor.DoctorCommand.Run(node.Path(r), r.GetValue(json), r.GetValue(cniDir)!, Console.Out));
        return cmd;
    }

    private static Command UninstallCommandLine()
    {
        var device = new Option<string?>("--device") { Description = "the device to remove (default: every device of ours, and flannel.1 and flannel0 when they are ours)" };
        var socket = new Option<string?>("--control-socket") { Description = "the node's control socket (default /run/dataplane/DEVICE.sock of each device)" };
        var force = new Option<bool>("--force") { Description = "stop a node still running on the device first (SIGTERM, SIGKILL after 10 s)" };
        var cni = new Option<bool>("--cni") { Description = "also the CNI config and flannel plugin the DaemonSet installs, and cni0: the pods on this node lose their network" };
        var cniConf = new Option<string>("--cni-conf") { Description = "the CNI config --cni removes", DefaultValueFactory = _ => "/etc/cni/net.d/10-flannel.conflist" };
        var cniPlugin = new Option<string>("--cni-plugin") { Description = "the flannel CNI plugin --cni removes", DefaultValueFactory = _ => "/opt/cni/bin/flannel" };
        var release = new Option<bool>("--release-lease")
        {
            Description = "also remove our lease from the store named as the node was run (--etcd-endpoints ..., or --kube-subnet-mgr): peers drop our subnet",
        };
        // The host files and the lease stores are read by run's own flags, so a node's flags can be copied as they are.
        var host = new RunFlags.Host();
        host.SubnetFile.Description = "the subnet.env to remove";
        host.VtepMacFile.Description = "the VTEP MAC file to remove (default /var/lib/dataplane/DEVICE.vtepmac of each device)";
        RunFlags.IGroup[] stores = [new LeaseFlags.Etcd(host), new LeaseFlags.Kube(host)];
        var cmd = new Command("uninstall", "remove what a node of ours made on this host, one line per thing removed; safe to run twice")
        {
            device, socket, host.SubnetFile, host.VtepMacFile, force, cni, cniConf, cniPlugin, release,
        };
        stores.SelectMany(g => g.Options).ToList().ForEach(cmd.Options.Add);
        cmd.SetAction(r =>
        {
            try
            {
                Node.RunOptions leases = stores.Aggregate(Node.RunOptions.Defaults, (o, g) => g.Read(r, o));
                return Node.UninstallCommand.Run(new Node.UninstallCommand.Options(r.GetValue(device), r.GetValue(socket), r.GetValue(host.SubnetFile)!,
                    r.GetValue(host.VtepMacFile), r.GetValue(force), r.GetValue(cni), r.GetValue(cniConf)!, r.GetValue(cniPlugin)!)
                {
                    ReleaseLease = r.GetValue(release),
                    Etcd = leases.Etcd,
                    Kube = leases.Kube,
                }, Console.Out);
            }
            catch (Exception ex) when (ex is ConfigException or TunTap.NativeException)
            {
                return Fail(ex.Message);
            }
        });
        return cmd;
    }

    private static Serilog.Core.Logger CreateLogger() => new LoggerConfiguration()
        .MinimumLevel.Information()
        .WriteTo.Console(outputTemplate: "{Timestamp:HH:mm:ss.fff} {Level:u3} {Message:lj}{NewLine}{Exception}")
        .CreateLogger();

    public static int Fail(string message)
    {
        Console.Error.WriteLine($"dataplane: {message.ReplaceLineEndings(" ")}"); // one line, always
        return 1;
    }
}
