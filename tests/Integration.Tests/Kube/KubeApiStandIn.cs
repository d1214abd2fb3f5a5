using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using System.Text.Json.Nodes;
using Dataplane.TunTap;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Dataplane.Integration.Tests.Kube;

/// <summary>
/// A stand-in for kube-apiserver (none can be installed here), serving what a flannel node uses
/// and what kubectl needs to use it, with the API server's semantics:
/// <list type="bullet">
/// <item>discovery (<c>/api</c>, <c>/apis</c>, <c>/api/v1</c>, <c>/version</c>);</item>
/// <item>nodes: get, list (with the list's resourceVersion), watch (one JSON event a line from a
///   resourceVersion, <c>timeoutSeconds</c>, BOOKMARKs; a resourceVersion older than the last
///   <see cref="Compact"/> gets the ERROR event with a 410 Status, as after etcd compaction, and
///   <see cref="ExpireWatches"/> ends the open watches so; <see cref="HangWatches"/> leaves them
///   open and silent; <see cref="WriteOtherObjects"/> moves the resourceVersion as writes of other
///   objects do, which a watcher learns from bookmarks); a list with <c>resourceVersion=0</c> is
///   served as the API server serves it from its cache (here: the same current state);</item>
/// <item>PATCH of <c>nodes/NAME</c> and <c>nodes/NAME/status</c> with merge and strategic merge
///   patches (conditions merged by type); the main resource changes metadata and spec, the status
///   subresource metadata and status; with <see cref="ForbidNodePatch"/> (kube-flannel's RBAC)
///   the main resource answers 403;</item>
/// <item>pods: get.</item>
/// </list>
/// Every write moves the resourceVersion and is an event for watchers. It listens on a socket
/// made in a test's network namespace, so nodes in namespaces reach it; <see cref="Stop"/> and
/// <see cref="Start"/> take it away and bring it back with the same state. Independent clients
/// (Debian's kubectl) are checked against it in <c>KubeStandInTests</c>.
/// </summary>
internal sealed class KubeApiStandIn : IDisposable
{
    private readonly Lock _gate = new();
    private readonly SortedDictionary<string, JsonObject> _nodes = new(StringComparer.Ordinal);
    private readonly Dictionary<string, JsonObject> _pods = new(StringComparer.Ordinal);
    private readonly List<(long Version, string Type, JsonObject Node)> _events = [];
    private readonly List<string> _requests = [];
    private readonly List<string> _authorizations = [];
    private readonly string? _netns;
    private readonly X509Certificate2? _certificate;
    private IPEndPoint _endpoint;
    private long _version = 1000;
    private long _compactedAt;
    // Moved by ExpireWatches: a watch that sees it move sends a 410 ERROR event and ends.
    private long _expiries;
    // Moved by HangWatches: a watch that sees it move sends nothing more.
    private long _hangs;
    private long _bookmarksSent;
    private int _listPagesServed;
    private long _bytesServed;
    private const int MaxEvents = 4000;
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private WebApplication? _app;
    private int _listenFd = -1;

    /// <param name="netns">The namespace to listen in; null: this process's own (on loopback only).</param>
    /// <param name="certificate">Serve HTTPS with this certificate (and its key), as an API server does; null: plain HTTP.</param>
    public KubeApiStandIn(string? netns, IPEndPoint endpoint, X509Certificate2? certificate = null)
    {
        _netns = netns;
        _endpoint = endpoint;
        _certificate = certificate;
    }

    public string Url => $"{(_certificate is null ? "http" : "https")}://{_endpoint}";

    /// <summary>
    /// Nodes as a real cluster's are (labels; status with 50 images, five conditions, addresses,
    /// capacity, nodeInfo; about 15 KB of JSON each) rather than only what a lease needs: what a
    /// node's lists and watches then cost it.
    /// </summary>
    public bool RealisticNodes { get; set; }

