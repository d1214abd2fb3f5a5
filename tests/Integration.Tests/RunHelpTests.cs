using System.CommandLine;
using Dataplane.Cli;

namespace Dataplane.Integration.Tests;

/// <summary><c>dataplane run --help</c> says of every flag whether flanneld has it, and the list of flanneld's names holds only flags we have.</summary>
public class RunHelpTests
{
    [Fact]
    public void Every_flag_says_whether_flanneld_has_it()
    {
        Command run = RunCommandLine.Create(() => new Serilog.LoggerConfiguration().CreateLogger());
        Option[] flags = [.. run.Options.Where(o => o.Name.StartsWith("--", StringComparison.Ordinal))];
        Assert.All(flags, o => Assert.Matches(@" \[(flanneld: the same|not in flanneld(: .+)?)\]$", o.Description));
        Assert.Empty(RunCommandLine.FlanneldFlags.Except(flags.Select(o => o.Name)));
        Assert.Equal(RunCommandLine.FlanneldFlags.Count, flags.Count(o => o.Description!.EndsWith("[flanneld: the same]", StringComparison.Ordinal)));
    }
}
