namespace Dataplane.Lab;

/// <summary>
/// How to start the dataplane program again (in another namespace): <c>DATAPLANE_BINARY</c> when set
/// (CI points it at the NativeAOT binary, so the tests run what users run), else the native binary
/// or apphost when that is what runs, else <c>dotnet dataplane.dll</c> from this assembly's folder
/// (also when the caller is a test host that has the program beside it).
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
        string folder = AppContext.BaseDirectory;
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
}
