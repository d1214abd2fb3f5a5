using System.Globalization;
using System.Security.Cryptography;
using Dataplane.Lab;
using Dataplane.Node;
using Dataplane.TestSupport;
using Dataplane.TunTap;
using YamlDotNet.RepresentationModel;

namespace Dataplane.Integration.Tests.Kube;

/// <summary>deploy/kube-dataplane.yml itself, as the API server stores it: the ConfigMap's files and the DaemonSet's pod template.</summary>
internal sealed class DaemonSetManifest
{
    public static readonly string File_ = Path.Combine(Repository.Root, "deploy", "kube-dataplane.yml");

    public DaemonSetManifest()
    {
        var yaml = new YamlStream();
        using (var reader = new StreamReader(File_))
        {
            yaml.Load(reader);
        }
        Dictionary<string, YamlMappingNode> byKind = yaml.Documents.Select(d => (YamlMappingNode)d.RootNode)
            .ToDictionary(n => ((YamlScalarNode)n["kind"]).Value!);
        ConfigMapData = ((YamlMappingNode)byKind["ConfigMap"]["data"]).Children
            .ToDictionary(e => ((YamlScalarNode)e.Key).Value!, e => ((YamlScalarNode)e.Value).Value!);
        YamlMappingNode daemonSet = byKind["DaemonSet"];
        Namespace = Scalar(daemonSet["metadata"]["namespace"]);
        Pod = (YamlMappingNode)daemonSet["spec"]["template"]["spec"];
    }

    public IReadOnlyDictionary<string, string> ConfigMapData { get; }
    public string Namespace { get; }
    public YamlMappingNode Pod { get; }

    /// <summary>A container or init container of the pod, by name.</summary>
    public YamlMappingNode Container(string name) =>
        new[] { "initContainers", "containers" }.Where(k => Pod.Children.ContainsKey(k))
            .SelectMany(k => ((YamlSequenceNode)Pod[k]).Cast<YamlMappingNode>())
            .Single(c => Scalar(c["name"]) == name);

    public YamlMappingNode Volume(string name) =>
        ((YamlSequenceNode)Pod["volumes"]).Cast<YamlMappingNode>().Single(v => Scalar(v["name"]) == name);

    public static string Scalar(YamlNode n) => ((YamlScalarNode)n).Value!;

    public static string[] Scalars(YamlMappingNode parent, string key) =>
        parent.Children.ContainsKey(key) ? [.. ((YamlSequenceNode)parent[key]).Select(Scalar)] : [];

    public static YamlMappingNode? Child(YamlMappingNode parent, string key) =>
        parent.Children.TryGetValue(key, out YamlNode? n) ? n as YamlMappingNode : null;
}

/// <summary>
/// One node's kubelet, as far as the DaemonSet's pod needs one, with podman (and runc) as the
/// container runtime: each container of the manifest runs with its exact command and args, its env
/// (the downward API's fields filled in), its capabilities (stricter than a kubelet: the runtime's
/// defaults are dropped, so the pod proves it needs nothing but what it adds), its volumes (hostPath
/// volumes under this node's own directory, which stands for its root file system; the ConfigMap's
/// files read-only; emptyDirs per pod), the host network (the node's namespace), and what a kubelet
/// gives every pod: the service account's token, ca.crt and namespace, and
/// <c>KUBERNETES_SERVICE_HOST/PORT</c>. Probes run as a kubelet runs them.
/// </summary>
internal sealed class PodmanKubelet : IDisposable
{
    private readonly KubeCluster _k;
    private readonly DaemonSetManifest _manifest;
    private readonly string _image;
    private readonly int _node;
    private readonly bool _tunDevice;
    private readonly string _root;
    private readonly List<string> _containers = [];

