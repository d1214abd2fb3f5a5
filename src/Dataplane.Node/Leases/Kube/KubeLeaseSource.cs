using System.Text.Json;
using Dataplane.Encap;
using Dataplane.Engine;
using Dataplane.Leases.Schema;
using Serilog;

namespace Dataplane.Leases.Kube;

/// <summary>
/// Leases from the Kubernetes API, as flanneld's <c>--kube-subnet-mgr</c> keeps them
/// (<c>pkg/subnet/kube</c>), so our nodes and flanneld nodes share one cluster:
///
///  1. Start: the network config from <c>net-conf.json</c> (the ConfigMap's key, mounted as a
///     file), our node's name (<c>NODE_NAME</c>, else the <c>spec.nodeName</c> of the pod
///     <c>POD_NAMESPACE/POD_NAME</c>), and every node's lease (<see cref="NodeLease"/>).
///  2. Acquire: our subnet is our node's pod CIDR (no lease is taken: the controller manager
///     assigns it; none yet: we say so and wait, as flanneld does). Our lease is published as
///     flanneld publishes it: a strategic merge PATCH of <c>nodes/NAME/status</c> (the only write
///     kube-flannel's RBAC allows) setting the annotations <c>kube-subnet-manager</c>,
///     <c>backend-type</c>, <c>backend-data</c>, <c>public-ip</c> (the operator's
///     <c>public-ip-overwrite</c> wins), only when one differs. A VtepMAC already in our
///     <c>backend-data</c> is reused, so kernel peers' neighbour entries stay valid.
///  3. Watch: a thread of its own sets our NetworkUnavailable condition to False (we forward
///     now), then lists the nodes once and watches them from the list's resourceVersion, as
///     client-go's reflector: an ended or broken watch starts again from the last resourceVersion
///     seen (BOOKMARKs keep it fresh); only 410 Gone lists again. Each node is kept as what its lease
///     is made of, and an update that changes none of it is ignored. While the API server is away
///     the last table stays and the packet loops never notice; it is retried after 0.25 s doubling
///     to 2 s, jittered.
///  4. Dispose: stop the watch. The annotations stay, as flanneld leaves them.
/// </summary>
internal sealed class KubeLeaseSource(KubeOptions options, ILogger log) : ILeaseSource
{
    private readonly CancellationTokenSource _stop = new();
    private readonly KubeAnnotations _annotations = KubeAnnotations.Create(options.AnnotationPrefix);
    private readonly Dictionary<string, NodeJson> _nodes = new(StringComparer.Ordinal);
    private KubeApi? _api;
    private NetworkConfig? _config;
    private string? _nodeName;
    // The resourceVersion of Start's list: the watch begins there (no second list).
    private string? _listedVersion;
    private Thread? _thread;
    private FileSystemWatcher? _netConfigWatcher;
    private readonly Lock _netConfigGate = new();
    private string? _netConfigSaid; // the change (or the error) last said about net-conf.json

    public string Description => $"Kubernetes API {_api?.Server ?? options.ApiUrl ?? "(in-cluster)"}";

    private KubeApi Api => _api ?? throw new InvalidOperationException("Kubernetes lease source used before Start");

    /// <summary>Our node's name, once <see cref="Start"/> found it.</summary>
    public string NodeName => _nodeName ?? throw new InvalidOperationException("Kubernetes lease source used before Start");

    public ClusterSnapshot Start()
    {
        _config = ReadNetConfig(options.NetConfigPath);
        if (!_config.EnableIpv4)
        {
            throw new ConfigException($"--net-config-path {options.NetConfigPath}: an IPv6-only network (EnableIPv4 false) with --kube-subnet-mgr "
                + "is not supported yet (the static file and etcd support it)");
        }
        _api = KubeApi.Create(options);
        try
        {
            _nodeName = FindNodeName();
            NodeListJson list = Api.ListNodes();
            Replace(list);
            _listedVersion = list.Metadata?.ResourceVersion;
            return Snapshot();
        }
        catch (Exception e) when (KubeApi.IsRequestFailure(e))
        {
            throw new ConfigException($"{Description}: {KubeApi.Describe(e)}");
        }
    }

