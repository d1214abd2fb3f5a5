namespace Dataplane.Integration.Tests;

/// <summary>The repository the tests were built in (its deploy/ and fuzz/ files are what they check).</summary>
internal static class Repository
{
    /// <summary>The folder that holds Dataplane.sln, above the test's own folder.</summary>
    public static string Root { get; } = Find();

    private static string Find()
    {
        for (string? dir = AppContext.BaseDirectory; dir is not null; dir = Path.GetDirectoryName(dir))
        {
            if (File.Exists(Path.Combine(dir, "Dataplane.sln")))
            {
                return dir;
            }
        }
        throw new InvalidOperationException("repository root (Dataplane.sln) not found above " + AppContext.BaseDirectory);
    }
}
