using System.CommandLine;
using Dataplane.Leases.Etcd;
using Dataplane.Leases.Kube;
using Dataplane.Node;
using static Dataplane.Cli.TypedOptions;

namespace Dataplane.Cli;

/// <summary>
/// Where <c>dataplane run</c> takes its leases from, one class per source: the static file, etcd,
/// the Kubernetes API. Each flag is declared once, with its help, check and flanneld remark.
/// </summary>
internal static class LeaseFlags
{
    /// <summary>The static cluster file (the default source).</summary>
    public sealed class File : RunFlags.IGroup
    {
        public Option<string?> Path { get; } = new Option<string?>("--leases")
        {
            Description = "the static cluster file (flannel's schema: {\"config\":..., \"subnets\":{...}})",
        }.NotInFlanneld();

        public IEnumerable<Option> Options => [Path];

        public RunOptions Read(ParseResult r, RunOptions o) => o with { LeasesPath = r.GetValue(Path) };
    }

    /// <summary>etcd v3, with flanneld's flags.</summary>
    public sealed class Etcd(RunFlags.Host host) : RunFlags.IGroup
    {
        private static readonly EtcdOptions D = EtcdOptions.Defaults;

        public Option<string[]?> Endpoints { get; } = Parsed("--etcd-endpoints", "etcd v3 endpoints (comma-separated URLs) holding flannel's config and leases",
            ParseEndpoints, "not a comma-separated list of URLs like http://192.0.2.100:2379").Flanneld();

        public Option<string> Prefix { get; } = new Option<string>("--etcd-prefix")
        {
            Description = "etcd prefix of flannel's keys",
            DefaultValueFactory = _ => D.Prefix,
        }.Flanneld();

        public Option<double> Timeout { get; } = new Option<double>("--etcd-timeout")
        {
            Description = "seconds to wait for etcd per request (and at start)",
            DefaultValueFactory = _ => D.Timeout.TotalSeconds,
        }.InRange(0.5, 3600, "must be 0.5 to 3600 seconds").NotInFlanneld();

        public Option<string?> Username { get; } = new Option<string?>("--etcd-username") { Description = "etcd user" }.Flanneld();
        public Option<string?> Password { get; } = new Option<string?>("--etcd-password") { Description = "etcd password" }.Flanneld();
        public Option<string?> CaFile { get; } = new Option<string?>("--etcd-cafile") { Description = "TLS: the CA that signed etcd's certificate (PEM)" }.Flanneld();
        public Option<string?> CertFile { get; } = new Option<string?>("--etcd-certfile") { Description = "TLS: our client certificate (PEM)" }.Flanneld();
        public Option<string?> KeyFile { get; } = new Option<string?>("--etcd-keyfile") { Description = "TLS: the key of our client certificate (PEM)" }.Flanneld();

        public Option<double> RenewMargin { get; } = new Option<double>("--subnet-lease-renew-margin")
        {
            Description = "minutes before expiry to renew our lease",
            DefaultValueFactory = _ => D.RenewMargin.TotalMinutes,
        }.InRange(0, 24 * 60, "must be 0 to 1440 minutes").Flanneld();

        public Option<double> LeaseTtl { get; } = new Option<double>("--etcd-lease-ttl")
        {
            Description = "seconds our lease lives in etcd unless renewed (flannel: 24 h)",
            DefaultValueFactory = _ => D.LeaseTtl.TotalSeconds,
            Hidden = true,
        }.InRange(2, 10 * 24 * 3600, "must be 2 seconds to 10 days").NotInFlanneld();

        public Option<double> Resync { get; } = new Option<double>("--etcd-resync")
        {
            Description = "seconds between safety re-lists of the leases while the watch holds (± 10 %)",
            DefaultValueFactory = _ => D.Resync.TotalSeconds,
            Hidden = true,
        }.InRange(1, 24 * 3600, "must be 1 second to 1 day").NotInFlanneld();

        public IEnumerable<Option> Options => [Endpoints, Prefix, Timeout, Username, Password, CaFile, CertFile, KeyFile, RenewMargin, LeaseTtl, Resync];

        /// <summary>etcd's options when endpoints are given (an array option not given reads as empty), else none.</summary>
        public RunOptions Read(ParseResult r, RunOptions o) => o with { Etcd = Build(r, host.VtepMacPath(r, o.Device)) };

        private EtcdOptions? Build(ParseResult r, string vtepMacPath) => r.GetValue(Endpoints) is { Length: > 0 } endpoints
            ? new EtcdOptions
            {
                Endpoints = endpoints,
                Prefix = r.GetValue(Prefix)!.TrimEnd('/'),
                Timeout = TimeSpan.FromSeconds(r.GetValue(Timeout)),
                Username = r.GetValue(Username),
                Password = r.GetValue(Password),
                CaFile = r.GetValue(CaFile),
                CertFile = r.GetValue(CertFile),
                KeyFile = r.GetValue(KeyFile),
                RenewMargin = TimeSpan.FromMinutes(r.GetValue(RenewMargin)),
                LeaseTtl = TimeSpan.FromSeconds(r.GetValue(LeaseTtl)),
                Resync = TimeSpan.FromSeconds(r.GetValue(Resync)),
                VtepMacFile = vtepMacPath,
            }
            : null;

