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
