using Dataplane.TunTap.Native;

namespace Dataplane.TunTap;

/// <summary>
/// Runs work inside a named network namespace (<c>/var/run/netns/NAME</c>, as <c>ip netns add</c>
/// makes it) on a dedicated thread: setns() changes only the calling thread, and devices and
/// sockets created there stay in that namespace when used from any other thread afterwards.
/// Tests use it to create real devices without touching the root namespace.
/// </summary>
public static class NetworkNamespace
{
    public static T Run<T>(string name, Func<T> work)
    {
        T result = default!;
        Exception? failure = null;
        var t = new Thread(() =>
        {
            try
            {
                Enter(name);
                result = work();
            }
            catch (Exception e)
            {
                failure = e;
            }
        });
        t.Name = $"netns-{name}";
        t.IsBackground = true;
        t.Start();
        t.Join();
        if (failure is not null)
        {
            throw new AggregateException($"in network namespace {name}", failure);
        }
        return result;
    }

    private static void Enter(string name)
    {
        string path = Path.Combine("/var/run/netns", name);
        using Microsoft.Win32.SafeHandles.SafeFileHandle ns = File.OpenHandle(path);
        if (NativeMethods.setns((int)ns.DangerousGetHandle(), NativeMethods.CLONE_NEWNET) < 0)
        {
            throw new NativeException($"setns {path}", Errno.Last);
        }
    }
}
