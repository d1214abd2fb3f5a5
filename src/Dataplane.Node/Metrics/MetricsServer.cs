using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Dataplane.Metrics;

/// <summary>One answer of the HTTP responder: the status code, the body, its type.</summary>
internal readonly record struct HttpAnswer(int Status, string Body, string ContentType = "text/plain; charset=utf-8");

/// <summary>
/// Serves the node's state two ways, each from a background thread, never from a packet loop:
/// HTTP GETs of a few paths (<c>/metrics</c> on <c>--metrics ADDR:PORT</c> for Prometheus,
/// <c>/healthz</c> and <c>/readyz</c> on <c>--healthz-ip/--healthz-port</c> for probes), and a
/// Unix socket that writes the metrics text to whoever connects (for <c>dataplane stats</c>; root
/// only, no port). A tiny HTTP/1.1 responder: one request per connection, then close.
/// </summary>
internal sealed class MetricsServer : IDisposable
{
    private readonly Func<string> _render;
    private readonly IReadOnlyDictionary<string, Func<HttpAnswer>> _routes = new Dictionary<string, Func<HttpAnswer>>();
    private readonly Func<Socket, string, bool>? _request;
    private readonly Socket _listener;
    private readonly string? _unixPath;
    // False once a successor took over (a hand-over): the path is its control socket now, or soon.
    private volatile bool _ownsPath = true;
    private readonly Thread _thread;
    private volatile bool _stopped;

    private MetricsServer(Socket listener, Func<string> render, string? unixPath, Func<Socket, string, bool>? request = null,
        IReadOnlyDictionary<string, Func<HttpAnswer>>? routes = null)
    {
        _listener = listener;
        _render = render;
        _routes = routes ?? _routes;
        _request = request;
        _unixPath = unixPath;
        _thread = new Thread(Serve) { Name = unixPath is null ? "metrics-http" : "control-socket", IsBackground = true };
        _thread.Start();
    }

