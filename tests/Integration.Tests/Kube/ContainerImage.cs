using Dataplane.Lab;
using Dataplane.Node;
using Dataplane.TestSupport;

namespace Dataplane.Integration.Tests.Kube;

/// <summary>
/// The product's image in podman's store, once per test run: the OCI archive CI built with
/// deploy/build-image.sh (<c>DATAPLANE_IMAGE</c>), else one built here from the NativeAOT binary
/// the tests run (<c>DATAPLANE_BINARY</c>), loaded with <c>podman load</c> as a user loads it.
/// </summary>
internal static class ContainerImage
{
    public const string ArchiveVariable = "DATAPLANE_IMAGE";
    private static readonly Lazy<string> s_name = new(Load);

    /// <summary>The loaded image's name (localhost/dataplane:VERSION).</summary>
    public static string Name => s_name.Value;

    /// <summary>The archive's path.</summary>
    public static string Archive { get; private set; } = "";

    private static string Load()
    {
        string podman = Require.Tool("podman", "podman");
        Require.Tool("runc", "runc");
        Archive = Environment.GetEnvironmentVariable(ArchiveVariable) is { Length: > 0 } given ? given : Build();
        ProcessRunner.Result r = ProcessRunner.Run(podman, ["load", "--input", Archive], 300_000);
        Assert.True(r.ExitCode == 0, $"podman load {Archive}: {r.Stderr}{r.Stdout}");
        // podman 4: "Loaded image: localhost/dataplane:0.9.0" (or "Loaded image(s): ...").
        string? loaded = (r.Stdout + r.Stderr).Split('\n').Select(l => l.Trim())
            .FirstOrDefault(l => l.StartsWith("Loaded image", StringComparison.Ordinal));
        Assert.True(loaded is not null, $"podman load said no image name: {r.Stdout}{r.Stderr}");
        return loaded[(loaded.IndexOf(':', StringComparison.Ordinal) + 1)..].Trim().Split(',')[0];
    }

    private static string Build()
    {
        string binary = Environment.GetEnvironmentVariable(SelfCommand.BinaryVariable) is { Length: > 0 } b ? b
            : throw new RequirementMissingException($"the image holds the NativeAOT binary: set {SelfCommand.BinaryVariable} (or {ArchiveVariable})");
        Require.Tool("mmdebstrap", "mmdebstrap");
        Require.Tool("umoci", "umoci");
        string output = Directory.CreateTempSubdirectory("dataplane-image-").FullName;
        ProcessRunner.Result r = ProcessRunner.Run(Path.Combine(Repository.Root, "deploy", "build-image.sh"), ["--binary", binary, "--out", output], 600_000);
        Assert.True(r.ExitCode == 0, $"deploy/build-image.sh: {r.Stderr}{r.Stdout}");
        return r.Stdout.TrimEnd().Split('\n')[^1];
    }
}