        /// <summary>"http://192.0.2.100:2379,https://..." as a list of absolute http(s) URLs.</summary>
        private static string[]? ParseEndpoints(string text)
        {
            string[] urls = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            return urls.Length > 0 && urls.All(u => Uri.TryCreate(u, UriKind.Absolute, out Uri? uri) && uri.Scheme is "http" or "https") ? urls : null;
        }
    }

    /// <summary>The Kubernetes API, as flanneld's <c>--kube-subnet-mgr</c>.</summary>
    public sealed class Kube(RunFlags.Host host) : RunFlags.IGroup
    {
        private static readonly KubeOptions D = KubeOptions.Defaults;

        public Option<bool> SubnetManager { get; } = new Option<bool>("--kube-subnet-mgr")
        {
            Description = "leases from the Kubernetes API: our subnet is our Node's podCIDR, peers are the Nodes flanneld (or we) annotated",
        }.Flanneld();

        public Option<string?> ApiUrl { get; } = new Option<string?>("--kube-api-url")
        {
            Description = "Kubernetes API server URL (default: the kubeconfig's, else the in-cluster service account's)",
        }.Flanneld();

        public Option<string?> Kubeconfig { get; } = new Option<string?>("--kubeconfig-file")
        {
            Description = "kubeconfig file (default: the in-cluster service account)",
        }.Flanneld();

        public Option<string> AnnotationPrefix { get; } = new Option<string>("--kube-annotation-prefix")
        {
            Description = "prefix of the Node annotations that carry the leases",
            DefaultValueFactory = _ => D.AnnotationPrefix,
        }.Flanneld();

        public Option<string> NetConfigPath { get; } = new Option<string>("--net-config-path")
        {
            Description = "the network config with --kube-subnet-mgr (kube-flannel's ConfigMap key net-conf.json)",
            DefaultValueFactory = _ => D.NetConfigPath,
        }.Flanneld();

        public Option<bool> SetUnavailable { get; } = new Option<bool>("--set-node-network-unavailable")
        {
            Description = "set our Node's NetworkUnavailable condition to False once we forward",
            DefaultValueFactory = _ => D.SetNodeNetworkUnavailable,
            Arity = ArgumentArity.ZeroOrOne,
        }.Flanneld();

        public Option<double> Resync { get; } = new Option<double>("--kube-resync")
        {
            Description = "seconds a watch of the nodes runs before it is started again from where it was",
            DefaultValueFactory = _ => D.Resync.TotalSeconds,
            Hidden = true,
        }.InRange(1, 24 * 3600, "must be 1 second to 1 day").NotInFlanneld();

        public Option<double> WatchIdleLimit { get; } = new Option<double>("--kube-watch-idle-limit")
        {
            Description = "seconds a watch of the nodes may be silent (no event, no bookmark) before it is started again from where it was",
            DefaultValueFactory = _ => D.WatchIdleLimit.TotalSeconds,
            Hidden = true,
        }.InRange(1, 24 * 3600, "must be 1 second to 1 day").NotInFlanneld();

        public IEnumerable<Option> Options => [SubnetManager, ApiUrl, Kubeconfig, AnnotationPrefix, NetConfigPath, SetUnavailable, Resync, WatchIdleLimit];

        /// <summary>The Kubernetes options with <c>--kube-subnet-mgr</c>, else none; the node's name from the DaemonSet's environment.</summary>
        public RunOptions Read(ParseResult r, RunOptions o) => o with { Kube = Build(r, host.VtepMacPath(r, o.Device)) };

        private KubeOptions? Build(ParseResult r, string vtepMacPath) => r.GetValue(SubnetManager)
            ? new KubeOptions
            {
                ApiUrl = r.GetValue(ApiUrl),
                KubeconfigFile = r.GetValue(Kubeconfig),
                AnnotationPrefix = r.GetValue(AnnotationPrefix)!,
                NetConfigPath = r.GetValue(NetConfigPath)!,
                SetNodeNetworkUnavailable = r.GetValue(SetUnavailable),
                Resync = TimeSpan.FromSeconds(r.GetValue(Resync)),
                WatchIdleLimit = TimeSpan.FromSeconds(r.GetValue(WatchIdleLimit)),
                VtepMacFile = vtepMacPath,
                // flanneld's environment: the DaemonSet sets NODE_NAME (or POD_NAME and POD_NAMESPACE) from the downward API.
                NodeName = Environment.GetEnvironmentVariable("NODE_NAME"),
                PodName = Environment.GetEnvironmentVariable("POD_NAME"),
                PodNamespace = Environment.GetEnvironmentVariable("POD_NAMESPACE"),
            }
            : null;
    }
}
