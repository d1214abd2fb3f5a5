using System.Security.Cryptography;
using System.Text;
using System.Security.Cryptography.X509Certificates;
using dotnet_etcd;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;

namespace Dataplane.Leases.Etcd;

/// <summary>
/// The etcd v3 client as the lease source uses it: flannel's keys under one prefix, every request
/// with a deadline (nothing blocks for longer than <see cref="EtcdOptions.Timeout"/>), TLS and
/// credentials as flanneld's flags give them. Requests throw <see cref="RpcException"/>; the
/// caller decides what an unreachable etcd means at that moment. The watch is a gRPC stream of
/// our own (<see cref="WatchAsync"/>): from a revision, on an HTTP/2 connection whose
/// keep-alive pings find a dead etcd within 15 s, one endpoint after the other when one fails.
/// </summary>
internal sealed class EtcdStore : IDisposable
{
    private readonly EtcdClient _client;
    private readonly EtcdOptions _options;
    private readonly Action<System.Net.Security.SslClientAuthenticationOptions>? _tls;
    private readonly Dictionary<string, GrpcChannel> _watchChannels = [];
    private int _watchEndpoint;

    private EtcdStore(EtcdClient client, EtcdOptions options, Action<System.Net.Security.SslClientAuthenticationOptions>? tls)
    {
        _client = client;
        _options = options;
        _tls = tls;
    }

    public string Where => string.Join(",", _options.Endpoints);
    public string ConfigKey => $"{_options.Prefix}/config";
    public string SubnetsPrefix => $"{_options.Prefix}/subnets/";
    public TimeSpan Timeout => _options.Timeout;

    private DateTime Deadline => DateTime.UtcNow + _options.Timeout;

    /// <summary>Creates the client (no request yet). Bad endpoints or TLS files are a <see cref="ConfigException"/>.</summary>
    public static EtcdStore Create(EtcdOptions options)
    {
        AppContext.SetSwitch("System.Net.Http.SocketsHttpHandler.Http2UnencryptedSupport", true);
        string endpoints = string.Join(",", options.Endpoints);
        bool tls = options.CaFile is not null || options.CertFile is not null;
        if (tls && !string.IsNullOrEmpty(options.Username))
        {
            throw new ConfigException("--etcd-username with TLS client options is not supported yet: use one or the other");
        }
        try
        {
            Action<System.Net.Security.SslClientAuthenticationOptions>? configure = tls ? Tls(options) : null;
            EtcdClient client = configure is not null ? new EtcdClient(endpoints, configureSslOptions: configure)
                : string.IsNullOrEmpty(options.Username) ? new EtcdClient(endpoints)
                : new EtcdClient(endpoints, options.Username, options.Password ?? "");
            return new EtcdStore(client, options, configure);
        }
        catch (Exception e) when (e is ArgumentException or UriFormatException or FormatException or InvalidOperationException)
        {
            throw new ConfigException($"--etcd-endpoints {endpoints}: {e.Message}");
        }
    }

