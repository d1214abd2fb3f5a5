using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using System.Text.Json.Nodes;
using dotnet_etcd;
using Dataplane.Encap;
using Dataplane.Engine;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using Serilog;

namespace Dataplane.Leases;

/// <summary>
/// Leases from etcd (v3 API) in flannel's schema, so Dataplane nodes and flanneld nodes share one
/// cluster: the network config at <c>&lt;prefix&gt;/config</c>, one lease per node at
/// <c>&lt;prefix&gt;/subnets/10.244.1.0-24</c> bound to an etcd lease (24 h, renewed before expiry).
///
///  1. <see cref="Connect"/>: read the config (one clear line if etcd is unreachable within the
///     timeout, or the config is missing or invalid), list the leases.
///  2. <see cref="Acquire"/>: reuse the lease whose PublicIP is ours (also one flanneld wrote), else
///     take a free subnet between SubnetMin and SubnetMax with a put-if-absent transaction bound to
///     a granted etcd lease; a lost race tries another subnet. Our lease is (re)written with our
///     BackendType/BackendData; the VTEP MAC is kept in a file across restarts.
///  3. <see cref="Start"/>: a thread of its own watches <c>&lt;prefix&gt;/subnets/</c> (the watch only
///     wakes it; every wake and every resync interval re-lists the whole range, which also covers
///     compaction and reconnects), publishes a new table when the peers changed, and renews our
///     lease before it expires (re-acquiring it if it vanished). While etcd is away the last table
///     stays and the packet loops never notice.
/// </summary>
internal sealed class EtcdLeaseSource : IDisposable
{
    private static readonly TimeSpan Resync = TimeSpan.FromSeconds(10);

    private readonly EtcdClient _client;
    private readonly EtcdOptions _options;
    private readonly ILogger _log;
    private readonly CancellationTokenSource _stop = new();
    private readonly AutoResetEvent _wake = new(false);
    private Thread? _thread;
    private long _leaseId;
    private DateTime _leaseExpires;
    private IReadOnlyList<Peer> _peers = [];

    private EtcdLeaseSource(EtcdClient client, EtcdOptions options, ILogger log)
    {
        _client = client;
        _options = options;
        _log = log;
    }

    public string Where => string.Join(",", _options.Endpoints);
    private string ConfigKey => $"{_options.Prefix}/config";
    private string SubnetsPrefix => $"{_options.Prefix}/subnets/";

