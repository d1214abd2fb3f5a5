using System.Diagnostics;
using System.Text.RegularExpressions;
using Dataplane.Lab;
using Dataplane.Node;

using Dataplane.TestSupport;

namespace Dataplane.Integration.Tests;

/// <summary>The README's main command: it works, and Ctrl-C leaves nothing behind.</summary>
public partial class DemoTests
{
    [Fact]
    public void Demo_moves_traffic_over_both_backends_and_removes_everything()
    {
        Require.Root();
        ProcessRunner.Result r = ProcessRunner.Run(SelfCommand.Prefix()[0], [.. SelfCommand.Prefix().Skip(1), "demo", "--seconds", "1"], 180_000);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        Assert.Matches(@"udp\s+5/5 replies.*Gbit/s.*SHA-256 match", r.Stdout);
        Assert.Matches(@"vxlan\s+5/5 replies.*Gbit/s.*SHA-256 match", r.Stdout);
        string id = RunId().Match(r.Stdout).Groups[1].Value;
        Assert.DoesNotContain($"dp{id}", ProcessRunner.Check(Require.Tool("ip", "iproute2"), "netns", "list"));
    }

    [Fact]
    public void Ctrl_c_during_the_demo_removes_its_namespaces_and_processes()
    {
        Require.Root();
        string env = Require.Tool("env", "coreutils");
        string setsid = Require.Tool("setsid", "util-linux");
        // As a terminal does it: default SIGINT disposition, own process group, SIGINT to the group.
        var psi = new ProcessStartInfo(setsid) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in new[] { "--wait", env, "--default-signal=INT" }.Concat(SelfCommand.Prefix()).Append("demo"))
        {
            psi.ArgumentList.Add(a);
        }
        using var p = Process.Start(psi)!;
        var lines = new List<string>();
        string? id = null;
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < TimeSpan.FromSeconds(60) && p.StandardOutput.ReadLine() is string line)
        {
            lines.Add(line);
            id ??= RunId().Match(line) is { Success: true } m ? m.Groups[1].Value : null;
            if (line.Contains("TCP from pod 1 to pod 2", StringComparison.Ordinal))
            {
                break; // mid-transfer: the worst moment
            }
        }
        Assert.NotNull(id);
        // The demo's group: setsid may have forked (then the demo is its child), so take the group
        // of its first child, which is the demo or one of the demo's own children.
        string group = ProcessRunner.Run("/bin/sh", ["-c", $"ps -o pgid= -p $(pgrep -P {p.Id} | head -n 1) | tr -d ' '"]).Stdout.Trim();
        Assert.True(int.TryParse(group, out int pgid) && pgid > 1, $"no process group found under {p.Id}: '{group}'");
        string tree = ProcessRunner.Run("/bin/sh", ["-c", $"ps -o pid,ppid,pgid,sid,cmd -g {pgid}; kill -INT -{pgid}; echo kill=$?"]).Stdout;
        string rest = p.StandardOutput.ReadToEnd();
        Assert.True(p.WaitForExit(30_000), "the demo did not exit after Ctrl-C");
        Assert.True(rest.Contains($"Interrupted: removing the namespaces of run {id}", StringComparison.Ordinal), tree + "\n" + rest);
        Assert.DoesNotContain($"dp{id}", ProcessRunner.Check(Require.Tool("ip", "iproute2"), "netns", "list"));
        Assert.Empty(ProcessRunner.Run("/bin/sh", ["-c", $"pgrep -f '[d]ataplane-{id}' || true"]).Stdout.Trim());
    }

    [GeneratedRegex(@"run id ([0-9a-f]{6})")]
    private static partial Regex RunId();
}
