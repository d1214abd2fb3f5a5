namespace Dataplane.Lab;

/// <summary>
/// How to start the dataplane program again (in another namespace): <c>DATAPLANE_BINARY</c> when set
/// (CI points it at the NativeAOT binary, so the tests run what users run), else the native binary
/// or apphost when that is what runs, else <c>dotnet dataplane.dll</c>: the program's own build
/// output when this runs from a build of the repository (a test host's copy of the program resolves
/// its dependencies against the test's frameworks, which are not the program's: the stand-in API
/// server brings ASP.NET Core), else the one in this assembly's folder.
/// </summary>
internal static class SelfCommand
{
    public const string BinaryVariable = "DATAPLANE_BINARY";

    public static IReadOnlyList<string> Prefix()
    {
        if (Environment.GetEnvironmentVariable(BinaryVariable) is { Length: > 0 } binary)
        {
            return File.Exists(binary) ? [binary] : throw new InvalidOperationException($"{BinaryVariable}={binary}: no such file");
        }
        string process = Environment.ProcessPath ?? "dotnet";
        if (Path.GetFileNameWithoutExtension(process) == "dataplane")
        {
            return [process];
        }
        string folder = ProgramBuildFolder() ?? AppContext.BaseDirectory;
        string apphost = Path.Combine(folder, "dataplane");
        string dll = Path.Combine(folder, "dataplane.dll");
        if (File.Exists(dll))
        {
            string dotnet = Path.GetFileNameWithoutExtension(process) == "dotnet" ? process : "dotnet";
            return [dotnet, dll];
        }
        return File.Exists(apphost) ? [apphost]
            : throw new InvalidOperationException($"the dataplane program is not in {folder}");
    }

    /// <summary>src/Dataplane/bin/CONFIG/net10.0 of the repository this assembly was built in, if it holds the program.</summary>
    private static string? ProgramBuildFolder()
    {
        string here = AppContext.BaseDirectory.TrimEnd('/');
        string? configuration = new[] { "Release", "Debug" }.FirstOrDefault(c => here.Contains($"/bin/{c}/", StringComparison.Ordinal));
        for (string? dir = here; configuration is not null && dir is not null; dir = Path.GetDirectoryName(dir))
        {
            if (File.Exists(Path.Combine(dir, "Dataplane.sln")))
            {
                string folder = Path.Combine(dir, "src", "Dataplane", "bin", configuration, "net10.0");
                return File.Exists(Path.Combine(folder, "dataplane.dll")) ? folder : null;
            }
        }
        return null;
    }
}
