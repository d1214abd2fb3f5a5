using System.Net.Sockets;
using System.Text;

namespace Dataplane.Node;

/// <summary>
/// The service manager's readiness protocol (sd_notify): with <c>NOTIFY_SOCKET</c> set, one datagram
/// "READY=1" once the lease is held, the device is up and subnet.env is written, and "STOPPING=1"
/// on shutdown, as flanneld's unit (Type=notify) expects. A path starting with '@' is an abstract socket.
/// Failures are ignored: a node without a service manager runs the same.
/// </summary>
internal static class ServiceNotifier
{
    public static bool Notify(string state)
    {
        string? path = Environment.GetEnvironmentVariable("NOTIFY_SOCKET");
        if (string.IsNullOrEmpty(path))
        {
            return false;
        }
        try
        {
            using var s = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
            string target = path[0] == '@' ? "\0" + path[1..] : path;
            s.SendTo(Encoding.UTF8.GetBytes(state), new UnixDomainSocketEndPoint(target));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }
}