    /// <summary>
    /// How often a watch that asked for them (<c>allowWatchBookmarks=true</c>) gets a BOOKMARK with
    /// the current resourceVersion, as the API server's watch cache sends them: every minute, and
    /// 2 s before the watch's timeout.
    /// </summary>
    public TimeSpan BookmarkInterval { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>BOOKMARK events sent so far, to every watch.</summary>
    public long BookmarksSent => Interlocked.Read(ref _bookmarksSent);

    /// <summary>Compact the history right after serving this list page (1: the first page served): the next page's continue token is then a 410.</summary>
    public int CompactAfterListPage { get; set; }

    /// <summary>kube-flannel's ClusterRole grants <c>nodes/status</c> patch only: the main resource answers 403.</summary>
    public bool ForbidNodePatch { get; set; }

    /// <summary>"PATCH /api/v1/nodes/n1/status application/strategic-merge-patch+json", one a request.</summary>
    public IReadOnlyList<string> Requests
    {
        get
        {
            lock (_gate)
            {
                return [.. _requests];
            }
        }
    }

    /// <summary>Bytes of response bodies served so far (lists, watches, every answer).</summary>
    public long BytesServed => Interlocked.Read(ref _bytesServed);

    /// <summary>The Authorization header of every request ("" when none).</summary>
    public IReadOnlyList<string> Authorizations
    {
        get
        {
            lock (_gate)
            {
                return [.. _authorizations];
            }
        }
    }

    public void Start()
    {
        if (_app is not null)
        {
            return;
        }
        // The listening socket is made in the namespace; Kestrel takes the descriptor over.
        ulong Listen()
        {
            var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            s.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            s.Bind(_endpoint);
            s.Listen(64);
            _endpoint = (IPEndPoint)s.LocalEndPoint!; // port 0: the one the kernel chose, kept for restarts
            ulong raw = (ulong)s.SafeHandle.DangerousGetHandle();
            s.SafeHandle.SetHandleAsInvalid(); // Kestrel owns it now
            return raw;
        }
        ulong fd = _netns is null ? Listen() : NetworkNamespace.Run(_netns, Listen);
        _listenFd = (int)fd;
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.ListenHandle(fd, listen =>
        {
            if (_certificate is not null)
            {
                listen.UseHttps(_certificate);
            }
        }));
        builder.WebHost.UseShutdownTimeout(TimeSpan.FromSeconds(1));
        WebApplication app = builder.Build();
        Map(app);
        app.StartAsync().GetAwaiter().GetResult();
        _app = app;
    }

    /// <summary>The API server goes away: the listener closes and open watches end.</summary>
    public void Stop()
    {
        WebApplication? app = _app;
        _app = null;
        if (app is not null)
        {
            // Kestrel does not close a socket it was handed: shut it down, so connections are refused at once, as with a dead server.
            _ = Tmds.Linux.LibC.shutdown(_listenFd, Tmds.Linux.LibC.SHUT_RDWR);
            app.StopAsync(TimeSpan.FromSeconds(2)).GetAwaiter().GetResult();
            app.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
    }

    public void Dispose() => Stop();

    // ---- the cluster's state, as the tests change it ----

    /// <summary>Creates or replaces a node (spec and annotations); an ADDED or MODIFIED event.</summary>
    public void PutNode(string name, string? podCidr, IReadOnlyDictionary<string, string>? annotations = null, string? podCidr6 = null)
    {
        lock (_gate)
        {
            bool exists = _nodes.TryGetValue(name, out JsonObject? node);
            node ??= new JsonObject
            {
                ["kind"] = "Node",
                ["apiVersion"] = "v1",
                ["metadata"] = new JsonObject
                {
                    ["name"] = name,
                    ["uid"] = Guid.NewGuid().ToString(),
                    ["creationTimestamp"] = DateTime.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture),
                },
                ["spec"] = new JsonObject(),
                ["status"] = RealisticNodes ? RealisticStatus(name) : new JsonObject { ["conditions"] = new JsonArray() },
            };
            if (RealisticNodes)
            {
                node["metadata"]!["labels"] = new JsonObject
                {
                    ["beta.kubernetes.io/arch"] = "amd64",
                    ["beta.kubernetes.io/os"] = "linux",
                    ["kubernetes.io/arch"] = "amd64",
                    ["kubernetes.io/hostname"] = name,
                    ["kubernetes.io/os"] = "linux",
                    ["node.kubernetes.io/instance-type"] = "n2-standard-8",
                    ["topology.kubernetes.io/region"] = "europe-west1",
                    ["topology.kubernetes.io/zone"] = "europe-west1-b",
                };
                node["metadata"]!["managedFields"] = RealisticManagedFields();
            }
            var spec = new JsonObject();
            if (podCidr is not null)
            {
                spec["podCIDR"] = podCidr;
                spec["podCIDRs"] = podCidr6 is null ? new JsonArray(podCidr) : new JsonArray(podCidr, podCidr6);
            }
            node["spec"] = spec;
            var ann = new JsonObject();
            foreach ((string k, string v) in annotations ?? new Dictionary<string, string>())
            {
                ann[k] = v;
            }
            node["metadata"]!["annotations"] = ann;
            _nodes[name] = node;
            Record(exists ? "MODIFIED" : "ADDED", node);
        }
    }

