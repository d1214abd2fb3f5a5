using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using System.Security.Cryptography.X509Certificates;
using k8s;
using k8s.Authentication;

namespace Dataplane.Leases.Kube;

/// <summary>A watch that sent nothing (no event, no bookmark) for longer than its idle limit: it hangs, or its connection lost its peer.</summary>
internal sealed class KubeWatchSilentException(TimeSpan limit) : Exception($"the watch sent nothing (no event, no bookmark) for {limit.TotalSeconds:0.#} s")
{
}

/// <summary>An answer of the API server other than 2xx: its HTTP status and the Status object's message.</summary>
internal sealed class KubeApiException(int status, string message) : Exception(message)
{
    public int Status => status;
}

/// <summary>
/// The few requests the Kubernetes lease source makes, over plain HTTP with JSON:
/// GET a node, a pod, the node list; a watch of nodes (one JSON event a line); a strategic merge
/// PATCH of <c>nodes/NAME/status</c>, the only write kube-flannel's RBAC allows. The
/// KubernetesClient package (its AOT flavour) supplies what is hard to get right: the kubeconfig
/// (YAML, contexts, exec and token credentials), the in-cluster config, the check of the server's
/// certificate against the cluster's CA.
/// Requests have a deadline each; a watch runs until the server ends it or <c>timeout</c> passes.
/// </summary>
internal sealed class KubeApi : IDisposable
{
    private readonly HttpClient _http;
    private readonly ServiceClientCredentials? _credentials;
    private readonly Uri _base;
    private readonly TimeSpan _timeout;

    /// <summary>
    /// Our own HttpClient from the package's configuration (its TLS and credential rules, not its
    /// generated API surface: the native binary stays smaller, and every request is ours to see).
    /// </summary>
    private KubeApi(KubernetesClientConfiguration config, TimeSpan timeout)
    {
        // A response ended before its end (a watch's deadline, a silent watch) closes its connection
        // at once: drained for reuse (the default), a watch would be read on for up to 2 s more.
        var handler = new SocketsHttpHandler { ConnectTimeout = timeout, ConnectCallback = ConnectBlocking, MaxResponseDrainSize = 0 };
        if (config.SkipTlsVerify)
        {
            handler.SslOptions.RemoteCertificateValidationCallback = (_, _, _, _) => true;
        }
        else if (config.SslCaCerts is { Count: > 0 } ca)
        {
            // The cluster's CA, not the system's: the package's check (chain to exactly these roots).
            handler.SslOptions.RemoteCertificateValidationCallback = (sender, cert, chain, errors) =>
                Kubernetes.CertificateValidationCallBack(sender, ca, cert!, chain!, errors);
        }
        if (config.TlsServerName is { Length: > 0 } serverName)
        {
            handler.SslOptions.TargetHost = serverName;
        }
        if (ClientCertificate(config) is X509Certificate2 cert)
        {
            handler.SslOptions.ClientCertificates = [cert];
        }
        _http = new HttpClient(handler) { Timeout = System.Threading.Timeout.InfiniteTimeSpan }; // deadlines are per request
        _credentials = Kubernetes.CreateCredentials(config);
        _base = new Uri(config.Host.TrimEnd('/') + "/");
        _timeout = timeout;
    }

