using System.Net.Sockets;
using System.Text;

namespace Dataplane.Node;

/// <summary>
/// The service manager's readiness protocol (sd_notify): with <c>NOTIFY_SOCKET</c> set, one datagram
/// "READY=1" once the lease is held, the device is up and subnet.env is written, and "STOPPING=1"
/// on shutdown, as flanneld's unit (Type=notify) expects; descriptors for systemd to keep across
/// restarts (<see cref="DescriptorStore"/>). A path starting with '@' is an abstract socket.
/// Failures are ignored: a node without a service manager runs the same.
/// </summary>
internal static class ServiceNotifier
{
    /// <summary>Whether a service manager listens (<c>NOTIFY_SOCKET</c> is set).</summary>
    public static bool Present => !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("NOTIFY_SOCKET"));

    public static bool Notify(string state) => Notify(state, []);

    /// <summary>
    /// Sends <paramref name="state"/> with <paramref name="descriptors"/> attached (SCM_RIGHTS): how
    /// a service hands systemd descriptors to keep (<c>FDSTORE=1</c>).
    /// </summary>
    public static bool Notify(string state, ReadOnlySpan<int> descriptors)
    {
        string? path = Environment.GetEnvironmentVariable("NOTIFY_SOCKET");
        if (string.IsNullOrEmpty(path))
        {
            return false;
        }
        try
        {
            using var s = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
            s.Connect(new UnixDomainSocketEndPoint(path[0] == '@' ? "\0" + path[1..] : path));
            TunTap.DescriptorPassing.Send((int)s.Handle, Encoding.UTF8.GetBytes(state), descriptors);
            return true;
        }
        catch (Exception e) when (e is SocketException or TunTap.NativeException)
        {
            return false;
        }
    }
}
