using System.CommandLine;
using Dataplane.Cli;

namespace Dataplane.Integration.Tests;

/// <summary>
/// <c>dataplane run --help</c> says of every flag, once, whether flanneld has it, and the flags that
/// flanneld has (its main.go flag names, listed here independently of the declarations) say so.
/// </summary>
public class RunHelpTests
{
    private static readonly string[] FlanneldNames =
    [
        "--public-ip", "--public-ipv6", "--iface", "--ip-masq", "--subnet-file", "--etcd-endpoints", "--etcd-prefix", "--etcd-username", "--etcd-password",
        "--etcd-cafile", "--etcd-certfile", "--etcd-keyfile", "--subnet-lease-renew-margin", "--kube-subnet-mgr", "--kube-api-url",
        "--kubeconfig-file", "--kube-annotation-prefix", "--net-config-path", "--set-node-network-unavailable",
        "--healthz-ip", "--healthz-port", "--version", "--iptables-forward-rules", "--iptables-resync", "--ip-blackhole-route",
        "--ip-masq-fully-random-disable", "--iface-regex", "--iface-can-reach",
    ];

    [Fact]
    public void Every_flag_says_once_whether_flanneld_has_it()
    {
        Command run = RunCommandLine.Create(() => new Serilog.LoggerConfiguration().CreateLogger());
        Option[] flags = [.. run.Options.Where(o => o.Name.StartsWith("--", StringComparison.Ordinal))];
        Assert.All(flags, o => Assert.Matches(@"^[^\[]* \[(flanneld: the same|not in flanneld(: [^\]]+)?)\]$", o.Description));
        string[] same = [.. flags.Where(o => o.Description!.EndsWith("[flanneld: the same]", StringComparison.Ordinal)).Select(o => o.Name)];
        Assert.Equal(FlanneldNames.Order(), same.Order());
        Assert.Equal(flags.Length, flags.Select(o => o.Name).Distinct().Count());
    }

    /// <summary>flanneld's --version prints its version and exits 0: so do <c>dataplane run --version</c> and <c>dataplane --version</c>, with the commit.</summary>
    [Fact]
    public void Run_version_prints_the_release_and_commit_and_exits_0()
    {
        string version = System.Text.RegularExpressions.Regex.Match(File.ReadAllText(Path.Combine(Repository.Root, "Directory.Build.props")), "<Version>(.*)</Version>").Groups[1].Value;
        IReadOnlyList<string> program = Dataplane.Lab.SelfCommand.Prefix();
        Dataplane.Node.ProcessRunner.Result run = Dataplane.Node.ProcessRunner.Run(program[0], [.. program.Skip(1), "run", "--version"]);
        Assert.Equal(0, run.ExitCode);
        Assert.Matches($"^{System.Text.RegularExpressions.Regex.Escape(version)}\\+[0-9a-f]{{40}}\n$", run.Stdout);
        Assert.Equal(run.Stdout, Dataplane.Node.ProcessRunner.Run(program[0], [.. program.Skip(1), "--version"]).Stdout);
    }

    [Fact]
    public void Every_command_that_talks_to_a_node_takes_the_same_control_socket_flag()
    {
        Command run = RunCommandLine.Create(() => new Serilog.LoggerConfiguration().CreateLogger());
        Assert.Contains(run.Options, o => o.Name == "--control-socket");
        foreach (Command c in Program.NodeCommands())
        {
            Assert.Contains(c.Options, o => o.Name == "--control-socket" && o.Aliases.Contains("--socket"));
            Assert.Contains(c.Options, o => o.Name == "--device");
        }
    }
}
