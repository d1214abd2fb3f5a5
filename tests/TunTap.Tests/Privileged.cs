using System.Diagnostics;

namespace Dataplane.TunTap.Tests;

/// <summary>
/// What a privileged test needs: root and iproute2. Under CI=true a missing requirement is a
/// failure with the reason, never a skip; elsewhere too, since a silent skip hides a broken edge.
/// </summary>
internal static class Privileged
{
    public static void Require()
    {
        Assert.True(Environment.UserName == "root" || geteuidIsRoot(), "this test needs root (CAP_NET_ADMIN) to create namespaces and devices");
        Assert.True(File.Exists("/usr/sbin/ip") || File.Exists("/sbin/ip") || File.Exists("/usr/bin/ip") || File.Exists("/bin/ip"), "this test needs iproute2 (apt-get install iproute2)");
        Assert.True(File.Exists("/dev/net/tun"), "this test needs /dev/net/tun");
    }

    private static bool geteuidIsRoot() => File.ReadLines("/proc/self/status").Any(l => l.StartsWith("Uid:", StringComparison.Ordinal) && l.Split('\t', StringSplitOptions.RemoveEmptyEntries)[2] == "0");

    public static string Run(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }
        using var p = Process.Start(psi)!;
        string o = p.StandardOutput.ReadToEnd();
        string e = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0)
        {
            throw new InvalidOperationException($"{file} {string.Join(' ', args)}: {e}");
        }
        return o;
    }
}

/// <summary>A network namespace for one test, deleted on dispose.</summary>
internal sealed class TestNamespace : IDisposable
{
    public TestNamespace()
    {
        Privileged.Require();
        Name = $"dptt{Environment.ProcessId:x}{Random.Shared.Next(0x10000):x4}";
        Privileged.Run("ip", "netns", "add", Name);
        Privileged.Run("ip", "-n", Name, "link", "set", "lo", "up");
    }

    public string Name { get; }

    public T Run<T>(Func<T> work) => NetworkNamespace.Run(Name, work);

    public string Ip(params string[] args) => Privileged.Run("ip", ["-n", Name, .. args]);

    public void Dispose() => Privileged.Run("ip", "netns", "del", Name);
}
