using System.Text.RegularExpressions;
using Dataplane.Lab;
using Dataplane.Node;
using Dataplane.TestSupport;
using Xunit.Abstractions;

namespace Dataplane.Integration.Tests;

/// <summary>
/// deploy/dataplane.service as shipped, run by a real systemd (<see cref="UserSystemd"/>) as node 1
/// (a drop-in replaces only ExecStart: into node 1's namespace, the test's cluster file for the lease
/// flags; and sends the output to a file): the node gives systemd its queues' descriptors to keep (FDSTORE), so a
/// <c>systemctl restart</c> and a SIGKILL (an OOM kill) with the unit's automatic restart lose no
/// numbered datagram, both ways, and the started process takes the queues over from systemd.
/// </summary>
public class SystemdTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("tun")]
    [InlineData("packet")]
    public void The_shipped_unit_restarts_and_survives_a_sigkill_without_losing_a_datagram(string source)
    {
        using Cluster c = Cluster.WithTwoNodes();
        c.StartNode(2, "vxlan", null, "--source", source);
        using var systemd = new UserSystemd(c.Topology);
        string log = c.Path_("node1.log");
        systemd.OutputFile = log;
        string unit = File.ReadAllText(Path.Combine(Repository.Root, "deploy", "dataplane.service"));
        string execStart = Regex.Match(unit, @"^ExecStart=((?:.*\\\n)*.*)$", RegexOptions.Multiline).Groups[1].Value;
        string shippedFlags = string.Join(' ', Regex.Matches(execStart, @"--(ip-masq|metrics=\S+|on-exit=\S+)").Select(m => m.Value));
        Assert.Contains("--on-exit=keep", shippedFlags);
        systemd.Start("dataplane.service", unit, $"""
            [Service]
            ExecStart=
            ExecStart={Require.Tool("ip", "iproute2")} netns exec {c.Topology.Node(1)} {string.Join(' ', c.Program)} run --leases {c.LeasesPath} --public-ip {Topology.UnderlayIp(1)} --backend vxlan --source {source} --subnet-file {c.Path_("node1-subnet.env")} --control-socket {c.ControlSocket(1)} --vtep-mac-file {c.Path_("node1.vtepmac")} {shippedFlags}
            StandardOutput=append:{log}
            StandardError=append:{log}
            """);
        Assert.Contains("Offered systemd", File.ReadAllText(log));
        ProcessRunner.Result warm = c.Ping(c.Topology.Pod(2), Topology.PodIp(1));
        Assert.True(warm.ExitCode == 0, warm.Stdout + File.ReadAllText(log));

        const int Count = 6000; // 6 s: a restart at 1.5 s, a SIGKILL at 3.5 s (RestartSec=1)
        DatagramStream toOne = DatagramStream.Start(c, from: 2, to: 1, Count), toTwo = DatagramStream.Start(c, from: 1, to: 2, Count);
        Thread.Sleep(1500);
        int first = systemd.MainPid("dataplane.service");
        systemd.Check("restart", "dataplane.service");
        int second = systemd.MainPid("dataplane.service");
        Thread.Sleep(2000);
        systemd.Check("kill", "-s", "SIGKILL", "dataplane.service");
        Assert.True(SpinWait.SpinUntil(() => systemd.MainPid("dataplane.service") is int p && p != 0 && p != second && systemd.Systemctl("is-active", "dataplane.service").Stdout.Trim() == "active",
            TimeSpan.FromSeconds(15)), systemd.Check("status", "dataplane.service") + File.ReadAllText(log));
        toOne.AssertAllArrived(output, $"{source}, pod 2 to pod 1");
        toTwo.AssertAllArrived(output, $"{source}, pod 1 to pod 2");
        string text = File.ReadAllText(log);
        output.WriteLine(string.Join('\n', text.Split('\n').Where(l => l.Contains("systemd", StringComparison.Ordinal) || l.Contains("Ready", StringComparison.Ordinal))));
        Assert.NotEqual(first, second);
        Assert.Equal(2, Regex.Matches(text, "systemd kept 2 queues of flannel.1").Count); // the restart and the start after the SIGKILL
        // `systemctl stop` drops what systemd kept: the device stays (--on-exit=keep), a TUN without a queue attached.
        systemd.Check("stop", "dataplane.service");
        string link = c.Topology.Ip(c.Topology.Node(1), "link", "show", "flannel.1");
        if (source == "tun")
        {
            Assert.Contains("NO-CARRIER", link);
        }
    }
}