    /// <summary>
    /// The kubelet's heartbeat: the Ready condition's lastHeartbeatTime moves, nothing a lease is
    /// made of (a MODIFIED event carrying the whole Node, as most of a cluster's Node updates are).
    /// </summary>
    public void Heartbeat(string name)
    {
        lock (_gate)
        {
            if (!_nodes.TryGetValue(name, out JsonObject? node))
            {
                return;
            }
            string now = DateTime.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss.fffffff'Z'", CultureInfo.InvariantCulture);
            foreach (JsonNode? c in node["status"]?["conditions"]?.AsArray() ?? [])
            {
                if (c?["type"]?.GetValue<string>() == "Ready")
                {
                    c["lastHeartbeatTime"] = now;
                }
            }
            if (node["metadata"]?["managedFields"] is JsonArray fields && fields.Count > 0)
            {
                fields[^1]!["time"] = now; // the kubelet's status entry
            }
            Record("MODIFIED", node);
        }
    }

    /// <summary>
    /// The server-side apply bookkeeping a real API server puts in every Node it serves, lists and
    /// watch events alike (kubelet, kube-controller-manager, flanneld's status patch): about 2.5 KB,
    /// in the metadata, before the spec a node reads.
    /// </summary>
    private static JsonArray RealisticManagedFields()
    {
        const string t = "2026-12-01T08:00:00Z";
        JsonObject Entry(string manager, string? subresource, JsonObject fields)
        {
            var e = new JsonObject { ["manager"] = manager, ["operation"] = "Update", ["apiVersion"] = "v1", ["time"] = t, ["fieldsType"] = "FieldsV1", ["fieldsV1"] = fields };
            if (subresource is not null)
            {
                e["subresource"] = subresource;
            }
            return e;
        }
        JsonObject Keys(params string[] keys) => new(keys.Select(k => KeyValuePair.Create<string, JsonNode?>(k, new JsonObject())));
        var conditions = new JsonObject { ["."] = new JsonObject() };
        foreach (string type in new[] { "DiskPressure", "MemoryPressure", "PIDPressure", "Ready" })
        {
            conditions[$"k:{{\"type\":\"{type}\"}}"] = Keys(".", "f:lastHeartbeatTime", "f:lastTransitionTime", "f:message", "f:reason", "f:status", "f:type");
        }
        return new JsonArray(
            Entry("kubelet", null, new JsonObject
            {
                ["f:metadata"] = new JsonObject
                {
                    ["f:annotations"] = Keys(".", "f:node.alpha.kubernetes.io/ttl", "f:volumes.kubernetes.io/controller-managed-attach-detach"),
                    ["f:labels"] = Keys(".", "f:beta.kubernetes.io/arch", "f:beta.kubernetes.io/os", "f:kubernetes.io/arch", "f:kubernetes.io/hostname", "f:kubernetes.io/os",
                        "f:node.kubernetes.io/instance-type", "f:topology.kubernetes.io/region", "f:topology.kubernetes.io/zone"),
                },
                ["f:spec"] = Keys("f:providerID"),
            }),
            Entry("kube-controller-manager", null, new JsonObject { ["f:spec"] = new JsonObject { ["f:podCIDR"] = new JsonObject(), ["f:podCIDRs"] = Keys(".", "v:\"10.244.0.0/24\"") } }),
            Entry("flanneld", "status", new JsonObject
            {
                ["f:metadata"] = new JsonObject
                {
                    ["f:annotations"] = Keys("f:flannel.alpha.coreos.com/backend-data", "f:flannel.alpha.coreos.com/backend-type", "f:flannel.alpha.coreos.com/kube-subnet-manager",
                        "f:flannel.alpha.coreos.com/public-ip"),
                },
                ["f:status"] = new JsonObject { ["f:conditions"] = new JsonObject { ["k:{\"type\":\"NetworkUnavailable\"}"] = Keys(".", "f:lastHeartbeatTime", "f:lastTransitionTime", "f:message", "f:reason", "f:status", "f:type") } },
            }),
            Entry("kubelet", "status", new JsonObject
            {
                ["f:status"] = new JsonObject
                {
                    ["f:allocatable"] = Keys("f:ephemeral-storage", "f:memory"),
                    ["f:capacity"] = Keys("f:ephemeral-storage", "f:memory"),
                    ["f:conditions"] = conditions,
                    ["f:images"] = new JsonObject(),
                    ["f:nodeInfo"] = Keys("f:bootID", "f:containerRuntimeVersion", "f:kernelVersion", "f:kubeProxyVersion", "f:kubeletVersion", "f:osImage"),
                },
            }));
    }