    /// <param name="configMap">The ConfigMap's files as this cluster's operator set them (net-conf.json's backend).</param>
    /// <param name="tunDevice">Mount /dev/net/tun as the manifest does; false: the operator took that volume out.</param>
    public PodmanKubelet(KubeCluster k, DaemonSetManifest manifest, string image, int node, IReadOnlyDictionary<string, string> configMap, bool tunDevice)
    {
        _k = k;
        _manifest = manifest;
        _image = image;
        _node = node;
        _tunDevice = tunDevice;
        _root = k.C.Path_($"host{node}");
        ConfigMapDir = Directory.CreateDirectory(Path.Combine(_root, "kubelet", "configmap")).FullName;
        foreach (var (file, text) in configMap)
        {
            File.WriteAllText(Path.Combine(ConfigMapDir, file), text);
        }
        ServiceAccountDir = Directory.CreateDirectory(Path.Combine(_root, "kubelet", "serviceaccount")).FullName;
        Token = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(24));
        File.WriteAllText(Path.Combine(ServiceAccountDir, "token"), Token);
        File.WriteAllText(Path.Combine(ServiceAccountDir, "ca.crt"), k.Authority?.CaPem ?? throw new InvalidOperationException("the API server needs TLS"));
        File.WriteAllText(Path.Combine(ServiceAccountDir, "namespace"), manifest.Namespace);
    }

    public string ConfigMapDir { get; }
    public string ServiceAccountDir { get; }
    /// <summary>The service account's token this kubelet mounts: the API server sees it as the bearer.</summary>
    public string Token { get; }
    public string NodeName => KubeCluster.NodeName(_node);

    /// <summary>A path of this node's root file system (where hostPath volumes live).</summary>
    public string HostPath(string path) => Path.Combine(_root, path.TrimStart('/'));

    /// <summary>Runs an init container to its end; returns its result.</summary>
    public ProcessRunner.Result RunToEnd(string container, string podName) =>
        ProcessRunner.Run(Podman(), Arguments(container, podName), 120_000);

    /// <summary>Starts a container (in the foreground of a podman process whose output is collected).</summary>
    public NodeProcess Start(string container, string podName, string? image = null) =>
        _k.C.Topology.Start(null, [Podman(), .. Arguments(container, podName, image)], $"{NodeName}/{podName}");

    /// <summary>The container's readiness probe, as a kubelet runs an exec probe: true when it exits 0.</summary>
    public bool Ready(string container, string podName)
    {
        YamlMappingNode probe = (YamlMappingNode)_manifest.Container(container)["readinessProbe"];
        string[] command = DaemonSetManifest.Scalars((YamlMappingNode)probe["exec"], "command");
        return ProcessRunner.Run(Podman(), ["exec", ContainerName(podName, container), .. command], 30_000).ExitCode == 0;
    }

    /// <summary>The container's HTTP probe (liveness, readiness) as a kubelet sends it to a host-network pod: GET to the node's address; the status code.</summary>
    public int HttpProbe(string container, string probe)
    {
        var get = (YamlMappingNode)_manifest.Container(container)[probe]["httpGet"];
        string url = $"http://{Topology.UnderlayIp(_node)}:{DaemonSetManifest.Scalar(get["port"])}{DaemonSetManifest.Scalar(get["path"])}";
        ProcessRunner.Result r = _k.C.Topology.Exec(_k.C.Topology.Node(_node), ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5", url], 15_000);
        return int.TryParse(r.Stdout.Trim(), CultureInfo.InvariantCulture, out int code) ? code : 0;
    }

    /// <summary>Stops a pod's container as a kubelet does: SIGTERM, then SIGKILL after the grace period.</summary>
    public ProcessRunner.Result Stop(string container, string podName)
    {
        string grace = DaemonSetManifest.Scalar(_manifest.Pod["terminationGracePeriodSeconds"]);
        return ProcessRunner.Run(Podman(), ["stop", "-t", grace, ContainerName(podName, container)], 120_000);
    }

    private string ContainerName(string podName, string container) => $"dp{_k.C.Topology.Id}-{NodeName}-{podName}-{container}";

    private List<string> Arguments(string containerName, string podName, string? image = null)
    {
        YamlMappingNode c = _manifest.Container(containerName);
        string name = ContainerName(podName, containerName);
        _containers.Add(name);
        List<string> a =
        [
            "run", "--rm", "--name", name, "--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
            "--pull", "never", "--hostname", NodeName,
        ];
        if (DaemonSetManifest.Scalar(_manifest.Pod["hostNetwork"]) == "true")
        {
            a.AddRange(["--network", $"ns:/run/netns/{_k.C.Topology.Node(_node)}"]);
        }
        if (DaemonSetManifest.Child(c, "securityContext") is YamlMappingNode security)
        {
            Assert.NotEqual("true", security.Children.TryGetValue("privileged", out YamlNode? p) ? DaemonSetManifest.Scalar(p) : "false");
            string[] add = DaemonSetManifest.Child(security, "capabilities") is YamlMappingNode caps ? DaemonSetManifest.Scalars(caps, "add") : [];
            a.AddRange(["--cap-drop", "all", .. add.SelectMany(x => new[] { "--cap-add", x })]);
        }
        string[] env = [.. Environment(c, podName)];
        a.AddRange(env.SelectMany(e => new[] { "--env", e }));
        a.AddRange(Mounts(c, podName).SelectMany(m => new[] { "--volume", m }));
        string[] command = DaemonSetManifest.Scalars(c, "command");
        if (command.Length > 0)
        {
            a.AddRange(["--entrypoint", command[0]]);
        }
        a.Add(image ?? _image);
        a.AddRange(command.Skip(1).Select(x => Expand(x, env)));
        a.AddRange(DaemonSetManifest.Scalars(c, "args").Select(x => Expand(x, env)));
        return a;
    }

    /// <summary>A kubelet's expansion of <c>$(VAR)</c> in command and args from the container's env (an unknown name stays as written; <c>$$</c> is a <c>$</c>).</summary>
    private static string Expand(string text, string[] env)
    {
        var values = env.ToDictionary(e => e[..e.IndexOf('=', StringComparison.Ordinal)], e => e[(e.IndexOf('=', StringComparison.Ordinal) + 1)..]);
        return System.Text.RegularExpressions.Regex.Replace(text, @"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
            m => m.Value == "$$" ? "$" : values.TryGetValue(m.Groups[1].Value, out string? v) ? v : m.Value);
    }

    private IEnumerable<string> Environment(YamlMappingNode c, string podName)
    {
        // What a kubelet puts in every container: where the API server is (the kubernetes Service; here its address).
        yield return $"KUBERNETES_SERVICE_HOST={Topology.UnderlayIp(KubeCluster.ApiHost)}";
        yield return "KUBERNETES_SERVICE_PORT=6443";
        if (!c.Children.ContainsKey("env"))
        {
            yield break;
        }
        foreach (YamlMappingNode e in ((YamlSequenceNode)c["env"]).Cast<YamlMappingNode>())
        {
            string name = DaemonSetManifest.Scalar(e["name"]);
            if (e.Children.TryGetValue("value", out YamlNode? value))
            {
                yield return $"{name}={DaemonSetManifest.Scalar(value)}";
                continue;
            }
            string field = DaemonSetManifest.Scalar(e["valueFrom"]["fieldRef"]["fieldPath"]);
            yield return name + "=" + field switch
            {
                "spec.nodeName" => NodeName,
                "metadata.name" => podName,
                "metadata.namespace" => _manifest.Namespace,
                "status.podIP" or "status.hostIP" => Topology.UnderlayIp(_node), // a host-network pod's IP is its node's
                _ => throw new InvalidOperationException($"the downward API's {field} is not modelled here"),
            };
        }
    }

    private IEnumerable<string> Mounts(YamlMappingNode c, string podName)
    {
        // automountServiceAccountToken: the kubelet's projected volume.
        yield return $"{ServiceAccountDir}:/var/run/secrets/kubernetes.io/serviceaccount:ro";
        foreach (YamlMappingNode m in ((YamlSequenceNode)c["volumeMounts"]).Cast<YamlMappingNode>())
        {
            string target = DaemonSetManifest.Scalar(m["mountPath"]).TrimEnd('/');
            bool readOnly = m.Children.TryGetValue("readOnly", out YamlNode? ro) && DaemonSetManifest.Scalar(ro) == "true";
            YamlMappingNode volume = _manifest.Volume(DaemonSetManifest.Scalar(m["name"]));
            string? source = Source(volume, podName, ref readOnly);
            if (source is not null)
            {
                yield return $"{source}:{target}{(readOnly ? ":ro" : "")}";
            }
        }
    }

    /// <summary>Where a volume's files are on this node; null for a volume this node leaves out (the TUN device when not wanted).</summary>
    private string? Source(YamlMappingNode volume, string podName, ref bool readOnly)
    {
        if (DaemonSetManifest.Child(volume, "configMap") is not null)
        {
            readOnly = true; // a kubelet mounts ConfigMaps read-only
            return ConfigMapDir;
        }
        if (volume.Children.ContainsKey("emptyDir"))
        {
            return Directory.CreateDirectory(Path.Combine(_root, "kubelet", "pods", podName, DaemonSetManifest.Scalar(volume["name"]))).FullName;
        }
        var hostPath = (YamlMappingNode)volume["hostPath"];
        string path = DaemonSetManifest.Scalar(hostPath["path"]);
        string type = hostPath.Children.TryGetValue("type", out YamlNode? t) ? DaemonSetManifest.Scalar(t) : "";
        switch (type)
        {
            case "CharDevice":
                // A device is the host's own: only /dev/net/tun is mounted, and only when this node is to have it.
                Assert.Equal(TunDevice.ClonePath, path);
                return _tunDevice ? path : null;
            case "FileOrCreate":
                string file = HostPath(path);
                Directory.CreateDirectory(Path.GetDirectoryName(file)!);
                File.AppendAllText(file, "");
                return file;
            default:
                return Directory.CreateDirectory(HostPath(path)).FullName;
        }
    }

    private static string Podman() => Require.Tool("podman", "podman");

    /// <summary>Removes every container this kubelet started (a test that failed half-way leaves none running).</summary>
    public void Dispose()
    {
        foreach (string name in _containers.Distinct())
        {
            ProcessRunner.Run(Podman(), ["rm", "-f", "-t", "0", "--ignore", name], 60_000);
        }
    }
}
