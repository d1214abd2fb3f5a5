using System.Globalization;
using System.Text.RegularExpressions;
using Dataplane.Node;
using Xunit.Abstractions;

using Dataplane.TestSupport;

namespace Dataplane.Integration.Tests;

/// <summary>
/// The bounded fuzz run of CI: each AFL++ target for 20 s from the committed seed corpus
/// (fuzz/run.sh instruments the assemblies with SharpFuzz). Any crash or hang fails the test with
/// the crashing input in hex; longer runs are documented in fuzz/README.md.
/// </summary>
public class FuzzTests(ITestOutputHelper output)
{
    private const int Seconds = 20;

    [Theory]
    [InlineData("inbound-vxlan")]
    [InlineData("inbound-udp")]
    [InlineData("inbound6-vxlan")]
    [InlineData("inbound6-udp")]
    [InlineData("nd")]
    [InlineData("ip")]
    [InlineData("leases")]
    [InlineData("frame")]
    [InlineData("checksum")]
    [InlineData("coalesce")]
    [InlineData("outbound")]
    public void Fuzz_target_survives_a_bounded_run(string target)
    {
        Require.Tool("afl-fuzz", "afl++");
        string root = Repository.Root;
        string work = Directory.CreateTempSubdirectory($"dataplane-fuzz-{target}-").FullName;
        try
        {
            ProcessRunner.Result r = ProcessRunner.Run("/bin/bash", [Path.Combine(root, "fuzz", "run.sh"), target, Seconds.ToString(CultureInfo.InvariantCulture), work], 300_000);
            string summary = r.Stdout.Split('\n').FirstOrDefault(l => l.StartsWith("fuzz ", StringComparison.Ordinal)) ?? "";
            output.WriteLine(summary);
            Assert.True(r.ExitCode == 0, $"{r.Stdout}\n{r.Stderr}");
            long execs = long.Parse(Regex.Match(summary, @"execs=(\d+)").Groups[1].Value, CultureInfo.InvariantCulture);
            // This machine does 10,000-30,000 executions a second per target: 4,000 a second shows the harness really ran.
            Assert.True(execs >= Seconds * 4_000, $"only {execs} executions in {Seconds} s: {summary}");
            Assert.Contains("hangs=0", summary);
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }
}
