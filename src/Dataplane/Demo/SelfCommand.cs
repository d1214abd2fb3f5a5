namespace Dataplane.Demo;

/// <summary>How to start this program again (in another namespace): the apphost, or <c>dotnet dataplane.dll</c>.</summary>
internal static class SelfCommand
{
    public static IReadOnlyList<string> Prefix()
    {
        string process = Environment.ProcessPath ?? "dotnet";
        string dll = typeof(SelfCommand).Assembly.Location;
        if (Path.GetFileNameWithoutExtension(process) == "dotnet")
        {
            return [process, dll];
        }
        return [process];
    }
}
