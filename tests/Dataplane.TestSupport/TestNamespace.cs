using Dataplane.Node;
using Dataplane.TunTap;

namespace Dataplane.TestSupport;

/// <summary>A network namespace for one test, named for this run, deleted on dispose.</summary>
internal sealed class TestNamespace : IDisposable
{
    public TestNamespace()
    {
        Require.TunDevice();
        Name = $"dptt{Environment.ProcessId:x}{Random.Shared.Next(0x10000):x4}";
        ProcessRunner.Check("ip", "netns", "add", Name);
        ProcessRunner.Check("ip", "-n", Name, "link", "set", "lo", "up");
    }

    public string Name { get; }

    public T Run<T>(Func<T> work) => NetworkNamespace.Run(Name, work);

    public string Ip(params string[] args) => ProcessRunner.Check("ip", ["-n", Name, .. args]);

    /// <summary>Sets a per-namespace sysctl of this namespace only ("net.ipv4.x=value").</summary>
    public void Sysctl(string setting) => ProcessRunner.Check("ip", "netns", "exec", Name, "sysctl", "-qw", setting);

    public void Dispose() => ProcessRunner.Check("ip", "netns", "del", Name);
}