    /// <summary>
    /// TLS as flanneld's --etcd-cafile/--etcd-certfile/--etcd-keyfile: etcd's certificate must chain
    /// to the given CA (and match the endpoint's name or address); our certificate is offered to it.
    /// </summary>
    private static Action<System.Net.Security.SslClientAuthenticationOptions> Tls(EtcdOptions o)
    {
        X509Certificate2? ca = null;
        X509Certificate2? mine = null;
        try
        {
            if (o.CaFile is not null)
            {
                ca = X509Certificate2.CreateFromPem(File.ReadAllText(o.CaFile));
            }
            if (o.CertFile is not null)
            {
                mine = X509Certificate2.CreateFromPemFile(o.CertFile, o.KeyFile ?? throw new ConfigException("--etcd-certfile needs --etcd-keyfile"));
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException or ArgumentException)
        {
            throw new ConfigException($"etcd TLS files ({o.CaFile ?? "-"}, {o.CertFile ?? "-"}, {o.KeyFile ?? "-"}): {e.Message}");
        }
        return ssl =>
        {
            if (mine is not null)
            {
                ssl.ClientCertificates = [mine];
            }
            if (ca is not null)
            {
                ssl.RemoteCertificateValidationCallback = (_, certificate, _, errors) =>
                {
                    if (certificate is null || (errors & System.Net.Security.SslPolicyErrors.RemoteCertificateNameMismatch) != 0)
                    {
                        return false;
                    }
                    using var chain = new X509Chain();
                    chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
                    chain.ChainPolicy.CustomTrustStore.Add(ca);
                    chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                    using var presented = new X509Certificate2(certificate);
                    return chain.Build(presented);
                };
            }
        };
    }

    /// <summary>The config value (null if missing), every lease value with its key under <c>subnets/</c>, and the revision the leases were read at.</summary>
    public (byte[]? Config, IReadOnlyList<(string Key, byte[] Value)> Leases, long Revision) ReadAll()
    {
        RangeResponse config = _client.Get(ConfigKey, deadline: Deadline);
        RangeResponse subnets = _client.GetRange(SubnetsPrefix, deadline: Deadline);
        var leases = new List<(string, byte[])>(subnets.Kvs.Count);
        foreach (Mvccpb.KeyValue kv in subnets.Kvs)
        {
            leases.Add((kv.Key.ToStringUtf8()[SubnetsPrefix.Length..], kv.Value.ToByteArray()));
        }
        return (config.Kvs.Count == 0 ? null : config.Kvs[0].Value.ToByteArray(), leases, subnets.Header.Revision);
    }

    public bool LeaseExists(string key) => _client.Get(SubnetsPrefix + key, deadline: Deadline).Kvs.Count > 0;

    /// <summary>Grants an etcd lease (the TTL our subnet lease lives unless renewed); returns its ID.</summary>
    public long Grant(TimeSpan ttl) =>
        _client.LeaseGrant(new LeaseGrantRequest { TTL = (long)ttl.TotalSeconds }, deadline: Deadline).ID;

    /// <summary>Revokes an etcd lease; one that expired already is not an error.</summary>
    public void Revoke(long id)
    {
        try
        {
            _client.LeaseRevoke(new LeaseRevokeRequest { ID = id }, deadline: Deadline);
        }
        catch (Exception e) when (IsRequestFailure(e))
        {
            // expired already (or etcd away): nothing to revoke; it expires by itself
        }
    }

    public void Put(string key, string value, long lease) =>
        _client.Put(new PutRequest { Key = ByteString.CopyFromUtf8(SubnetsPrefix + key), Value = ByteString.CopyFromUtf8(value), Lease = lease }, deadline: Deadline);

    /// <summary>Deletes one lease key (ours, under another key).</summary>
    public void Delete(string key) =>
        _client.Delete(new DeleteRangeRequest { Key = ByteString.CopyFromUtf8(SubnetsPrefix + key) }, deadline: Deadline);

    /// <summary>Deletes one lease key and revokes the etcd lease it was bound to (that lease holds no other key of ours).</summary>
    public void DeleteWithItsLease(string key)
    {
        RangeResponse found = _client.Get(SubnetsPrefix + key, deadline: Deadline);
        Delete(key);
        if (found.Kvs.Count > 0 && found.Kvs[0].Lease != 0)
        {
            Revoke(found.Kvs[0].Lease);
        }
    }

    /// <summary>Puts the value only if the key has never been created (a transaction); returns whether it did.</summary>
    public bool PutIfAbsent(string key, string value, long lease)
    {
        ByteString k = ByteString.CopyFromUtf8(SubnetsPrefix + key);
        var txn = new TxnRequest();
        txn.Compare.Add(new Compare { Key = k, Target = Compare.Types.CompareTarget.Create, Result = Compare.Types.CompareResult.Equal, CreateRevision = 0 });
        txn.Success.Add(new RequestOp { RequestPut = new PutRequest { Key = k, Value = ByteString.CopyFromUtf8(value), Lease = lease } });
        return _client.Transaction(txn, deadline: Deadline).Succeeded;
    }

    /// <summary>
    /// One watch of flannel's keys (the config and every key under <c>subnets/</c>) from
    /// <paramref name="fromRevision"/> on, progress notifications asked for: each response goes to
    /// <paramref name="received"/> as it comes, the first one (Created) included. Returns when etcd
    /// ends the stream; throws when it fails, and the next watch then tries the next endpoint.
    /// </summary>
    public async Task WatchAsync(long fromRevision, Action<WatchResponse> received, CancellationToken stop)
    {
        string endpoint = _options.Endpoints[_watchEndpoint % _options.Endpoints.Count];
        try
        {
            var client = new Watch.WatchClient(WatchChannel(endpoint));
            Metadata? headers = string.IsNullOrEmpty(_options.Username) ? null : await TokenAsync(stop).ConfigureAwait(false);
            using AsyncDuplexStreamingCall<WatchRequest, WatchResponse> call = client.Watch(headers, cancellationToken: stop);
            string prefix = _options.Prefix + "/";
            byte[] end = Encoding.UTF8.GetBytes(prefix);
            end[^1]++; // the range end of a prefix: its last byte plus one
            await call.RequestStream.WriteAsync(new WatchRequest
            {
                CreateRequest = new WatchCreateRequest
                {
                    Key = ByteString.CopyFromUtf8(prefix),
                    RangeEnd = ByteString.CopyFrom(end),
                    StartRevision = fromRevision,
                    ProgressNotify = true,
                },
            }, stop).ConfigureAwait(false);
            while (await call.ResponseStream.MoveNext(stop).ConfigureAwait(false))
            {
                received(call.ResponseStream.Current);
            }
        }
        catch (Exception) when (!stop.IsCancellationRequested)
        {
            _watchEndpoint++;
            throw;
        }
    }

    /// <summary>The connection the watch of <paramref name="endpoint"/> runs on: TLS as the client's, keep-alive pings every 10 s.</summary>
    private GrpcChannel WatchChannel(string endpoint)
    {
        lock (_watchChannels)
        {
            if (!_watchChannels.TryGetValue(endpoint, out GrpcChannel? channel))
            {
                var handler = new SocketsHttpHandler
                {
                    ConnectTimeout = TimeSpan.FromSeconds(3),
                    KeepAlivePingDelay = TimeSpan.FromSeconds(10),
                    KeepAlivePingTimeout = TimeSpan.FromSeconds(5),
                    KeepAlivePingPolicy = HttpKeepAlivePingPolicy.Always,
                    EnableMultipleHttp2Connections = true,
                };
                if (_tls is not null)
                {
                    handler.SslOptions = new System.Net.Security.SslClientAuthenticationOptions();
                    _tls(handler.SslOptions);
                }
                channel = GrpcChannel.ForAddress(endpoint, new GrpcChannelOptions { HttpHandler = handler, DisposeHttpClient = true });
                _watchChannels[endpoint] = channel;
            }
            return channel;
        }
    }

    /// <summary>With --etcd-username: a fresh token for the watch stream (etcd's simple tokens expire).</summary>
    private async Task<Metadata> TokenAsync(CancellationToken stop)
    {
        AuthenticateResponse r = await _client.AuthenticateAsync(new AuthenticateRequest { Name = _options.Username, Password = _options.Password ?? "" },
            deadline: Deadline, cancellationToken: stop).ConfigureAwait(false);
        return new Metadata { { "token", r.Token } };
    }

    /// <summary>
    /// A request that failed: gRPC's RpcException, or (seen with the native binary, when the deadline
    /// cancels the HTTP/2 call before gRPC maps it) an OperationCanceledException. Both mean "etcd
    /// did not answer in time"; neither may end the node.
    /// </summary>
    public static bool IsRequestFailure(Exception e) => e is RpcException or OperationCanceledException;

    /// <summary>
    /// An answer of etcd that refuses the request (authentication failed, permission denied, an
    /// invalid request) rather than a deadline or an unreachable endpoint: nothing to wait out.
    /// </summary>
    public static bool IsRefusal(RpcException r) =>
        r.StatusCode is StatusCode.InvalidArgument or StatusCode.PermissionDenied or StatusCode.Unauthenticated or StatusCode.FailedPrecondition;

    /// <summary>One line for a failed request.</summary>
    public static string Describe(Exception e) => e switch
    {
        RpcException r => r.StatusCode.ToString(),
        OperationCanceledException => "no answer within the deadline",
        _ => e.GetType().Name,
    };

    /// <summary>
    /// Why etcd could not be used, found by trying the first endpoint directly (the gRPC client only
    /// reports a deadline while it retries): "cannot connect to 192.0.2.99:2379: TimedOut", "TLS
    /// handshake failed: ...", "etcd refused our TLS connection (...)" (for example no client
    /// certificate), or that it accepted the connection but did not answer.
    /// </summary>
    public string Diagnose()
    {
        if (!Uri.TryCreate(_options.Endpoints[0], UriKind.Absolute, out Uri? uri))
        {
            return "not a URL";
        }
        TimeSpan limit = _options.Timeout < TimeSpan.FromSeconds(3) ? _options.Timeout : TimeSpan.FromSeconds(3);
        using var cts = new CancellationTokenSource(limit);
        using var tcp = new System.Net.Sockets.TcpClient();
        if (Connect(tcp, uri, cts.Token) is string failure)
        {
            return failure;
        }
        if (uri.Scheme != "https")
        {
            return "it accepts connections but did not answer";
        }
        using var ssl = new System.Net.Security.SslStream(tcp.GetStream());
        var auth = new System.Net.Security.SslClientAuthenticationOptions
        {
            TargetHost = uri.Host,
            ApplicationProtocols = [System.Net.Security.SslApplicationProtocol.Http2],
        };
        _tls?.Invoke(auth);
        try
        {
            ssl.AuthenticateAsClientAsync(auth, cts.Token).GetAwaiter().GetResult();
            // TLS 1.3 servers judge the client's certificate after the handshake: speak HTTP/2 and see.
            ssl.Write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8);
            ssl.Write([0, 0, 0, 4, 0, 0, 0, 0, 0]); // an empty SETTINGS frame
            byte[] reply = new byte[64];
            int n = ssl.ReadAsync(reply, cts.Token).AsTask().GetAwaiter().GetResult();
            return n == 0 ? "etcd closed our TLS connection (does it want a client certificate? --etcd-certfile/--etcd-keyfile)"
                : "it accepts TLS connections but did not answer";
        }
        catch (System.Security.Authentication.AuthenticationException e)
        {
            return $"TLS handshake failed: {e.Message}";
        }
        catch (IOException e)
        {
            return $"etcd refused our TLS connection ({e.InnerException?.Message ?? e.Message}; does it want a client certificate? --etcd-certfile/--etcd-keyfile)";
        }
        catch (OperationCanceledException)
        {
            return "TLS: no answer";
        }
    }

