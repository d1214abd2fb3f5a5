using Dataplane.Lab;
using Dataplane.Node;

namespace Dataplane.Integration.Tests;

/// <summary>What users run is what the tests run: in CI every test that starts the program starts the NativeAOT binary.</summary>
public class ShippedBinaryTests
{
    [Fact]
    public void In_ci_the_program_under_test_is_the_native_binary()
    {
        string? binary = Environment.GetEnvironmentVariable(SelfCommand.BinaryVariable);
        if (Environment.GetEnvironmentVariable("CI") != "true" && binary is null)
        {
            return; // a developer's run: `dotnet dataplane.dll` beside the tests is fine there
        }
        Assert.False(string.IsNullOrEmpty(binary), $"{SelfCommand.BinaryVariable} is not set: run-tests.sh publishes the NativeAOT binary and sets it");
        byte[] head = File.ReadAllBytes(binary!)[..4];
        Assert.Equal("\u007fELF"u8.ToArray(), head); // an executable, not a managed dll
        Assert.False(File.Exists(Path.Combine(Path.GetDirectoryName(binary)!, "dataplane.dll")), "a managed dataplane.dll beside it: not a NativeAOT publish");
        Assert.Equal([binary!], SelfCommand.Prefix());
        ProcessRunner.Result help = ProcessRunner.Run(binary!, ["--help"]);
        Assert.True(help.ExitCode == 0, help.Stderr);
        foreach (string command in new[] { "run", "stats", "doctor", "capture", "demo", "bench", "footprint" })
        {
            Assert.Contains(command, help.Stdout);
        }
    }

    /// <summary>
    /// <c>dataplane footprint</c> at the figures docs/running.md states (5,000 peers): the binary
    /// under test reaches its first forwarded packet about 25 ms after it is started (bound: a
    /// median of 100 ms, every one of 5 starts within 1 s, a start that forwards nothing counted as
    /// a failure), and with 5,000 peers in a real etcd holds about 47 MB after start and 53 MB
    /// after rounds of 1,000 lease changes (bounds: 60 MB and 70 MB; 100 MB at its peak).
    /// </summary>
    [Fact]
    public void The_program_forwards_within_a_second_of_its_start_and_stays_small_with_5000_peers()
    {
        Dataplane.TestSupport.Require.Root();
        ProcessRunner.Result r = ProcessRunner.Run(SelfCommand.Prefix()[0], [.. SelfCommand.Prefix().Skip(1), "footprint", "--starts", "5", "--peers", "5000", "--rounds", "2"], 300_000);
        Assert.True(r.ExitCode == 0, r.Stderr + r.Stdout);
        System.Text.RegularExpressions.Match start = System.Text.RegularExpressions.Regex.Match(r.Stdout,
            @"first forwarded packet .*: median (\d+) ms \(min (\d+), max (\d+)\).*; (\d+) of 5 starts forwarded nothing");
        Assert.True(start.Success, r.Stdout);
        int Ms(int group) => int.Parse(start.Groups[group].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(0, Ms(4));
        Assert.InRange(Ms(1), 1, 100);
        Assert.InRange(Ms(3), 1, 1000);
        Assert.Contains("vxlan; 5000 peers in the table", r.Stdout);
        Assert.Equal(2, System.Text.RegularExpressions.Regex.Matches(r.Stdout, @"\(1000 applied\)").Count);
        int[] rss = [.. System.Text.RegularExpressions.Regex.Matches(r.Stdout, @"VmRSS (\d+) kB").Select(m => int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture))];
        int[] peak = [.. System.Text.RegularExpressions.Regex.Matches(r.Stdout, @"VmHWM (\d+) kB").Select(m => int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture))];
        Assert.Equal(3, rss.Length);
        Assert.InRange(rss[0], 10_000, 60_000);
        Assert.All(rss[1..], kb => Assert.InRange(kb, 10_000, 70_000));
        Assert.All(peak, kb => Assert.InRange(kb, 10_000, 100_000));
    }

    /// <summary>
    /// <c>dataplane bench</c> on a small scale (one configuration of ours beside kernel VXLAN, 1 s
    /// runs): it measures every figure it reports, ping, sockperf ping-pong, TCP with the loop
    /// threads' CPU, UDP at full load and at &lt;=5% loss, and writes them to JSON. The figures
    /// themselves are not asserted (they vary run to run); bench/README.md records real runs.
    /// </summary>
    [Fact]
    public void The_bench_measures_every_figure_it_reports()
    {
        Dataplane.TestSupport.Require.Root();
        Dataplane.TestSupport.Require.Tool("iperf3", "iperf3");
        Dataplane.TestSupport.Require.Tool("sockperf", "sockperf");
        string outDir = Directory.CreateTempSubdirectory("dataplane-bench-").FullName;
        try
        {
            ProcessRunner.Result r = ProcessRunner.Run(SelfCommand.Prefix()[0], [.. SelfCommand.Prefix().Skip(1), "bench", "--seconds", "1", "--udp-seconds", "1",
                "--only", "dataplane-udp", "--queues", "1", "--out", outDir], 300_000);
            Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
            Assert.Contains("ping-pong avg / p50 / p99", r.Stdout);
            string json = File.ReadAllText(Directory.GetFiles(outDir, "bench-*.json").Single());
            var root = System.Text.Json.Nodes.JsonNode.Parse(json)!;
            var results = root["results"]!.AsArray();
            Assert.Equal(["kernel-vxlan", "dataplane-udp"], results.Select(x => x!["config"]!.GetValue<string>()));
            foreach (var result in results)
            {
                foreach (string figure in new[] { "tcp1_gbps", "tcp4_gbps", "udp64_pps", "udp64_full_load_pps", "rtt_ms", "pingpong_avg_us", "pingpong_p50_us", "pingpong_p99_us" })
                {
                    Assert.True(result![figure] is not null && result[figure]!.GetValue<double>() > 0, $"{figure} missing in {result}");
                }
            }
            // Our loop threads worked during the TCP test; kernel VXLAN has none.
            Assert.True(results[1]!["loop_cpu_cores_per_gbps"]!.GetValue<double>() > 0, json);
            Assert.Null(results[0]!["loop_cpu_cores_per_gbps"]);
        }
        finally
        {
            Directory.Delete(outDir, recursive: true);
        }
    }
}