    /// <summary>
    /// The connection's socket, connected synchronously so that it stays a blocking socket: every
    /// request is made with <see cref="HttpClient.Send(HttpRequestMessage, HttpCompletionOption, CancellationToken)"/>,
    /// so a watch's read is one recv(2) on the watch thread. A socket that has served an async
    /// operation waits through .NET's socket engine instead: its epoll thread hands each readiness to
    /// a thread-pool worker, which wakes the reader, three threads woken per read, which was half the
    /// node's CPU under a cluster's heartbeats. Cancellation (the deadline) disposes the socket, which
    /// ends a blocked connect or read.
    /// </summary>
    private static ValueTask<Stream> ConnectBlocking(SocketsHttpConnectionContext context, CancellationToken token)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            using (token.Register(socket.Dispose))
            {
                socket.Connect(context.DnsEndPoint);
            }
            return ValueTask.FromResult<Stream>(new NetworkStream(socket, ownsSocket: true));
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            socket.Dispose();
            token.ThrowIfCancellationRequested();
            throw;
        }
    }

    /// <summary>The kubeconfig's client certificate and key (inline base64 PEM, or files), if it names one.</summary>
    private static X509Certificate2? ClientCertificate(KubernetesClientConfiguration c)
    {
        if (c.ClientCertificateData is { Length: > 0 } certData && c.ClientCertificateKeyData is { Length: > 0 } keyData)
        {
            return X509Certificate2.CreateFromPem(Encoding.UTF8.GetString(Convert.FromBase64String(certData)), Encoding.UTF8.GetString(Convert.FromBase64String(keyData)));
        }
        if (c.ClientCertificateFilePath is { Length: > 0 } certFile && c.ClientKeyFilePath is { Length: > 0 } keyFile)
        {
            return X509Certificate2.CreateFromPemFile(certFile, keyFile);
        }
        return null;
    }

    /// <summary>The API server's URL, for messages.</summary>
    public string Server => _base.ToString().TrimEnd('/');

    /// <summary>From a kubeconfig, a URL, or the in-cluster service account, in that order (flanneld's rules).</summary>
    public static KubeApi Create(KubeOptions o)
    {
        KubernetesClientConfiguration config;
        try
        {
            if (o.KubeconfigFile is string path)
            {
                if (!File.Exists(path))
                {
                    throw new ConfigException($"--kubeconfig-file {path}: no such file");
                }
                config = KubernetesClientConfiguration.BuildConfigFromConfigFile(path, masterUrl: o.ApiUrl);
            }
            else if (o.ApiUrl is string url)
            {
                config = new KubernetesClientConfiguration { Host = url };
            }
            else if (KubernetesClientConfiguration.IsInCluster())
            {
                config = KubernetesClientConfiguration.InClusterConfig();
            }
            else
            {
                throw new ConfigException("--kube-subnet-mgr: not running in a pod (no KUBERNETES_SERVICE_HOST and service account token): give --kubeconfig-file or --kube-api-url");
            }
            return new KubeApi(config, o.Timeout);
        }
        catch (Exception e) when (e is not ConfigException)
        {
            string from = o.KubeconfigFile is string f ? $"--kubeconfig-file {f}" : o.ApiUrl is string u ? $"--kube-api-url {u}" : "the in-cluster config";
            throw new ConfigException($"{from}: {OneLine(e.Message)}");
        }
    }

    /// <summary>Our node, or null if there is none of that name.</summary>
    public NodeJson? GetNode(string name) => Get($"api/v1/nodes/{Uri.EscapeDataString(name)}", KubeJson.Default.NodeJson, allowNotFound: true);

    /// <summary>Nodes a page of a list holds at most (client-go's pager's default).</summary>
    public const int PageSize = 500;

    /// <summary>
    /// All nodes, as client-go's reflector lists them: from the API server's watch cache
    /// (<c>resourceVersion=0</c>: no quorum read of etcd, what 5,000 nodes listing at once need),
    /// or with <paramref name="consistent"/> a quorum read (after a 410: the cache may be older than
    /// the version that expired); in pages of <see cref="PageSize"/> (<c>limit</c>, then each page's
    /// <c>continue</c> token, which takes no resourceVersion), each read from the stream as it comes,
    /// never the whole answer's text at once. An expired token is a 410 (list again).
    /// </summary>
    public NodeListJson ListNodes(bool consistent = false)
    {
        var items = new List<NodeJson>();
        string first = $"api/v1/nodes?limit={PageSize}" + (consistent ? "" : "&resourceVersion=0");
        NodeListJson page = Get(first, KubeJson.Default.NodeListJson, allowNotFound: false)!;
        string? version = page.Metadata?.ResourceVersion;
        while (true)
        {
            items.AddRange(page.Items ?? []);
            if (page.Metadata?.Continue is not { Length: > 0 } next)
            {
                break;
            }
            page = Get($"api/v1/nodes?limit={PageSize}&continue={Uri.EscapeDataString(next)}", KubeJson.Default.NodeListJson, allowNotFound: false)!;
            version = page.Metadata?.ResourceVersion ?? version;
        }
        return new NodeListJson { Metadata = new ListMetaJson { ResourceVersion = version }, Items = items };
    }

    public PodJson? GetPod(string ns, string name) =>
        Get($"api/v1/namespaces/{Uri.EscapeDataString(ns)}/pods/{Uri.EscapeDataString(name)}", KubeJson.Default.PodJson, allowNotFound: true);

    /// <summary>A strategic merge patch of the node's status subresource (annotations and conditions), as flanneld sends it.</summary>
    public void PatchNodeStatus(string name, string patch)
    {
        using var content = new StringContent(patch, Encoding.UTF8);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/strategic-merge-patch+json");
        using CancellationTokenSource deadline = new(_timeout);
        using HttpResponseMessage r = Send(HttpMethod.Patch, $"api/v1/nodes/{Uri.EscapeDataString(name)}/status", content, stream: false, deadline.Token);
        ThrowIfFailed(r, deadline.Token);
    }

    /// <summary>
    /// The events of a watch of nodes from <paramref name="resourceVersion"/>, as they come, until
    /// the server ends it (it is asked to after <paramref name="duration"/>), the connection fails
    /// (an exception), or <paramref name="stop"/>. <paramref name="answered"/> is called once the API
    /// server accepted the watch (its headers within the request deadline). A 410 Gone (as an ERROR
    /// event or an HTTP status) is a <see cref="KubeApiException"/> with status 410: list again. A
    /// watch silent for <paramref name="idleLimit"/> (bookmarks are asked for, so a live one never
    /// is) is a <see cref="KubeWatchSilentException"/>: its connection is closed, start it again.
    /// </summary>
    public IEnumerable<(string Type, NodeJson Node)> WatchNodes(string resourceVersion, TimeSpan duration, TimeSpan idleLimit, CancellationToken stop, Action? answered = null)
    {
        int seconds = Math.Max(1, (int)duration.TotalSeconds);
        using var silent = new CancellationTokenSource(_timeout); // the headers first, then each line within the idle limit
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(stop, silent.Token);
        deadline.CancelAfter(duration + _timeout);
        string path = $"api/v1/nodes?watch=true&allowWatchBookmarks=true&resourceVersion={Uri.EscapeDataString(resourceVersion)}&timeoutSeconds={seconds}";
        using HttpResponseMessage r = Send(HttpMethod.Get, path, null, stream: true, deadline.Token);
        ThrowIfFailed(r, deadline.Token);
        answered?.Invoke();
        silent.CancelAfter(idleLimit);
        using CancellationTokenRegistration abort = deadline.Token.Register(r.Dispose); // ends a blocked read
        using Stream body = r.Content.ReadAsStream(deadline.Token);
        // One event a line, read as UTF-8 bytes (no text decoded) only as far as the Node's spec:
        // a cluster's heartbeats are most of what a watch carries, and their status is most of them.
        var lines = new JsonLines(body);
        while (NextLine() is ReadOnlyMemory<byte> line)
        {
            silent.CancelAfter(idleLimit);
            (string type, WatchObjectJson o) = WatchEvent.Read(line.Span);
            if (type == "ERROR")
            {
                throw new KubeApiException(o.Code == 0 ? 500 : o.Code, $"watch: {o.Code} {o.Reason}: {o.Message}");
            }
            yield return (type, new NodeJson { Metadata = o.Metadata, Spec = o.Spec });
        }

        ReadOnlyMemory<byte>? NextLine()
        {
            try
            {
                return lines.Next(deadline.Token);
            }
            catch (OperationCanceledException) when (silent.IsCancellationRequested && !stop.IsCancellationRequested)
            {
                throw new KubeWatchSilentException(idleLimit);
            }
        }
    }

    private T? Get<T>(string path, JsonTypeInfo<T> type, bool allowNotFound) where T : class
    {
        using CancellationTokenSource deadline = new(_timeout);
        // The body is read as it comes (a list of 5,000 Nodes is tens of MB of text: never held whole);
        // the deadline covers the reading too, by ending the response.
        using HttpResponseMessage r = Send(HttpMethod.Get, path, null, stream: true, deadline.Token);
        using CancellationTokenRegistration abort = deadline.Token.Register(r.Dispose);
        if (allowNotFound && r.StatusCode == System.Net.HttpStatusCode.NotFound)
        {
            return null;
        }
        ThrowIfFailed(r, deadline.Token);
        using Stream body = r.Content.ReadAsStream(deadline.Token);
        try
        {
            return JsonSerializer.Deserialize(body, type) ?? throw new JsonException($"GET {path}: null");
        }
        catch (ObjectDisposedException) when (deadline.IsCancellationRequested)
        {
            throw new OperationCanceledException($"GET {path}: no whole answer in time");
        }
    }

    private HttpResponseMessage Send(HttpMethod method, string path, HttpContent? content, bool stream, CancellationToken token)
    {
        var request = new HttpRequestMessage(method, new Uri(_base, path)) { Content = content };
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
        _credentials?.ProcessHttpRequestAsync(request, token).GetAwaiter().GetResult();
        return _http.Send(request, stream ? HttpCompletionOption.ResponseHeadersRead : HttpCompletionOption.ResponseContentRead, token);
    }

    private static void ThrowIfFailed(HttpResponseMessage r, CancellationToken token)
    {
        if (r.IsSuccessStatusCode)
        {
            return;
        }
        string message = "";
        try
        {
            using var reader = new StreamReader(r.Content.ReadAsStream(token), Encoding.UTF8);
            string text = reader.ReadToEnd(); // synchronously: the socket stays a blocking one
            message = text.StartsWith('{') ? JsonSerializer.Deserialize(text, KubeJson.Default.StatusJson)?.Message ?? text : text;
        }
        catch (JsonException)
        {
        }
        int code = (int)r.StatusCode;
        throw new KubeApiException(code, $"{code} {r.ReasonPhrase}{(message.Length > 0 ? ": " + OneLine(message) : "")}");
    }

    /// <summary>Whether <paramref name="e"/> is a failed request (unreachable, refused, deadline, an error status, a body we cannot read) rather than a bug.</summary>
    public static bool IsRequestFailure(Exception e) =>
        e is HttpRequestException or KubeApiException or IOException or OperationCanceledException or JsonException;

    /// <summary>A failed request in one line: the status, or what the connection did.</summary>
    public static string Describe(Exception e) => e switch
    {
        KubeApiException k => k.Message,
        OperationCanceledException => "no answer in time",
        HttpRequestException { InnerException: System.Net.Sockets.SocketException s } => s.SocketErrorCode switch
        {
            System.Net.Sockets.SocketError.ConnectionRefused => "connection refused",
            System.Net.Sockets.SocketError.HostUnreachable or System.Net.Sockets.SocketError.NetworkUnreachable => "unreachable",
            System.Net.Sockets.SocketError.TimedOut => "connect timed out",
            _ => OneLine(s.Message),
        },
        JsonException j => $"an answer that is not what the API serves ({OneLine(j.Message)})",
        _ => OneLine(e.Message),
    };

    private static string OneLine(string s) => s.ReplaceLineEndings(" ").Trim();

    public void Dispose() => _http.Dispose();
}
