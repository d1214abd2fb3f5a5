namespace Dataplane.Leases.Kube;

/// <summary>The Kubernetes lease source's flags, with flanneld's names (<c>--kube-subnet-mgr</c> and the rest).</summary>
internal sealed record KubeOptions
{
    /// <summary>The defaults, as the command line shows them.</summary>
    public static readonly KubeOptions Defaults = new();

    /// <summary>The API server's URL (<c>--kube-api-url</c>); with no kubeconfig it is used as it is, without credentials.</summary>
    public string? ApiUrl { get; init; }
    /// <summary>A kubeconfig file (<c>--kubeconfig-file</c>); neither this nor the URL: the in-cluster config (service account).</summary>
    public string? KubeconfigFile { get; init; }
    /// <summary>flanneld's <c>--kube-annotation-prefix</c>.</summary>
    public string AnnotationPrefix { get; init; } = "flannel.alpha.coreos.com";
    /// <summary>The network config, as the ConfigMap's <c>net-conf.json</c> is mounted (flanneld's <c>--net-config-path</c>).</summary>
    public string NetConfigPath { get; init; } = "/etc/kube-flannel/net-conf.json";
    /// <summary>Set the node's NetworkUnavailable condition to False once we forward (flanneld's default: true).</summary>
    public bool SetNodeNetworkUnavailable { get; init; } = true;
    /// <summary>Deadline of each request (not of a watch).</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>How long one watch runs before it is started again from its resourceVersion (no list; flanneld's informer: 5 min).</summary>
    public TimeSpan Resync { get; init; } = TimeSpan.FromMinutes(5);
    /// <summary>
    /// How long a watch may be silent (no event, no BOOKMARK) before it is abandoned and started
    /// again from its resourceVersion: the API server sends a bookmark at least every minute to a
    /// watch that asks for them, so a silent one hangs or lost its peer (a half-open connection).
    /// </summary>
    public TimeSpan WatchIdleLimit { get; init; } = TimeSpan.FromSeconds(90);
    /// <summary>How often our node is read again while it has no podCIDR yet.</summary>
    public TimeSpan PodCidrPoll { get; init; } = TimeSpan.FromSeconds(2);
    /// <summary>Where our VTEP MAC is kept when our node announces none yet.</summary>
    public string VtepMacFile { get; init; } = "";
    /// <summary>Who we are: <c>NODE_NAME</c>, else the node of the pod <c>POD_NAMESPACE</c>/<c>POD_NAME</c> (flanneld's environment).</summary>
    public string? NodeName { get; init; }
    public string? PodName { get; init; }
    public string? PodNamespace { get; init; }
}
