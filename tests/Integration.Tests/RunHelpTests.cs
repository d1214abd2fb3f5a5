using System.CommandLine;
using System.Text.RegularExpressions;
using Dataplane.Cli;

namespace Dataplane.Integration.Tests;

/// <summary><c>dataplane run --help</c> says which flags are flanneld's: every flag it names is one of ours, and every flag of ours is named.</summary>
public partial class RunHelpTests
{
    [Fact]
    public void The_help_names_every_flag_as_flanneld_s_or_ours_alone()
    {
        Command run = RunCommandLine.Create(() => new Serilog.LoggerConfiguration().CreateLogger());
        string[] named = [.. Flag().Matches(run.Description!).Select(m => m.Value)];
        string[] ours = [.. run.Options.Where(o => !o.Hidden && o.Name.StartsWith("--", StringComparison.Ordinal) && o.Name != "--help").Select(o => o.Name)];
        Assert.Empty(named.Except(ours));
        Assert.Empty(ours.Except(named));
    }

    [GeneratedRegex(@"--[a-z0-9-]+")]
    private static partial Regex Flag();
}