    /// <summary>
    /// A TCP connection to an endpoint within <paramref name="limit"/>: null when it connects, else
    /// "cannot connect to HOST:PORT: why" (the doctor asks the same question of every endpoint).
    /// </summary>
    public static string? CanConnect(Uri endpoint, TimeSpan limit)
    {
        using var cts = new CancellationTokenSource(limit);
        using var tcp = new System.Net.Sockets.TcpClient();
        return Connect(tcp, endpoint, cts.Token);
    }

    private static string? Connect(System.Net.Sockets.TcpClient tcp, Uri endpoint, CancellationToken limit)
    {
        try
        {
            tcp.ConnectAsync(endpoint.Host, endpoint.Port, limit).AsTask().GetAwaiter().GetResult();
            return null;
        }
        catch (System.Net.Sockets.SocketException e)
        {
            return $"cannot connect to {endpoint.Host}:{endpoint.Port}: {e.SocketErrorCode}";
        }
        catch (OperationCanceledException)
        {
            return $"cannot connect to {endpoint.Host}:{endpoint.Port}: no answer";
        }
    }

    public void Dispose()
    {
        _client.Dispose();
        lock (_watchChannels)
        {
            foreach (GrpcChannel channel in _watchChannels.Values)
            {
                channel.Dispose();
            }
            _watchChannels.Clear();
        }
    }
}
