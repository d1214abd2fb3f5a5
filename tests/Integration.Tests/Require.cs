using Dataplane.Demo;

namespace Dataplane.Integration.Tests;

/// <summary>What integration tests need. A missing piece fails the test with how to install it (never a skip).</summary>
internal static class Require
{
    public static void Root() =>
        Assert.True(Node.HostInfo.HasNetAdmin(), "integration tests need root (CAP_NET_ADMIN) for network namespaces");

    public static string Tool(string name, string package) =>
        Shell.Which(name) ?? throw new Xunit.Sdk.XunitException($"{name} is missing: apt-get install {package}");
}