    private static NetworkConfig ReadNetConfig(string path)
    {
        string where = $"--net-config-path {path}";
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigException($"{where}: cannot read: {(e is FileNotFoundException or DirectoryNotFoundException ? "no such file" : e.Message)}");
        }
        using JsonDocument doc = FlannelDocument.Parse(bytes, where);
        return NetworkConfig.Parse(doc.RootElement, where);
    }

    /// <summary>flanneld's rule: NODE_NAME, else the node the pod POD_NAMESPACE/POD_NAME runs on.</summary>
    private string FindNodeName()
    {
        if (options.NodeName is { Length: > 0 } name)
        {
            return name;
        }
        if (options.PodName is not { Length: > 0 } pod || options.PodNamespace is not { Length: > 0 } ns)
        {
            throw new ConfigException("--kube-subnet-mgr: set NODE_NAME (the downward API's spec.nodeName), or POD_NAME and POD_NAMESPACE");
        }
        PodJson found = Api.GetPod(ns, pod) ?? throw new ConfigException($"{Description}: no pod {ns}/{pod} (POD_NAMESPACE/POD_NAME)");
        return found.Spec?.NodeName is { Length: > 0 } n ? n : throw new ConfigException($"{Description}: pod {ns}/{pod} has no spec.nodeName");
    }

    /// <summary>
    /// Removes the lease annotations from our Node (the podCIDR is kube-controller-manager's, the
    /// operator's public-ip-overwrite and node-public-ip stay), as one patch of the status, the way
    /// they were set. Peers drop our subnet at their next event.
    /// </summary>
    public IReadOnlyList<string> Release()
    {
        _api ??= KubeApi.Create(options);
        try
        {
            string name = FindNodeName();
            IReadOnlyDictionary<string, string> now = Api.GetNode(name)?.Metadata?.Annotations ?? [];
            var ours = _annotations.Published.Where(now.ContainsKey).ToList();
            if (ours.Count == 0)
            {
                return [];
            }
            Api.PatchNodeStatus(name, AnnotationsPatch(ours.Select(a => KeyValuePair.Create(a, (string?)null))));
            return [$"lease of Node {name} from the Kubernetes API (annotations {string.Join(", ", ours)})"];
        }
        catch (Exception e) when (KubeApi.IsRequestFailure(e))
        {
            throw new ConfigException($"{Description}: {KubeApi.Describe(e)}: the lease was not released");
        }
    }

    public LeaseRecord Acquire(ClusterSnapshot snapshot, LeaseRequest request)
    {
        string where = $"node {NodeName}";
        try
        {
            NodeJson node = WaitForPodCidr(where, out Ipv4Prefix subnet);
            if (!snapshot.Config.Network.Contains(subnet))
            {
                throw new ConfigException($"{where}: podCIDR {subnet} is not inside the Network {snapshot.Config.Network} of {options.NetConfigPath}");
            }
            IReadOnlyDictionary<string, string> now = node.Metadata?.Annotations ?? [];
            uint publishedIp = request.PublicIp;
            if (now.GetValueOrDefault(_annotations.PublicIpOverwrite) is { Length: > 0 } overwrite)
            {
                if (!Ipv4Prefix.TryParseAddress(overwrite, out publishedIp))
                {
                    throw new ConfigException($"{where}: annotation {_annotations.PublicIpOverwrite}: '{overwrite}' is not an IPv4 address");
                }
                log.Information("Public IP {PublicIP} from the node's {Annotation} annotation", overwrite, _annotations.PublicIpOverwrite);
            }
            MacAddress? mac = null;
            LeaseRecord? announcedLease = NodeLease.FromNode(node, _annotations, out _, snapshot.Config.EnableIpv6);
            if (BackendProfile.Of(request.Backend).NeedsVtepMac)
            {
                // The MAC our node already announces (flanneld's GetStoredMacAddresses), else the file's or a new one.
                if (announcedLease?.VtepMac is MacAddress announced)
                {
                    VtepMacFile.Save(options.VtepMacFile, announced);
                    mac = announced;
                }
                else
                {
                    mac = VtepMacFile.LoadOrCreate(options.VtepMacFile, null);
                }
            }
            var lease = new LeaseRecord(subnet, publishedIp, BackendProfile.Of(request.Backend).LeaseBackendType, mac);
            if (snapshot.Config.EnableIpv6 && request.WantsIpv6)
            {
                // Dual-stack: our IPv6 half is the node's IPv6 podCIDR (assigned like the IPv4 one; none: IPv4 only).
                Ipv6Prefix? subnet6 = NodeLease.PodCidr6(node, where);
                if (subnet6 is Ipv6Prefix s6 && snapshot.Config.Ipv6Network is Ipv6Prefix n6 && !n6.Contains(s6))
                {
                    throw new ConfigException($"{where}: IPv6 podCIDR {s6} is not inside the IPv6Network {n6} of {options.NetConfigPath}");
                }
                lease = lease with
                {
                    Ipv6Subnet = subnet6,
                    PublicIpv6 = subnet6 is null ? null : request.PublicIpv6,
                    VtepMacV6 = subnet6 is null || mac is null ? null : announcedLease?.VtepMacV6 ?? mac,
                };
            }
            Publish(where, now, lease, request.Vni);
            return lease;
        }
        catch (Exception e) when (KubeApi.IsRequestFailure(e))
        {
            throw new ConfigException($"{Description}: publishing our lease on {where} failed: {KubeApi.Describe(e)}");
        }
    }

    /// <summary>Our node, once it has a pod CIDR: until then one line says so and it is read again every few seconds.</summary>
    private NodeJson WaitForPodCidr(string where, out Ipv4Prefix subnet)
    {
        bool said = false;
        while (true)
        {
            NodeJson node = Api.GetNode(NodeName)
                ?? throw new ConfigException($"{where}: no such node in {Description} (is NODE_NAME right?)");
            if (NodeLease.PodCidr(node, where) is Ipv4Prefix cidr)
            {
                subnet = cidr;
                return node;
            }
            if (!said)
            {
                log.Warning("Node {Node} has no IPv4 podCIDR yet: waiting for one to be assigned (kube-controller-manager --allocate-node-cidrs)", NodeName);
                said = true;
            }
            if (_stop.Token.WaitHandle.WaitOne(options.PodCidrPoll))
            {
                throw new OperationCanceledException();
            }
        }
    }

    /// <summary>The annotations flanneld sets for <paramref name="lease"/> (what <see cref="NodeLease.FromNode"/> reads back).</summary>
    public static SortedDictionary<string, string> AnnotationsOf(KubeAnnotations a, LeaseRecord lease, uint vni)
    {
        var wanted = new SortedDictionary<string, string>(StringComparer.Ordinal)
        {
            [a.BackendType] = lease.BackendType ?? "", // flanneld's udp backend: no BackendType, an empty annotation
            [a.BackendData] = lease.VtepMac is MacAddress mac ? VxlanBackendData(vni, mac) : "null",
            [a.PublicIp] = lease.PublicIpText,
            [a.SubnetKubeManaged] = "true",
        };
        if (lease.PublicIpv6 is UInt128 v6)
        {
            // As flanneld publishes a dual-stack lease: the IPv6 address and flannel-v6.1's backend data.
            wanted[a.PublicIpv6] = Ipv6Prefix.Format(v6);
            wanted[a.BackendV6Data] = lease.VtepMacV6 is MacAddress mac6 ? VxlanBackendData(vni, mac6) : "null";
        }
        return wanted;
    }

    /// <summary>The annotations flanneld sets, patched only when one differs from what the node has.</summary>
    private void Publish(string where, IReadOnlyDictionary<string, string> now, LeaseRecord lease, uint vni)
    {
        SortedDictionary<string, string> wanted = AnnotationsOf(_annotations, lease, vni);
        var changed = wanted.Where(kv => now.GetValueOrDefault(kv.Key) != kv.Value).ToList();
        if (changed.Count == 0)
        {
            log.Information("{Where} already announces our lease ({Subnet} via {PublicIP})", where, lease.Subnet, lease.PublicIpText);
            return;
        }
        string patch = AnnotationsPatch(changed.Select(kv => KeyValuePair.Create(kv.Key, (string?)kv.Value)));
        DateTime giveUp = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            try
            {
                Api.PatchNodeStatus(NodeName, patch);
                log.Information("Lease published on {Where}: {Subnet} via {PublicIP} ({Count} annotations set)", where, lease.Subnet, lease.PublicIpText, changed.Count);
                return;
            }
            catch (Exception e) when (KubeApi.IsRequestFailure(e) && e is not KubeApiException { Status: 403 or 404 or 422 } && DateTime.UtcNow < giveUp)
            {
                log.Warning("Patching {Where} failed ({Error}); trying again", where, KubeApi.Describe(e));
                if (_stop.Token.WaitHandle.WaitOne(TimeSpan.FromSeconds(3)))
                {
                    throw new OperationCanceledException();
                }
            }
        }
    }

    /// <summary>The vxlan backend-data annotation, byte for byte as flanneld writes it: <c>{"VNI":1,"VtepMAC":"0e:..."}</c>.</summary>
    public static string VxlanBackendData(uint vni, MacAddress mac) =>
        string.Create(System.Globalization.CultureInfo.InvariantCulture, $$"""{"VNI":{{vni}},"VtepMAC":"{{mac}}"}""");

    /// <summary><c>{"metadata":{"annotations":{...}}}</c>: the strategic merge patch flanneld computes for these changes (null: remove it).</summary>
    public static string AnnotationsPatch(IEnumerable<KeyValuePair<string, string?>> annotations) => KubeJsonWriter.Text(w =>
    {
        w.WriteStartObject();
        w.WriteStartObject("metadata");
        w.WriteStartObject("annotations");
        foreach ((string key, string? value) in annotations)
        {
            if (value is null)
            {
                w.WriteNull(key);
            }
            else
            {
                w.WriteString(key, value);
            }
        }
        w.WriteEndObject();
        w.WriteEndObject();
        w.WriteEndObject();
    });

    /// <summary>flanneld's CompleteLease: the NetworkUnavailable condition set to False, as a strategic merge patch of the status.</summary>
    public static string NetworkAvailablePatch(DateTime now) => KubeJsonWriter.Text(w =>
    {
        string time = now.ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture);
        w.WriteStartObject();
        w.WriteStartObject("status");
        w.WriteStartArray("conditions");
        w.WriteStartObject();
        // json.Marshal of a v1.NodeCondition writes its fields in the struct's order (k8s.io/api core/v1).
        w.WriteString("type", "NetworkUnavailable");
        w.WriteString("status", "False");
        w.WriteString("lastHeartbeatTime", time);
        w.WriteString("lastTransitionTime", time);
        w.WriteString("reason", "FlannelIsUp");
        w.WriteString("message", "Flannel is running on this node");
        w.WriteEndObject();
        w.WriteEndArray();
        w.WriteEndObject();
        w.WriteEndObject();
    });

    public void Watch(PeerTables tables)
    {
        _ = Api; // used before Start: fail here, not on the watch thread
        WatchNetConfig();
        _thread = new Thread(() => Loop(tables)) { Name = "kube-leases", IsBackground = true };
        _thread.Start();
    }

    /// <summary>
    /// Lists once, then watches from the list's resourceVersion, as client-go's reflector: a watch the
    /// API server ends (its timeout, ours: <see cref="KubeOptions.Resync"/>) or that breaks is started
    /// again from the last resourceVersion seen (events and BOOKMARKs move it), as is one silent for
    /// <see cref="KubeOptions.WatchIdleLimit"/> (a hung server, a half-open connection); only 410 Gone lists
    /// again. While the API server is away the last table stays; the watch is retried after 0.25 s
    /// doubling to 2 s, jittered, and resumes where it was.
    /// </summary>
    private void Loop(PeerTables tables)
    {
        bool conditionSet = !options.SetNodeNetworkUnavailable;
        var outage = new StoreOutage(Description, log, TimeSpan.FromSeconds(0.25), TimeSpan.FromSeconds(2));
        string? resourceVersion = _listedVersion; // watched from Start's list: the node lists once at start
        bool consistent = false; // the next list a quorum read (after a 410)
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                if (!conditionSet)
                {
                    Api.PatchNodeStatus(NodeName, NetworkAvailablePatch(DateTime.UtcNow));
                    log.Information("Node {Node}: condition NetworkUnavailable set to False", NodeName);
                    conditionSet = true;
                }
                if (resourceVersion is null)
                {
                    NodeListJson list = Api.ListNodes(consistent);
                    consistent = false;
                    Replace(list);
                    resourceVersion = list.Metadata?.ResourceVersion ?? "";
                    outage.Reached();
                    Offer(tables);
                }
                long started = Environment.TickCount64;
                int events = 0;
                foreach ((string type, NodeJson node) in Api.WatchNodes(resourceVersion, options.Resync, options.WatchIdleLimit, _stop.Token, outage.Reached))
                {
                    events++;
                    resourceVersion = node.Metadata?.ResourceVersion ?? resourceVersion;
                    if (Apply(type, node))
                    {
                        Offer(tables);
                    }
                }
                if (events == 0 && Environment.TickCount64 - started < 1000)
                {
                    _stop.Token.WaitHandle.WaitOne(TimeSpan.FromSeconds(1)); // a watch that ends at once is not started again at once
                }
            }
            catch (KubeWatchSilentException e)
            {
                log.Warning("{Source}: {Error}; watching again from resourceVersion {Version}", Description, e.Message, resourceVersion);
            }
            catch (KubeApiException e) when (e.Status == 410)
            {
                log.Information("{Source}: {Error} (expired); listing the nodes again", Description, e.Message);
                resourceVersion = null;
                consistent = true;
            }
            catch (Exception e) when (KubeApi.IsRequestFailure(e))
            {
                if (_stop.IsCancellationRequested)
                {
                    return; // Dispose ended the watch
                }
                _stop.Token.WaitHandle.WaitOne(outage.Failed(KubeApi.Describe(e)));
            }
        }
    }

    /// <summary>
    /// A watch event applied to the node map, keeping of each node only what a lease is made of
    /// (<see cref="Slim"/>); whether any of it changed. An update of anything else (its status, its
    /// other annotations: most updates) changes nothing: no table is built, nothing is said.
    /// </summary>
    private bool Apply(string type, NodeJson node)
    {
        if (node.Metadata?.Name is not string name)
        {
            return false;
        }
        switch (type)
        {
            case "ADDED" or "MODIFIED":
                NodeJson slim = Slim(node);
                if (_nodes.TryGetValue(name, out NodeJson? had) && SameLease(had, slim))
                {
                    return false;
                }
                _nodes[name] = slim;
                return true;
            case "DELETED":
                return _nodes.Remove(name);
            default:
                return false; // BOOKMARK: only the resourceVersion moves
        }
    }

    /// <summary>A node with only its name, pod CIDRs and our annotations: what a lease is made of.</summary>
    private NodeJson Slim(NodeJson node) => new()
    {
        Metadata = new ObjectMetaJson
        {
            Name = node.Metadata?.Name,
            Annotations = node.Metadata?.Annotations?.Where(a => a.Key.StartsWith(_annotations.Prefix, StringComparison.Ordinal))
                .ToDictionary(a => a.Key, a => a.Value, StringComparer.Ordinal),
        },
        Spec = node.Spec,
    };

    private static bool SameLease(NodeJson a, NodeJson b) =>
        a.Spec?.PodCidr == b.Spec?.PodCidr
        && (a.Spec?.PodCidrs ?? []).SequenceEqual(b.Spec?.PodCidrs ?? [])
        && (a.Metadata?.Annotations ?? []).Count == (b.Metadata?.Annotations ?? []).Count
        && (a.Metadata?.Annotations ?? []).All(kv => b.Metadata?.Annotations?.GetValueOrDefault(kv.Key) == kv.Value);

    private void Replace(NodeListJson list)
    {
        _nodes.Clear();
        foreach (NodeJson n in list.Items ?? [])
        {
            if (n.Metadata?.Name is string name)
            {
                _nodes[name] = Slim(n);
            }
        }
    }

    private void Offer(PeerTables tables)
    {
        try
        {
            tables.Offer(Snapshot());
        }
        catch (ConfigException e)
        {
            log.Warning("{Source}: the nodes' leases cannot be used ({Error}); forwarding on the last table", Description, e.Message);
        }
    }

    /// <summary>The config and the lease of every managed node; nodes that cannot be read are left out and named (our own is not a peer anyway).</summary>
    private ClusterSnapshot Snapshot()
    {
        var leases = new List<LeaseRecord>(_nodes.Count);
        var unreadable = new List<(string, string)>();
        foreach (NodeJson n in _nodes.Values)
        {
            if (!NodeLease.IsManaged(n, _annotations))
            {
                continue;
            }
            if (NodeLease.FromNode(n, _annotations, out string? reason, _config!.EnableIpv6) is LeaseRecord l)
            {
                leases.Add(l);
            }
            else if (n.Metadata?.Name != _nodeName)
            {
                unreadable.Add(($"node {n.Metadata?.Name}", reason!));
            }
        }
        IReadOnlyDictionary<string, string> ours = _nodeName is not null && _nodes.TryGetValue(_nodeName, out NodeJson? self)
            ? self.Metadata?.Annotations ?? [] : new Dictionary<string, string>();
        return new ClusterSnapshot(_config!, leases)
        {
            Unreadable = unreadable,
            StoredPublicIp = Stored(ours, _annotations.NodePublicIp),
            StoredPublicIpv6 = Stored(ours, _annotations.NodePublicIpv6),
        };

        (string, string)? Stored(IReadOnlyDictionary<string, string> annotations, string key) =>
            annotations.GetValueOrDefault(key) is { Length: > 0 } a ? (a, $"node {_nodeName}'s annotation {key}") : null;
    }

    /// <summary>
    /// net-conf.json changed under the running node (a ConfigMap edit: the kubelet swaps the mount's
    /// <c>..data</c> link): said once, as flanneld applies a new config only on restart; the node keeps
    /// its own, and leases valid under it keep applying.
    /// </summary>
    private void WatchNetConfig()
    {
        string path = Path.GetFullPath(options.NetConfigPath);
        _netConfigWatcher = new FileSystemWatcher(Path.GetDirectoryName(path)!)
        {
            NotifyFilter = NotifyFilters.FileName | NotifyFilters.DirectoryName | NotifyFilters.LastWrite | NotifyFilters.Size,
        };
        _netConfigWatcher.Changed += (_, _) => NetConfigChanged();
        _netConfigWatcher.Created += (_, _) => NetConfigChanged();
        _netConfigWatcher.Renamed += (_, _) => NetConfigChanged();
        _netConfigWatcher.EnableRaisingEvents = true;
    }

    private void NetConfigChanged()
    {
        lock (_netConfigGate)
        {
            NetworkConfig now;
            try
            {
                now = ReadNetConfig(options.NetConfigPath);
            }
            catch (ConfigException e)
            {
                if (_netConfigSaid is not string said || said != e.Message)
                {
                    log.Warning("{Error}: this node keeps the network config it runs with", e.Message);
                    _netConfigSaid = e.Message;
                }
                return;
            }
            string state = now == _config ? "" : PeerTables.Differences(_config!, now);
            if (state.Length == 0 && _netConfigSaid is not null)
            {
                log.Information("--net-config-path {Path} is again the network config this node runs with", options.NetConfigPath);
            }
            else if (state.Length > 0 && state != _netConfigSaid)
            {
                log.Warning("The network config in {Path} changed ({Change}): this node keeps running with the config it started with, "
                    + "and leases valid under it keep applying; restart the node to apply the new one (as flanneld does)", options.NetConfigPath, state);
            }
            _netConfigSaid = state.Length == 0 ? null : state;
        }
    }

    public void Dispose()
    {
        if (_stop.IsCancellationRequested)
        {
            return;
        }
        _stop.Cancel();
        _netConfigWatcher?.Dispose();
        _thread?.Join();
        _api?.Dispose();
    }
}
