namespace Dataplane.Fuzz;

/// <summary>A harness's property: a violated one is an exception, which AFL++ records as a crash.</summary>
internal static class Property
{
    public static void Check(bool holds, string what)
    {
        if (!holds)
        {
            throw new InvalidOperationException(what);
        }
    }
}
