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
        foreach (string command in new[] { "run", "stats", "doctor", "capture", "demo", "bench" })
        {
            Assert.Contains(command, help.Stdout);
        }
    }
}