    /// <summary>HTTP on <paramref name="endpoint"/>: each path of <paramref name="routes"/> answers a GET; any other path 404.</summary>
    public static MetricsServer Http(IPEndPoint endpoint, IReadOnlyDictionary<string, Func<HttpAnswer>> routes)
    {
        var s = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            s.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            s.Bind(endpoint);
            s.Listen(16);
        }
        catch
        {
            s.Dispose();
            throw;
        }
        return new MetricsServer(s, () => "", null, null, routes);
    }

    /// <summary>The Prometheus text as <c>/metrics</c> answers it.</summary>
    public static HttpAnswer Metrics(Func<string> render) => new(200, render(), "text/plain; version=0.0.4; charset=utf-8");

    /// <param name="request">Offered each request line other than <c>STATS</c> (a capture): true when it took the connection over.</param>
    public static MetricsServer Unix(string path, Func<string> render, Func<Socket, string, bool>? request = null)
    {
        string? dir = Path.GetDirectoryName(path);
        if (!string.IsNullOrEmpty(dir))
        {
            Directory.CreateDirectory(dir);
        }
        // Bound under a name of our own, then renamed over the path in one step (rename(2)): a leftover
        // of a killed node, or a predecessor's socket in a hand-over, is replaced without a moment
        // with no socket. The name .NET bound stays with the socket: .NET unlinks the path a socket
        // was bound to when it is disposed, which here is the private name, long gone. The name is
        // random, not only the pid: in containers every node is pid 1, and a predecessor disposing its
        // socket would unlink the very name its successor had just bound. (Random.Shared, not the
        // cryptographic generator: that one loads OpenSSL, which a node without TLS need not have.)
        string bound = $"{path}.{Environment.ProcessId}-{Random.Shared.Next():x8}.new";
        File.Delete(bound);
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            s.Bind(new UnixDomainSocketEndPoint(bound));
            File.SetUnixFileMode(bound, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            s.Listen(4);
            File.Move(bound, path, overwrite: true);
        }
        catch
        {
            s.Dispose();
            throw;
        }
        return new MetricsServer(s, render, path, request);
    }

    private void Serve()
    {
        while (!_stopped)
        {
            Socket client;
            try
            {
                client = _listener.Accept();
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                return;
            }
            bool handedOver = false;
            try
            {
                client.ReceiveTimeout = 2000;
                client.SendTimeout = 2000;
                if (_unixPath is null)
                {
                    Respond(client);
                }
                else if (Node.PeerCredentials.Of(client)?.Uid is uint uid and not 0)
                {
                    // Counters and captures show every pod's traffic: root only, whatever the file mode says.
                    // (The request is read first, so closing does not reset the connection under the answer.)
                    ReadRequestLine(client);
                    client.Send(Encoding.UTF8.GetBytes($"ERR only root may use a node's control socket (you are uid {uid})\n"));
                    client.Shutdown(SocketShutdown.Send);
                }
                else
                {
                    string line = ReadRequestLine(client);
                    if (line.Length > 0 && line != "STATS" && _request is not null)
                    {
                        handedOver = _request(client, line);
                    }
                    if (!handedOver)
                    {
                        client.Send(Encoding.UTF8.GetBytes(_render()));
                    }
                }
            }
            catch (SocketException)
            {
            }
            finally
            {
                if (!handedOver)
                {
                    client.Dispose();
                }
            }
        }
    }

    /// <summary>The first line a control client sends (<c>STATS</c>, <c>CAPTURE ...</c>); empty if it sends nothing soon (older clients).</summary>
    private static string ReadRequestLine(Socket client)
    {
        client.ReceiveTimeout = 300;
        byte[] buffer = new byte[512];
        int n = 0;
        try
        {
            while (n < buffer.Length)
            {
                int got = client.Receive(buffer, n, buffer.Length - n, SocketFlags.None);
                if (got == 0)
                {
                    break;
                }
                n += got;
                if (Array.IndexOf(buffer, (byte)'\n', 0, n) >= 0)
                {
                    break;
                }
            }
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.TimedOut or SocketError.WouldBlock)
        {
        }
        client.ReceiveTimeout = 2000;
        return Encoding.UTF8.GetString(buffer, 0, n).Split('\n')[0].Trim();
    }

    private void Respond(Socket client)
    {
        byte[] buffer = new byte[4096];
        int n = client.Receive(buffer);
        string request = Encoding.ASCII.GetString(buffer, 0, n);
        string firstLine = request.Split('\n')[0].Trim();
        string[] parts = firstLine.Split(' ');
        HttpAnswer answer = parts.Length >= 2 && parts[0] == "GET" && _routes.TryGetValue(parts[1].Split('?')[0], out Func<HttpAnswer>? route)
            ? route()
            : new HttpAnswer(404, $"not found: try {string.Join(", ", _routes.Keys.Order(StringComparer.Ordinal))}\n");
        string status = answer.Status switch
        {
            200 => "200 OK",
            404 => "404 Not Found",
            503 => "503 Service Unavailable",
            _ => answer.Status.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        byte[] payload = Encoding.UTF8.GetBytes(answer.Body);
        string head = $"HTTP/1.1 {status}\r\nContent-Type: {answer.ContentType}\r\nContent-Length: {payload.Length}\r\nConnection: close\r\n\r\n";
        client.Send([.. Encoding.ASCII.GetBytes(head), .. payload]);
    }

    /// <summary>
    /// Leaves the socket's path alone at <see cref="Dispose"/>: a successor binds its own control
    /// socket there (an inode comparison could not tell: a path unlinked and made again may get the
    /// same inode number back).
    /// </summary>
    public void LeavePath() => _ownsPath = false;

    public void Dispose()
    {
        _stopped = true;
        _listener.Close();
        _thread.Join(2000);
        if (_unixPath is not null && _ownsPath)
        {
            try
            {
                File.Delete(_unixPath);
            }
            catch (IOException)
            {
            }
        }
    }
}