    /// <summary>Step 1: reach etcd and read the network config and every lease.</summary>
    public static (EtcdLeaseSource Source, ClusterSnapshot Snapshot) Connect(EtcdOptions options, ILogger log)
    {
        AppContext.SetSwitch("System.Net.Http.SocketsHttpHandler.Http2UnencryptedSupport", true);
        string endpoints = string.Join(",", options.Endpoints);
        EtcdClient client;
        try
        {
            bool tls = options.CaFile is not null || options.CertFile is not null;
            if (tls && !string.IsNullOrEmpty(options.Username))
            {
                throw new ConfigException("--etcd-username with TLS client options is not supported yet: use one or the other");
            }
            client = tls ? new EtcdClient(endpoints, configureSslOptions: Tls(options))
                : string.IsNullOrEmpty(options.Username) ? new EtcdClient(endpoints)
                : new EtcdClient(endpoints, options.Username, options.Password ?? "");
        }
        catch (Exception e) when (e is ArgumentException or UriFormatException or FormatException or InvalidOperationException)
        {
            throw new ConfigException($"--etcd-endpoints {endpoints}: {e.Message}");
        }
        var source = new EtcdLeaseSource(client, options, log);
        ClusterSnapshot snapshot = source.ReadSnapshot(initial: true);
        return (source, snapshot);
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
                    return chain.Build(new X509Certificate2(certificate));
                };
            }
        };
    }

    private DateTime Deadline => DateTime.UtcNow + _options.Timeout;

    private ClusterSnapshot ReadSnapshot(bool initial)
    {
        RangeResponse config, subnets;
        try
        {
            config = _client.Get(ConfigKey, deadline: Deadline);
            subnets = _client.GetRange(SubnetsPrefix, deadline: Deadline);
        }
        catch (RpcException e) when (initial)
        {
            throw new ConfigException($"etcd {Where}: not reachable within {_options.Timeout.TotalSeconds:0.#} s ({e.StatusCode})");
        }
        if (config.Kvs.Count == 0)
        {
            throw new ConfigException($"etcd {Where}: no network config at {ConfigKey}");
        }
        NetworkConfig network = ParseJson(config.Kvs[0].Value, doc => ClusterFile.ParseConfig(doc.RootElement, $"etcd {ConfigKey}"), $"etcd {ConfigKey}");
        var leases = new List<LeaseRecord>();
        foreach (Mvccpb.KeyValue kv in subnets.Kvs)
        {
            string key = kv.Key.ToStringUtf8()[SubnetsPrefix.Length..];
            try
            {
                leases.Add(ParseJson(kv.Value, doc => ClusterFile.ParseLease(key, doc.RootElement, $"etcd {SubnetsPrefix}{key}"), $"etcd {SubnetsPrefix}{key}"));
            }
            catch (ConfigException e)
            {
                _log.Warning("Lease skipped: {Error}", e.Message);
            }
        }
        return new ClusterSnapshot(network, leases);
    }

    private static T ParseJson<T>(ByteString value, Func<JsonDocument, T> parse, string where)
    {
        byte[] bytes = value.ToByteArray();
        if (ClusterFile.InvalidUtf8At(bytes) is int bad and >= 0)
        {
            throw new ConfigException($"{where}: not valid UTF-8 at byte {bad}");
        }
        try
        {
            using JsonDocument doc = JsonDocument.Parse(bytes);
            return parse(doc);
        }
        catch (JsonException e)
        {
            throw new ConfigException($"{where}: invalid JSON at line {e.LineNumber + 1}, column {e.BytePositionInLine + 1}");
        }
    }

    /// <summary>Step 2: reuse or create our lease. Returns it as it now stands in etcd.</summary>
    public LeaseRecord Acquire(ClusterSnapshot snapshot, uint publicIp, BackendKind backend, uint vni)
    {
        MacAddress? mac = backend == BackendKind.Vxlan ? LoadOrCreateMac(snapshot.LeaseOf(publicIp)?.VtepMac) : null;
        _leaseId = _client.LeaseGrant(new LeaseGrantRequest { TTL = (long)_options.LeaseTtl.TotalSeconds }, deadline: Deadline).ID;
        _leaseExpires = DateTime.UtcNow + _options.LeaseTtl;
        var lease = new LeaseRecord(default, publicIp, backend == BackendKind.Vxlan ? "vxlan" : null, mac);
        if (snapshot.LeaseOf(publicIp) is LeaseRecord mine && snapshot.Config.Network.Contains(mine.Subnet))
        {
            lease = lease with { Subnet = mine.Subnet };
            _client.Put(new PutRequest { Key = Key(mine.Subnet), Value = Value(lease, vni), Lease = _leaseId }, deadline: Deadline);
            _log.Information("Lease reused: {Subnet} (it names our public IP {PublicIP})", mine.Subnet, lease.PublicIpText);
            return lease;
        }
        NetworkConfig c = snapshot.Config;
        var taken = snapshot.Leases.Select(l => l.Subnet.Address).ToHashSet();
        uint step = 1u << (32 - c.SubnetLength);
        var free = new List<uint>();
        for (ulong a = c.SubnetMin; a <= c.SubnetMax; a += step)
        {
            if (!taken.Contains((uint)a))
            {
                free.Add((uint)a);
            }
        }
        // Random order: nodes starting together rarely try the same subnet, and a lost race retries.
        RandomNumberGenerator.Shuffle(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(free));
        foreach (uint candidate in free)
        {
            var subnet = new Ipv4Prefix(candidate, c.SubnetLength);
            var txn = new TxnRequest();
            txn.Compare.Add(new Compare { Key = Key(subnet), Target = Compare.Types.CompareTarget.Create, Result = Compare.Types.CompareResult.Equal, CreateRevision = 0 });
            txn.Success.Add(new RequestOp { RequestPut = new PutRequest { Key = Key(subnet), Value = Value(lease with { Subnet = subnet }, vni), Lease = _leaseId } });
            if (_client.Transaction(txn, deadline: Deadline).Succeeded)
            {
                _log.Information("Subnet {Subnet} was free: lease created in etcd", subnet);
                return lease with { Subnet = subnet };
            }
        }
        throw new ConfigException($"etcd {Where}: no free subnet between {Ipv4Prefix.Format(c.SubnetMin)} and {Ipv4Prefix.Format(c.SubnetMax)}");
    }

    private MacAddress LoadOrCreateMac(MacAddress? fromLease)
    {
        string path = _options.VtepMacFile;
        if (File.Exists(path) && MacAddress.TryParse(File.ReadAllText(path).Trim(), out MacAddress? saved))
        {
            return saved.Value;
        }
        MacAddress mac = fromLease ?? Random();
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null)
        {
            Directory.CreateDirectory(dir);
        }
        File.WriteAllText(path, mac + "\n");
        return mac;

        static MacAddress Random()
        {
            Span<byte> b = stackalloc byte[6];
            RandomNumberGenerator.Fill(b);
            b[0] = (byte)((b[0] & 0xFE) | 0x02); // unicast, locally administered
            return MacAddress.Read(b);
        }
    }

    private ByteString Key(Ipv4Prefix subnet) => ByteString.CopyFromUtf8(SubnetsPrefix + subnet.ToKey());

    /// <summary>A lease as flanneld writes it: vxlan with BackendType/BackendData, udp with neither.</summary>
    private static ByteString Value(LeaseRecord lease, uint vni)
    {
        var o = new JsonObject { ["PublicIP"] = lease.PublicIpText, ["PublicIPv6"] = null };
        if (lease.VtepMac is MacAddress mac)
        {
            o["BackendType"] = "vxlan";
            o["BackendData"] = new JsonObject { ["VNI"] = vni, ["VtepMAC"] = mac.ToString() };
        }
        return ByteString.CopyFromUtf8(o.ToJsonString());
    }

    /// <summary>Step 3: watch, resync and renew on a thread of its own.</summary>
    public void Start(NodeIdentity node, SubnetTable initial, Action<SubnetTable> publish)
    {
        _peers = initial.Peers;
        _thread = new Thread(() => Loop(node, publish)) { Name = "etcd-leases", IsBackground = true };
        _thread.Start();
        _ = WatchAsync();
    }

    private async Task WatchAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                await _client.WatchRangeAsync(SubnetsPrefix, _ => _wake.Set(), cancellationToken: _stop.Token).ConfigureAwait(false);
                await Task.Delay(Timeout.Infinite, _stop.Token).ConfigureAwait(false);
            }
            catch (Exception) when (!_stop.IsCancellationRequested)
            {
                await Task.Delay(TimeSpan.FromSeconds(1)).ConfigureAwait(false); // the resync covers the gap
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private void Loop(NodeIdentity node, Action<SubnetTable> publish)
    {
        bool away = false;
        TimeSpan backoff = TimeSpan.FromSeconds(1);
        WaitHandle[] handles = [_wake, _stop.Token.WaitHandle];
        while (true)
        {
            TimeSpan untilRenew = _leaseExpires - _options.RenewMargin - DateTime.UtcNow;
            TimeSpan wait = away ? backoff : untilRenew < Resync ? (untilRenew > TimeSpan.Zero ? untilRenew : TimeSpan.Zero) : Resync;
            int woke = WaitHandle.WaitAny(handles, wait);
            if (woke == 1)
            {
                return;
            }
            try
            {
                ClusterSnapshot snapshot = ReadSnapshot(initial: false);
                if (away)
                {
                    _log.Information("etcd {Where} reachable again", Where);
                    away = false;
                    backoff = TimeSpan.FromSeconds(1);
                }
                if (snapshot.LeaseOf(node.Lease.PublicIp)?.Subnet != node.Subnet || DateTime.UtcNow > _leaseExpires - _options.RenewMargin)
                {
                    Renew(node);
                    snapshot = ReadSnapshot(initial: false);
                }
                var skipped = new List<string>();
                SubnetTable table = node.BuildTable(snapshot, skipped); // leaves our own lease out
                if (!table.Peers.SequenceEqual(_peers))
                {
                    StaticLeaseSource.LogChanges(_peers, table.Peers, _log);
                    _peers = table.Peers;
                    publish(table);
                }
            }
            catch (Exception e) when (e is RpcException or ConfigException or ArgumentException or InvalidOperationException)
            {
                if (!away)
                {
                    _log.Warning("etcd {Where}: {Error}; forwarding on the last known subnets", Where, e is RpcException r ? r.StatusCode.ToString() : e.Message);
                    away = true;
                }
                backoff = TimeSpan.FromSeconds(Math.Min(30, backoff.TotalSeconds * 2));
            }
        }
    }

    /// <summary>
    /// Renews our lease before it expires, or writes it again if it vanished: a new etcd lease is
    /// granted, our key is put on it, and the old one is revoked (its key has moved, so nothing is
    /// deleted). One request each, with deadlines: nothing keeps running in the background.
    /// </summary>
    private void Renew(NodeIdentity node)
    {
        bool present = _client.Get(Key(node.Subnet).ToStringUtf8(), deadline: Deadline).Kvs.Count > 0;
        long old = _leaseId;
        _leaseId = _client.LeaseGrant(new LeaseGrantRequest { TTL = (long)_options.LeaseTtl.TotalSeconds }, deadline: Deadline).ID;
        _client.Put(new PutRequest { Key = Key(node.Subnet), Value = Value(node.Lease, node.Vni), Lease = _leaseId }, deadline: Deadline);
        _leaseExpires = DateTime.UtcNow + _options.LeaseTtl;
        try
        {
            _client.LeaseRevoke(new LeaseRevokeRequest { ID = old }, deadline: Deadline);
        }
        catch (RpcException)
        {
            // expired already: nothing to revoke
        }
        _log.Information(present ? "Lease renewed: {Subnet} for {Ttl}" : "Lease re-acquired: {Subnet} for {Ttl}", node.Subnet, _options.LeaseTtl);
    }

    public void Dispose()
    {
        if (_stop.IsCancellationRequested)
        {
            return;
        }
        _stop.Cancel();
        _wake.Set();
        _thread?.Join();
        _client.Dispose();
    }
}
