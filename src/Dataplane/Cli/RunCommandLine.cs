using System.CommandLine;
using Dataplane.Node;
using Dataplane.TunTap;

namespace Dataplane.Cli;

/// <summary>
/// <c>dataplane run</c>: the node's flags, typed and checked here (addresses, enums, host:port,
/// ranges), declared by concern in <see cref="RunFlags"/> and <see cref="LeaseFlags"/>. What can
/// only be checked against the host or the leases (the interface, our lease, the device) is
/// checked by <see cref="NodeRunner"/> before anything is created.
/// </summary>
internal static class RunCommandLine
{
    public static Command Create(Func<Serilog.Core.Logger> createLogger)
    {
        var host = new RunFlags.Host();
        // In help order; the device group is read before the lease stores that name its VTEP MAC file after it.
        RunFlags.IGroup[] groups =
        [
            new LeaseFlags.File(), new RunFlags.Underlay(), new RunFlags.Device(), new RunFlags.Backend(), host,
            new LeaseFlags.Etcd(host), new LeaseFlags.Kube(host), new RunFlags.Operation(),
        ];
        var cmd = new Command("run", "run this node's data plane (each flag says whether flanneld has it)");
        foreach (Option o in groups.SelectMany(g => g.Options))
        {
            cmd.Options.Add(o);
        }
        // flanneld's --version: the release (and the commit it was built from), then exit.
        var version = new Option<bool>("--version") { Description = "print the version and exit" }.Flanneld();
        cmd.Options.Add(version);
        cmd.SetAction(r =>
        {
            if (r.GetValue(version))
            {
                Console.WriteLine(Program.Version);
                return 0;
            }
            RunOptions options = groups.Aggregate(RunOptions.Defaults, (o, g) => g.Read(r, o));
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
}
