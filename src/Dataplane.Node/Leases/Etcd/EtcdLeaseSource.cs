using System.Text.Json;
using Dataplane.Encap;
using Dataplane.Engine;
using Dataplane.Leases.Schema;
using Serilog;

namespace Dataplane.Leases.Etcd;

/// <summary>
/// Leases from etcd (v3 API) in flannel's schema, so Dataplane nodes and flanneld nodes share one
/// cluster: the network config at <c>&lt;prefix&gt;/config</c>, one lease per node at
/// <c>&lt;prefix&gt;/subnets/10.244.1.0-24</c> bound to an etcd lease (24 h, renewed before expiry).
///
///  1. Start: read the config (one clear line if etcd is unreachable within the timeout, or the
///     config is missing or invalid) and list the leases.
///  2. Acquire: reuse the lease whose PublicIP is ours (also one flanneld wrote), else take a free
///     subnet (<see cref="SubnetAllocator"/>) with a put-if-absent transaction bound to a granted
///     etcd lease; a lost race tries another subnet. Our lease is (re)written as flanneld writes it
///     (<see cref="LeaseRecord.ToJson"/>); the VTEP MAC is kept in a file (<see cref="VtepMacFile"/>).
///     On a dual-stack network a node that forwards IPv6 takes an IPv6 subnet too (a reused lease
///     keeps its own, or gets a free one added), and its lease lives under flannel's
///     <c>10.244.1.0-24&amp;2001:db8:244:1::-64</c> key with PublicIPv6 and BackendV6Data; one that
///     cannot forward IPv6 holds an IPv4 lease (peers then reach it over IPv4 only).
///  3. Watch (<c>EtcdLeaseSource.Watch.cs</c>): the watch's events are applied as deltas from the
///     listed revision; a broken watch resumes from the last revision seen, quickly and jittered;
///     only a compacted revision (or a long, jittered safety resync) lists again. Our lease is
///     renewed before it expires and written again if it vanished (at most once per 5 s), never
///     because of what other leases contain. While etcd is away the last table stays and the
///     packet loops never notice.
/// </summary>
internal sealed partial class EtcdLeaseSource(EtcdOptions options, ILogger log) : ILeaseSource
{
    private readonly CancellationTokenSource _stop = new();
    private EtcdLeaseCache? _cache;
    private NetworkConfig? _config;
    private readonly AutoResetEvent _wake = new(false);
    private EtcdStore? _store;
    private Thread? _thread;
    private long _leaseId;
    private DateTime _leaseExpires;
    private uint _vni;

    public string Description => $"etcd {string.Join(",", options.Endpoints)}";

    private EtcdStore Store => _store ?? throw new InvalidOperationException("etcd lease source used before Start");

    public ClusterSnapshot Start()
    {
        _store = EtcdStore.Create(options);
        try
        {
            return ReadSnapshot();
        }
        catch (Grpc.Core.RpcException r) when (EtcdStore.IsRefusal(r))
        {
            // etcd answered, and said no: a wrong user or password, a role without this prefix.
            throw new ConfigException($"{Description}: {r.Status.Detail} ({r.StatusCode})");
        }
        catch (Exception e) when (EtcdStore.IsRequestFailure(e))
        {
            // Whatever gRPC says (a deadline, or the call failing before it), a direct probe says why, in one line.
            throw new ConfigException($"{Description}: not reachable within {options.Timeout.TotalSeconds:0.#} s ({Store.Diagnose()})");
        }
    }

