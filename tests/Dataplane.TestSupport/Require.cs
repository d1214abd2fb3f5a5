using Dataplane.Node;

namespace Dataplane.TestSupport;

/// <summary>
/// What a test that touches the host needs: root, /dev/net/tun, programs. A missing piece fails the
/// test with what to install (never a skip: a silent skip hides a broken edge).
/// </summary>
internal static class Require
{
    public static void Root()
    {
        if (!HostInfo.HasNetAdmin())
        {
            throw new RequirementMissingException("this test needs root (CAP_NET_ADMIN) for network namespaces and devices");
        }
        Tool("ip", "iproute2");
    }

    public static void TunDevice()
    {
        Root();
        if (!File.Exists("/dev/net/tun"))
        {
            throw new RequirementMissingException("this test needs /dev/net/tun (modprobe tun)");
        }
    }

    public static string Tool(string name, string package) =>
        ProcessRunner.Which(name) ?? throw new RequirementMissingException($"{name} is missing: apt-get install {package}");
}