    /// <summary>A kubelet's Node status, about 15 KB of JSON: 50 images, five conditions, addresses, capacity, nodeInfo.</summary>
    private static JsonObject RealisticStatus(string name)
    {
        const string t = "2026-12-01T08:00:00Z";
        JsonObject Condition(string type, string status, string reason, string message) => new()
        {
            ["type"] = type,
            ["status"] = status,
            ["lastHeartbeatTime"] = t,
            ["lastTransitionTime"] = t,
            ["reason"] = reason,
            ["message"] = message,
        };
        var images = new JsonArray();
        for (int i = 0; i < 50; i++)
        {
            string repo = $"registry.example/team-{i % 7}/service-{i}";
            string digest = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes(repo)));
            images.Add(new JsonObject
            {
                ["names"] = new JsonArray($"{repo}@sha256:{digest}", $"{repo}:v1.{i}.{i * 3 % 17}", $"mirror.registry.example/{repo}:v1.{i}.{i * 3 % 17}-bookworm"),
                ["sizeBytes"] = 10_000_000L + (i * 7_919_113L),
            });
        }
        var capacity = new JsonObject { ["cpu"] = "8", ["ephemeral-storage"] = "101203600Ki", ["hugepages-1Gi"] = "0", ["hugepages-2Mi"] = "0", ["memory"] = "32874844Ki", ["pods"] = "110" };
        return new JsonObject
        {
            ["capacity"] = capacity,
            ["allocatable"] = capacity.DeepClone(),
            ["conditions"] = new JsonArray(
                Condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                Condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                Condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                Condition("Ready", "True", "KubeletReady", "kubelet is posting ready status. AppArmor enabled")),
            ["addresses"] = new JsonArray(new JsonObject { ["type"] = "InternalIP", ["address"] = "198.51.100.10" }, new JsonObject { ["type"] = "Hostname", ["address"] = name }),
            ["daemonEndpoints"] = new JsonObject { ["kubeletEndpoint"] = new JsonObject { ["Port"] = 10250 } },
            ["nodeInfo"] = new JsonObject
            {
                ["machineID"] = Convert.ToHexStringLower(System.Security.Cryptography.MD5.HashData(Encoding.UTF8.GetBytes(name))),
                ["systemUUID"] = Guid.NewGuid().ToString(),
                ["bootID"] = Guid.NewGuid().ToString(),
                ["kernelVersion"] = "6.1.0-27-cloud-amd64",
                ["osImage"] = "Debian GNU/Linux 12 (bookworm)",
                ["containerRuntimeVersion"] = "containerd://1.7.24",
                ["kubeletVersion"] = "v1.31.4",
                ["kubeProxyVersion"] = "v1.31.4",
                ["operatingSystem"] = "linux",
                ["architecture"] = "amd64",
            },
            ["images"] = images,
        };
    }

    public void DeleteNode(string name)
    {
        lock (_gate)
        {
            if (_nodes.Remove(name, out JsonObject? node))
            {
                Record("DELETED", node);
            }
        }
    }

    public void PutPod(string ns, string name, string nodeName)
    {
        lock (_gate)
        {
            _pods[$"{ns}/{name}"] = new JsonObject
            {
                ["kind"] = "Pod",
                ["apiVersion"] = "v1",
                ["metadata"] = new JsonObject { ["name"] = name, ["namespace"] = ns },
                ["spec"] = new JsonObject { ["nodeName"] = nodeName },
            };
        }
    }

    /// <summary>A copy of the node as the API serves it, or null.</summary>
    public JsonObject? Node(string name)
    {
        lock (_gate)
        {
            return _nodes.TryGetValue(name, out JsonObject? n) ? (JsonObject)n.DeepClone() : null;
        }
    }

    public IReadOnlyDictionary<string, string> Annotations(string name) =>
        Node(name)?["metadata"]?["annotations"]?.AsObject().ToDictionary(kv => kv.Key, kv => kv.Value!.GetValue<string>()) ?? [];

    /// <summary>Served at <c>/openapi/v2</c> (gnostic protocol buffers, <see cref="OpenApiV2Proto"/>), or null: 404.</summary>
    public byte[]? OpenApiV2 { get; set; }

    /// <summary>Watches from any resourceVersion before now get 410 Gone (as after etcd compaction).</summary>
    public void Compact()
    {
        lock (_gate)
        {
            _compactedAt = _version;
            _events.Clear();
        }
    }

    /// <summary>
    /// <see cref="Compact"/>, and every watch open now gets the ERROR event with a 410 Status and
    /// ends, as a real API server ends a watch it can no longer serve from its cache ("too old
    /// resource version"): the watcher must list again.
    /// </summary>
    public void ExpireWatches()
    {
        lock (_gate)
        {
            _compactedAt = _version;
            _events.Clear();
            _expiries++;
            TaskCompletionSource was = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            was.TrySetResult();
        }
    }

    /// <summary>
    /// Writes of other objects (pods, leases, events): etcd's revision, and with it every
    /// resourceVersion, moves by <paramref name="count"/> without a Node event. A watcher of Nodes
    /// learns the newer version only from a BOOKMARK.
    /// </summary>
    public void WriteOtherObjects(int count)
    {
        lock (_gate)
        {
            _version += count;
        }
    }

    /// <summary>
    /// Every watch open now stops sending, events and bookmarks alike, with its connection left
    /// open (a hung server, or a peer that is gone without a FIN reaching the client: half-open).
    /// Watches started after this are served as usual.
    /// </summary>
    public void HangWatches()
    {
        lock (_gate)
        {
            _hangs++;
            TaskCompletionSource was = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            was.TrySetResult();
        }
    }

    private void Record(string type, JsonObject node)
    {
        _version++;
        node["metadata"]!["resourceVersion"] = _version.ToString(CultureInfo.InvariantCulture);
        _events.Add((_version, type, (JsonObject)node.DeepClone()));
        if (_events.Count > MaxEvents)
        {
            // The watch cache's window: older resourceVersions are compacted away (a watcher that far behind gets a 410).
            _compactedAt = _events[MaxEvents / 2].Version - 1;
            _events.RemoveRange(0, MaxEvents / 2);
        }
        TaskCompletionSource was = _changed;
        _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        was.TrySetResult();
    }

    // ---- the HTTP surface ----

    private void Map(WebApplication app)
    {
        app.Use(async (ctx, next) =>
        {
            lock (_gate)
            {
                _requests.Add($"{ctx.Request.Method} {ctx.Request.Path}{ctx.Request.QueryString} {ctx.Request.ContentType}".TrimEnd());
                _authorizations.Add(ctx.Request.Headers.Authorization.ToString());
            }
            ctx.Response.Body = new CountingStream(ctx.Response.Body, n => Interlocked.Add(ref _bytesServed, n));
            await next(ctx);
        });
        app.MapGet("/version", () => Json(new JsonObject { ["major"] = "1", ["minor"] = "20", ["gitVersion"] = "v1.20.0-standin", ["platform"] = "linux/amd64" }));
        app.MapGet("/api", () => Json(new JsonObject
        {
            ["kind"] = "APIVersions",
            ["versions"] = new JsonArray("v1"),
            ["serverAddressByClientCIDRs"] = new JsonArray(new JsonObject { ["clientCIDR"] = "0.0.0.0/0", ["serverAddress"] = _endpoint.ToString() }),
        }));
        // Groups and kinds a deployment manifest uses, so kubectl can map them (apply --dry-run=client); only nodes and pods have objects.
        app.MapGet("/apis", () => Json(new JsonObject
        {
            ["kind"] = "APIGroupList",
            ["apiVersion"] = "v1",
            ["groups"] = new JsonArray(Group("apps"), Group("rbac.authorization.k8s.io")),
        }));
        app.MapGet("/apis/apps/v1", () => ResourceList("apps/v1", Resource("daemonsets", "DaemonSet", true, ["get", "create", "patch"], "ds")));
        app.MapGet("/apis/rbac.authorization.k8s.io/v1", () => ResourceList("rbac.authorization.k8s.io/v1",
            Resource("clusterroles", "ClusterRole", false, ["get", "create", "patch"], null),
            Resource("clusterrolebindings", "ClusterRoleBinding", false, ["get", "create", "patch"], null)));
        app.MapGet("/api/v1", () => ResourceList("v1",
            Resource("nodes", "Node", false, ["get", "list", "watch", "patch"], "no"),
            Resource("nodes/status", "Node", false, ["get", "patch"], null),
            Resource("pods", "Pod", true, ["get"], "po"),
            Resource("namespaces", "Namespace", false, ["get", "create", "patch"], "ns"),
            Resource("serviceaccounts", "ServiceAccount", true, ["get", "create", "patch"], "sa"),
            Resource("configmaps", "ConfigMap", true, ["get", "create", "patch"], "cm")));
        app.MapGet("/api/v1/nodes", ListOrWatch);
        app.MapGet("/api/v1/nodes/{name}", (string name) => GetOne(() => _nodes.GetValueOrDefault(name), "nodes", name));
        app.MapGet("/api/v1/nodes/{name}/status", (string name) => GetOne(() => _nodes.GetValueOrDefault(name), "nodes", name));
        app.MapMethods("/api/v1/nodes/{name}", ["PATCH"], (string name, HttpRequest r) => Patch(name, r, status: false));
        app.MapMethods("/api/v1/nodes/{name}/status", ["PATCH"], (string name, HttpRequest r) => Patch(name, r, status: true));
        app.MapGet("/api/v1/namespaces/{ns}/pods/{name}", (string ns, string name) => GetOne(() => _pods.GetValueOrDefault($"{ns}/{name}"), "pods", name));
        // The OpenAPI v2 document kubectl validates manifests against, when a test gives one (else 404, and kubectl cannot validate).
        app.MapGet("/openapi/v2", () => OpenApiV2 is byte[] doc ? Results.Bytes(doc, OpenApiV2Proto.ContentType) : StatusResult(404, "NotFound", "the server could not find the requested resource"));
        // Any other object is not there, said as the API server says it.
        app.MapFallback((HttpContext ctx) => StatusResult(404, "NotFound", $"the server could not find the requested resource ({ctx.Request.Path})"));
    }

    private static JsonObject Group(string name) => new()
    {
        ["name"] = name,
        ["versions"] = new JsonArray(new JsonObject { ["groupVersion"] = $"{name}/v1", ["version"] = "v1" }),
        ["preferredVersion"] = new JsonObject { ["groupVersion"] = $"{name}/v1", ["version"] = "v1" },
    };

    private static IResult ResourceList(string groupVersion, params JsonObject[] resources) => Json(new JsonObject
    {
        ["kind"] = "APIResourceList",
        ["apiVersion"] = "v1",
        ["groupVersion"] = groupVersion,
        ["resources"] = new JsonArray([.. resources]),
    });

    private static JsonObject Resource(string name, string kind, bool namespaced, string[] verbs, string? shortName)
    {
        var r = new JsonObject
        {
            ["name"] = name,
            ["singularName"] = "",
            ["namespaced"] = namespaced,
            ["kind"] = kind,
            ["verbs"] = new JsonArray([.. verbs.Select(v => (JsonNode)v)]),
        };
        if (shortName is not null)
        {
            r["shortNames"] = new JsonArray(shortName);
        }
        return r;
    }

    private static IResult Json(JsonNode body, int status = 200) =>
        Results.Text(body.ToJsonString(), "application/json", Encoding.UTF8, status);

    private static IResult StatusResult(int code, string reason, string message) => Json(StatusObject(code, reason, message), code);

    private static JsonObject StatusObject(int code, string reason, string message) => new()
    {
        ["kind"] = "Status",
        ["apiVersion"] = "v1",
        ["metadata"] = new JsonObject(),
        ["status"] = "Failure",
        ["message"] = message,
        ["reason"] = reason,
        ["code"] = code,
    };

    private IResult GetOne(Func<JsonObject?> find, string resource, string name)
    {
        lock (_gate)
        {
            return find() is JsonObject o ? Json(o.DeepClone())
                : StatusResult(404, "NotFound", $"{resource} \"{name}\" not found");
        }
    }

    private async Task ListOrWatch(HttpContext ctx)
    {
        IQueryCollection q = ctx.Request.Query;
        if (q["watch"] is { Count: > 0 } w && w[0] is "true" or "1")
        {
            await Watch(ctx, q["resourceVersion"].ToString(), int.TryParse(q["timeoutSeconds"], out int t) ? t : 1800, q["allowWatchBookmarks"].ToString() == "true");
            return;
        }
        IResult answer;
        lock (_gate)
        {
            answer = ListPage(q);
        }
        await answer.ExecuteAsync(ctx);
    }

    /// <summary>
    /// A page of the node list as the API server pages one (<c>limit</c>, <c>continue</c>): a list
    /// from its cache (<c>resourceVersion=0</c>) ignores the limit; a continue token names where the
    /// next page starts and the resourceVersion it was made at, and once the history was compacted
    /// past that it is a 410. (The API server serves every page at the first page's resourceVersion,
    /// from etcd; the stand-in serves the rest of the current state.)
    /// </summary>
    private IResult ListPage(IQueryCollection q)
    {
        IEnumerable<KeyValuePair<string, JsonObject>> nodes = _nodes;
        if (q["continue"].ToString() is { Length: > 0 } token)
        {
            string[] parts = Encoding.UTF8.GetString(Convert.FromBase64String(token)).Split('|', 2);
            if (long.Parse(parts[0], CultureInfo.InvariantCulture) < _compactedAt)
            {
                return StatusResult(410, "Expired", "The provided continue parameter is too old to display a consistent list result. "
                    + "You can start a new list without the continue parameter.");
            }
            nodes = nodes.Where(n => string.CompareOrdinal(n.Key, parts[1]) > 0);
        }
        int limit = q["resourceVersion"].ToString() != "0" && int.TryParse(q["limit"], out int l) && l > 0 ? l : int.MaxValue;
        JsonObject[] page = [.. nodes.Take(limit == int.MaxValue ? int.MaxValue : limit + 1).Select(n => n.Value)];
        var metadata = new JsonObject { ["resourceVersion"] = _version.ToString(CultureInfo.InvariantCulture) };
        if (page.Length > limit)
        {
            page = page[..limit];
            string last = page[^1]["metadata"]!["name"]!.GetValue<string>();
            metadata["continue"] = Convert.ToBase64String(Encoding.UTF8.GetBytes($"{_version}|{last}"));
        }
        var list = new JsonObject { ["kind"] = "NodeList", ["apiVersion"] = "v1", ["metadata"] = metadata, ["items"] = new JsonArray([.. page.Select(n => n.DeepClone())]) };
        if (++_listPagesServed == CompactAfterListPage)
        {
            // Other objects written (etcd's revision moves with every key) and the history compacted
            // under the paged list: its next token is too old.
            _version++;
            _compactedAt = _version;
            _events.Clear();
        }
        return Json(list);
    }

    /// <summary>
    /// Events after <paramref name="from"/>, then each new one as it happens (with
    /// <paramref name="bookmarks"/> a BOOKMARK every <see cref="BookmarkInterval"/> and 2 s before the
    /// timeout), until the timeout, the client leaves, or the server stops.
    /// </summary>
    private async Task Watch(HttpContext ctx, string from, int timeoutSeconds, bool bookmarks)
    {
        ctx.Response.ContentType = "application/json";
        using var until = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted,
            ctx.RequestServices.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping);
        until.CancelAfter(TimeSpan.FromSeconds(timeoutSeconds));
        DateTime end = DateTime.UtcNow.AddSeconds(timeoutSeconds), nextBookmark = NextBookmark(DateTime.UtcNow, end);
        long sent, expiries, hangs;
        List<string> lines = [];
        lock (_gate)
        {
            expiries = _expiries;
            hangs = _hangs;
            if (from is "" or "0")
            {
                // No resourceVersion: the current state as ADDED events, then changes.
                lines.AddRange(_nodes.Values.Select(n => Event("ADDED", n)));
                sent = _version;
            }
            else if (!long.TryParse(from, CultureInfo.InvariantCulture, out sent) || sent < _compactedAt)
            {
                lines.Add(new JsonObject
                {
                    ["type"] = "ERROR",
                    ["object"] = StatusObject(410, "Expired", $"too old resource version: {from} ({_compactedAt})"),
                }.ToJsonString());
                sent = long.MaxValue;
            }
        }
        await ctx.Response.StartAsync();
        while (true)
        {
            Task changed;
            lock (_gate)
            {
                if (_expiries != expiries && sent != long.MaxValue)
                {
                    lines.Add(new JsonObject
                    {
                        ["type"] = "ERROR",
                        ["object"] = StatusObject(410, "Expired", $"too old resource version: {sent} ({_compactedAt})"),
                    }.ToJsonString());
                    sent = long.MaxValue;
                }
                foreach ((long version, string type, JsonObject node) in _events.Where(e => e.Version > sent))
                {
                    lines.Add(Event(type, node));
                    sent = version;
                }
                if (bookmarks && DateTime.UtcNow >= nextBookmark && sent != long.MaxValue)
                {
                    lines.Add(Bookmark(_version));
                    Interlocked.Increment(ref _bookmarksSent);
                    nextBookmark = NextBookmark(DateTime.UtcNow, end);
                }
                if (_hangs != hangs)
                {
                    lines.Clear();
                    sent = long.MinValue;
                }
                changed = _changed.Task;
            }
            try
            {
                if (sent == long.MinValue)
                {
                    await Task.Delay(Timeout.Infinite, ctx.RequestAborted); // hung: the connection open, nothing sent, the timeout not kept
                }
                foreach (string line in lines)
                {
                    await ctx.Response.WriteAsync(line + "\n", until.Token);
                }
                lines.Clear();
                await ctx.Response.Body.FlushAsync(until.Token);
                if (sent == long.MaxValue)
                {
                    return;
                }
                TimeSpan toBookmark = nextBookmark - DateTime.UtcNow;
                await (bookmarks ? changed.WaitAsync(toBookmark > TimeSpan.Zero ? toBookmark : TimeSpan.Zero, until.Token) : changed.WaitAsync(until.Token));
            }
            catch (TimeoutException)
            {
                // time for a bookmark
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>The watch cache's next bookmark: a <see cref="BookmarkInterval"/> from now, or 2 s before the watch ends if that is sooner.</summary>
    private DateTime NextBookmark(DateTime now, DateTime end)
    {
        DateTime periodic = now + BookmarkInterval, beforeEnd = end.AddSeconds(-2);
        return beforeEnd > now && beforeEnd < periodic ? beforeEnd : periodic;
    }

    private static string Bookmark(long version) => new JsonObject
    {
        ["type"] = "BOOKMARK",
        ["object"] = new JsonObject
        {
            ["kind"] = "Node",
            ["apiVersion"] = "v1",
            ["metadata"] = new JsonObject { ["resourceVersion"] = version.ToString(CultureInfo.InvariantCulture) },
        },
    }.ToJsonString();

    private static string Event(string type, JsonObject node) => new JsonObject { ["type"] = type, ["object"] = node.DeepClone() }.ToJsonString();

    private async Task<IResult> Patch(string name, HttpRequest request, bool status)
    {
        string? type = request.ContentType?.Split(';')[0].Trim();
        if (type is not ("application/merge-patch+json" or "application/strategic-merge-patch+json"))
        {
            return StatusResult(415, "UnsupportedMediaType", $"the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json (got {type})");
        }
        if (!status && ForbidNodePatch)
        {
            return StatusResult(403, "Forbidden",
                $"nodes \"{name}\" is forbidden: User \"system:serviceaccount:kube-flannel:flannel\" cannot patch resource \"nodes\" in API group \"\" at the cluster scope");
        }
        using var reader = new StreamReader(request.Body, Encoding.UTF8);
        string text = await reader.ReadToEndAsync();
        if (JsonNode.Parse(text) is not JsonObject patch)
        {
            return StatusResult(400, "BadRequest", "the patch is not a JSON object");
        }
        lock (_gate)
        {
            if (!_nodes.TryGetValue(name, out JsonObject? node))
            {
                return StatusResult(404, "NotFound", $"nodes \"{name}\" not found");
            }
            // The main resource writes metadata and spec; the status subresource metadata and status.
            string ignored = status ? "spec" : "status";
            patch.Remove(ignored);
            patch.Remove("kind");
            patch.Remove("apiVersion");
            Merge(node, patch, strategic: type == "application/strategic-merge-patch+json", path: "");
            Record("MODIFIED", node);
            return Json(node.DeepClone());
        }
    }

    /// <summary>RFC 7386 merge (null deletes); a strategic merge patch merges <c>status.conditions</c> and <c>status.addresses</c> by <c>type</c>.</summary>
    private static void Merge(JsonObject target, JsonObject patch, bool strategic, string path)
    {
        foreach ((string key, JsonNode? value) in patch.ToList())
        {
            string at = path + "/" + key;
            if (value is null)
            {
                target.Remove(key);
            }
            else if (value is JsonObject o && target[key] is JsonObject t)
            {
                Merge(t, o, strategic, at);
            }
            else if (strategic && value is JsonArray items && at is "/status/conditions" or "/status/addresses" && target[key] is JsonArray existing)
            {
                foreach (JsonNode? item in items)
                {
                    string? mergeKey = item?["type"]?.GetValue<string>();
                    JsonNode? same = existing.FirstOrDefault(e => e?["type"]?.GetValue<string>() == mergeKey);
                    if (same is JsonObject so && item is JsonObject io)
                    {
                        Merge(so, io, strategic, at);
                    }
                    else
                    {
                        existing.Add(item?.DeepClone());
                    }
                }
            }
            else
            {
                target[key] = value.DeepClone();
            }
        }
    }
}

/// <summary>A write-only stream that counts what passes through it.</summary>
internal sealed class CountingStream(Stream inner, Action<int> counted) : Stream
{
    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override void Flush() => inner.Flush();

    public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count)
    {
        counted(count);
        inner.Write(buffer, offset, count);
    }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        counted(buffer.Length);
        return inner.WriteAsync(buffer, cancellationToken);
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();
}
