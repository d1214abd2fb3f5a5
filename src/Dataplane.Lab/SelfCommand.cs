namespace Dataplane.Lab;

/// <summary>
/// How to start the dataplane program again (in another namespace): the native binary or apphost
/// when that is what runs, else <c>dotnet dataplane.dll</c> from this assembly's folder (also when
/// the caller is a test host that has the program beside it).
/// </summary>
internal static class SelfCommand
{
    public static IReadOnlyList<string> Prefix()
    {
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