    /// <summary>
    /// Lists the config and every lease (two Range calls) into the cache; a lease that does not parse
    /// is left out of the snapshot and named in <see cref="ClusterSnapshot.Unreadable"/>.
    /// </summary>
    private ClusterSnapshot ReadSnapshot()
    {
        EtcdStore store = Store;
        (byte[]? configValue, IReadOnlyList<(string Key, byte[] Value)> values, long revision) = store.ReadAll();
        string configWhere = $"etcd {store.ConfigKey}";
        if (configValue is null)
        {
            throw new ConfigException($"{Description}: no network config at {store.ConfigKey}");
        }
        using (JsonDocument doc = FlannelDocument.Parse(configValue, configWhere))
        {
            _config = NetworkConfig.Parse(doc.RootElement, configWhere);
        }
        _cache ??= new EtcdLeaseCache(store.SubnetsPrefix);
        _cache.Replace(values, revision);
        return _cache.Snapshot(_config);
    }

    /// <summary>
    /// Deletes every lease whose PublicIP (or PublicIPv6) is an address of this host, the way the node
    /// finds its own lease at start, and revokes the etcd lease each was bound to.
    /// </summary>
    public IReadOnlyList<string> Release()
    {
        _store ??= EtcdStore.Create(options);
        try
        {
            var removed = new List<string>();
            foreach ((string key, byte[] value) in Store.ReadAll().Leases)
            {
                if (Parsed(key, value) is LeaseRecord lease && IsOfThisHost(lease))
                {
                    Store.DeleteWithItsLease(key);
                    string publicIp = lease.PublicIp != 0 ? lease.PublicIpText : Ipv6Prefix.Format(lease.PublicIpv6.GetValueOrDefault());
                    removed.Add($"lease {Store.SubnetsPrefix}{key} from etcd (PublicIP {publicIp}; its etcd lease revoked)");
                }
            }
            return removed;
        }
        catch (Exception e) when (EtcdStore.IsRequestFailure(e))
        {
            throw new ConfigException($"{Description}: not reachable within {options.Timeout.TotalSeconds:0.#} s ({Store.Diagnose()}): the lease was not released");
        }
    }

    private LeaseRecord? Parsed(string key, byte[] value)
    {
        try
        {
            return LeaseRecord.Parse(key, value, $"etcd {Store.SubnetsPrefix}{key}");
        }
        catch (ConfigException)
        {
            return null; // not a lease anyone could use: not ours to judge
        }
    }

    private static bool IsOfThisHost(LeaseRecord lease) =>
        (lease.PublicIp != 0 && Node.HostInfo.InterfaceWith(lease.PublicIp) is not null)
        || (lease.PublicIpv6 is UInt128 v6 && Node.HostInfo.InterfaceWith(v6) is not null);

    public LeaseRecord Acquire(ClusterSnapshot snapshot, LeaseRequest request)
    {
        EtcdStore store = Store;
        _vni = request.Vni;
        NetworkConfig config = snapshot.Config;
        LeaseRecord? old = snapshot.LeaseOf(request);
        BackendProfile profile = BackendProfile.Of(request.Backend);
        MacAddress? mac = profile.NeedsVtepMac ? VtepMacFile.LoadOrCreate(options.VtepMacFile, old?.VtepMac) : null;
        bool ipv6 = config.EnableIpv6 && request.WantsIpv6;
        var lease = new LeaseRecord(default, request.PublicIp, profile.LeaseBackendType, mac);
        if (ipv6)
        {
            // flannel-v6.1's MAC: the one a reused lease names, else the IPv4 one (each underlay has its own FDB, so one MAC serves both).
            lease = lease with { PublicIpv6 = request.PublicIpv6, VtepMacV6 = mac is null ? null : old?.VtepMacV6 ?? mac };
        }
        List<Ipv6Prefix> free6 = ipv6 ? SubnetAllocator.FreeIpv6Subnets(config, snapshot.Leases) : [];
        try
        {
            _leaseId = store.Grant(options.LeaseTtl);
            _leaseExpires = DateTime.UtcNow + options.LeaseTtl;
            if (old is not null && config.Network.Contains(old.Subnet))
            {
                Ipv6Prefix? keep6 = old.Ipv6Subnet is Ipv6Prefix o6 && config.Ipv6Network is Ipv6Prefix n6 && n6.Contains(o6) && o6.Length == config.Ipv6SubnetLength ? o6 : null;
                lease = lease with { Subnet = old.Subnet, Ipv6Subnet = ipv6 ? keep6 ?? (free6.Count > 0 ? free6[0] : throw OutOfIpv6(config)) : null };
                store.Put(lease.Key, lease.ToJson(_vni), _leaseId);
                if (old.Key != lease.Key)
                {
                    // Its key changed (an IPv6 half dropped or added): two leases for one subnet would confuse every peer.
                    store.Delete(old.Key);
                    log.Information("Lease {OldKey} replaced by {Key}", old.Key, lease.Key);
                }
                log.Information("Lease reused: {Subnet} (it names our public IP {PublicIP})",
                    lease.Ipv6Subnet is Ipv6Prefix s6 ? $"{lease.Subnet} and {s6}" : lease.Subnet.ToString(), lease.PublicIpText);
                return lease;
            }
            if (ipv6 && free6.Count == 0)
            {
                throw OutOfIpv6(config);
            }
            // An IPv6-only network's leases have the empty IPv4 half (key 0.0.0.0-0&...), as flanneld writes them.
            IEnumerable<(Ipv4Prefix V4, Ipv6Prefix? V6)> candidates = config.EnableIpv4
                ? SubnetAllocator.FreeSubnets(config, snapshot.Leases).Select((c, k) => (c, ipv6 ? free6[k % free6.Count] : (Ipv6Prefix?)null))
                : free6.Select(c6 => (default(Ipv4Prefix), (Ipv6Prefix?)c6));
            foreach ((Ipv4Prefix candidate, Ipv6Prefix? candidate6) in candidates)
            {
                LeaseRecord attempt = lease with { Subnet = candidate, Ipv6Subnet = candidate6 };
                if (store.PutIfAbsent(attempt.Key, attempt.ToJson(_vni), _leaseId))
                {
                    log.Information("Subnet {Subnet} was free: lease created in etcd",
                        !config.EnableIpv4 ? candidate6.ToString() : candidate6 is Ipv6Prefix s6 ? $"{candidate} and {s6}" : candidate.ToString());
                    return attempt;
                }
            }
        }
        catch (Exception e) when (EtcdStore.IsRequestFailure(e))
        {
            throw new ConfigException($"{Description}: taking our lease failed ({EtcdStore.Describe(e)})");
        }
        throw config.EnableIpv4
            ? new ConfigException($"{Description}: no free subnet between {Ipv4Prefix.Format(config.SubnetMin)} and {Ipv4Prefix.Format(config.SubnetMax)}")
            : OutOfIpv6(config);
    }

    private ConfigException OutOfIpv6(NetworkConfig c) =>
        new($"{Description}: no free IPv6 subnet between {Ipv6Prefix.Format(c.Ipv6SubnetMin)} and {Ipv6Prefix.Format(c.Ipv6SubnetMax)}");

    /// <summary>
    /// Renews our lease before it expires, or writes it again if it vanished: a new etcd lease is
    /// granted, our key is put on it, and the old one is revoked (its key has moved, so nothing is
    /// deleted). One request each, with deadlines: nothing keeps running in the background.
    /// </summary>
    private void Renew(NodeIdentity node)
    {
        EtcdStore store = Store;
        bool present = store.LeaseExists(node.Lease.Key);
        long old = _leaseId;
        _leaseId = store.Grant(options.LeaseTtl);
        store.Put(node.Lease.Key, node.Lease.ToJson(_vni), _leaseId);
        _leaseExpires = DateTime.UtcNow + options.LeaseTtl;
        store.Revoke(old);
        log.Information(present ? "Lease renewed: {Subnet} for {Ttl}" : "Lease re-acquired: {Subnet} for {Ttl}", node.Subnet, options.LeaseTtl);
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
        _store?.Dispose();
        _wake.Dispose();
    }
}
