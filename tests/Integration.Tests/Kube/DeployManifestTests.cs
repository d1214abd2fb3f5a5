using Dataplane.Node;
using Dataplane.TestSupport;
using YamlDotNet.RepresentationModel;

namespace Dataplane.Integration.Tests.Kube;

/// <summary>
/// deploy/kube-dataplane.yml: kubectl accepts it in a client-side dry run and validates it on the
/// way (its default, strict: every field known, of its type, the required ones there) against the
/// OpenAPI definitions the stand-in API server serves, which come from the Kubernetes API's own
/// Python client (python3-kubernetes, generated from the API server's OpenAPI document:
/// openapi_definitions.py); a manifest with an unknown field, a wrong type or a missing required
/// field is refused. And it is what a kube-flannel replacement must be: flanneld's RBAC and no
/// more, our flags, NODE_NAME from the downward API, the shared /run/flannel.
/// </summary>
public class DeployManifestTests
{
    private static readonly string Manifest = Path.Combine(Repository.Root, "deploy", "kube-dataplane.yml");

    [Fact]
    public void Kubectl_validates_and_accepts_the_manifest_in_a_client_side_dry_run()
    {
        using var k = new KubeCluster("vxlan");
        k.Api.OpenApiV2 = KubernetesOpenApi();
        string output = k.KubectlOk("apply", "--dry-run=client", "-f", Manifest);
        foreach (string created in new[]
        {
            "namespace/kube-flannel", "clusterrole.rbac.authorization.k8s.io/flannel", "clusterrolebinding.rbac.authorization.k8s.io/flannel",
            "serviceaccount/flannel", "configmap/kube-flannel-cfg", "daemonset.apps/kube-dataplane-ds",
        })
        {
            Assert.Contains($"{created} created (dry run)", output);
        }

        // The validation is real: kubectl refuses the manifest with one mistake of each kind.
        string text = File.ReadAllText(Manifest);
        foreach ((string from, string to, string said) in new[]
        {
            ("      hostNetwork: true", "      hostNetwrok: true", "ValidationError(DaemonSet.spec.template.spec): unknown field \"hostNetwrok\" in V1PodSpec"),
            ("          periodSeconds: 2", "          periodSeconds: \"2\"", "invalid type for V1Probe.periodSeconds"),
            ("      - name: dataplane\n        image:", "      - image:", "missing required field \"name\" in V1Container"),
        })
        {
            Assert.Contains(from, text);
            string broken = k.C.Path_("broken.yml");
            File.WriteAllText(broken, text.Replace(from, to, StringComparison.Ordinal));
            ProcessRunner.Result r = k.Kubectl("apply", "--dry-run=client", "-f", broken);
            Assert.NotEqual(0, r.ExitCode);
            Assert.True(r.Stderr.Contains(said, StringComparison.Ordinal) && r.Stderr.Contains("error validating", StringComparison.Ordinal), r.Stderr);
        }
    }

    /// <summary>The Kubernetes definitions deploy/*.yml need, from python3-kubernetes, as the API server's protocol buffers.</summary>
    internal static byte[] KubernetesOpenApi()
    {
        Require.Tool("python3", "python3-kubernetes");
        ProcessRunner.Result r = ProcessRunner.Run("/usr/bin/python3", [Path.Combine(Repository.Root, "tests", "Integration.Tests", "Kube", "openapi_definitions.py")], 60_000);
        Assert.True(r.ExitCode == 0, $"openapi_definitions.py (apt-get install python3-kubernetes): {r.Stderr}");
        using var doc = System.Text.Json.JsonDocument.Parse(r.Stdout);
        return OpenApiV2Proto.Encode(doc.RootElement);
    }

    [Fact]
    public void Kubectl_accepts_the_uninstall_manifest_and_it_runs_uninstall_on_every_node()
    {
        string uninstall = Path.Combine(Repository.Root, "deploy", "uninstall-dataplane.yml");
        using var k = new KubeCluster("vxlan");
        k.Api.OpenApiV2 = KubernetesOpenApi();
        string output = k.KubectlOk("apply", "--dry-run=client", "-f", uninstall);
        Assert.Contains("daemonset.apps/dataplane-uninstall created (dry run)", output);
        Assert.Contains("clusterrolebinding.rbac.authorization.k8s.io/dataplane-uninstall created (dry run)", output);

        var yaml = new YamlStream();
        using (var reader = new StreamReader(uninstall))
        {
            yaml.Load(reader);
        }
        Dictionary<string, YamlMappingNode> byKind = yaml.Documents.Select(d => (YamlMappingNode)d.RootNode)
            .ToDictionary(n => ((YamlScalarNode)n["kind"]).Value!);
        var pod = (YamlMappingNode)byKind["DaemonSet"]["spec"]["template"]["spec"];
        Assert.Equal("true", ((YamlScalarNode)pod["hostNetwork"]).Value);
        // --release-lease reads our Node and patches its status, as the node published the lease: nothing more.
        Assert.Equal("dataplane-uninstall", ((YamlScalarNode)pod["serviceAccountName"]).Value);
        var rules = ((YamlSequenceNode)byKind["ClusterRole"]["rules"]).Cast<YamlMappingNode>()
            .Select(r => $"{Scalars(r["resources"])}:{Scalars(r["verbs"])}").ToList();
        Assert.Equal(["nodes:get", "nodes/status:patch"], rules);
        Assert.Equal("dataplane-uninstall", ((YamlScalarNode)byKind["ClusterRoleBinding"]["subjects"][0]["name"]).Value);
        Assert.Equal("Exists", ((YamlScalarNode)((YamlSequenceNode)pod["tolerations"]).Cast<YamlMappingNode>().Single()["operator"]).Value);
        var init = (YamlMappingNode)((YamlSequenceNode)pod["initContainers"])[0];
        Assert.Equal("uninstall,--cni,--release-lease,--kube-subnet-mgr", Scalars(init["args"]));
        var nodeName = (YamlMappingNode)((YamlSequenceNode)init["env"]).Cast<YamlMappingNode>().Single(e => ((YamlScalarNode)e["name"]).Value == "NODE_NAME");
        Assert.Equal("spec.nodeName", ((YamlScalarNode)nodeName["valueFrom"]["fieldRef"]["fieldPath"]).Value);
        Assert.Equal("NET_ADMIN,NET_RAW", Scalars(init["securityContext"]["capabilities"]["add"]));
        string[] mounts = [.. ((YamlSequenceNode)init["volumeMounts"]).Select(m => ((YamlScalarNode)m["mountPath"]).Value!)];
        foreach (string path in new[] { "/run/flannel", "/opt/cni/bin", "/etc/cni/net.d", "/var/lib/dataplane", "/run/dataplane", "/run/xtables.lock" })
        {
            Assert.Contains(path, mounts);
        }
    }

    [Fact]
    public void The_manifest_grants_flanneld_rbac_and_runs_our_node_as_kube_flannel_runs_flanneld()
    {
        var yaml = new YamlStream();
        using (var reader = new StreamReader(Manifest))
        {
            yaml.Load(reader);
        }
        Dictionary<string, YamlMappingNode> byKind = yaml.Documents.Select(d => (YamlMappingNode)d.RootNode)
            .ToDictionary(n => ((YamlScalarNode)n["kind"]).Value!);

        var rules = ((YamlSequenceNode)byKind["ClusterRole"]["rules"]).Cast<YamlMappingNode>()
            .Select(r => $"{Scalars(r["resources"])}:{Scalars(r["verbs"])}").ToList();
        Assert.Equal(["pods:get", "nodes:get,list,watch", "nodes/status:patch"], rules);

        var pod = (YamlMappingNode)byKind["DaemonSet"]["spec"]["template"]["spec"];
        Assert.Equal("true", ((YamlScalarNode)pod["hostNetwork"]).Value);
        Assert.Equal("flannel", ((YamlScalarNode)pod["serviceAccountName"]).Value);
        var container = (YamlMappingNode)((YamlSequenceNode)pod["containers"])[0];
        string args = Scalars(container["args"]);
        Assert.Contains("run,--kube-subnet-mgr,--net-config-path=/etc/kube-flannel/net-conf.json", args);
        Assert.Equal("NET_ADMIN,NET_RAW", Scalars(container["securityContext"]["capabilities"]["add"]));
        YamlMappingNode nodeName = ((YamlSequenceNode)container["env"]).Cast<YamlMappingNode>().Single(e => ((YamlScalarNode)e["name"]).Value == "NODE_NAME");
        Assert.Equal("spec.nodeName", ((YamlScalarNode)nodeName["valueFrom"]["fieldRef"]["fieldPath"]).Value);
        Assert.Contains("/run/flannel", ((YamlSequenceNode)container["volumeMounts"]).Select(m => ((YamlScalarNode)m["mountPath"]).Value));

        // The net-conf.json it mounts is one our node reads.
        string netConf = ((YamlScalarNode)byKind["ConfigMap"]["data"]["net-conf.json"]).Value!;
        using var doc = System.Text.Json.JsonDocument.Parse(netConf);
        Dataplane.Leases.NetworkConfig config = Dataplane.Leases.NetworkConfig.Parse(doc.RootElement, "net-conf.json");
        Assert.Equal("10.244.0.0/16", config.Network.ToString());
        Assert.Equal(Dataplane.Engine.BackendKind.Vxlan, config.Backend);
    }

    /// <summary>
    /// Both DaemonSets update as a hand-over needs: the new pod beside the old one (maxSurge 1, never
    /// one unavailable), no declared port (a hostPort would keep the surge pod off the node), the
    /// control socket's directory shared with the host (where the new node finds the old one), the
    /// old process waiting for its SIGTERM after the hand-over, and readiness from this pod's own
    /// ready file (an emptyDir), which the node writes only once it forwards.
    /// </summary>
    [Theory]
    [InlineData("kube-dataplane.yml")]
    [InlineData("daemonset.yaml")]
    public void The_daemonsets_roll_updates_as_hand_overs(string file)
    {
        var yaml = new YamlStream();
        using (var reader = new StreamReader(Path.Combine(Repository.Root, "deploy", file)))
        {
            yaml.Load(reader);
        }
        YamlMappingNode daemonSet = yaml.Documents.Select(d => (YamlMappingNode)d.RootNode).Single(n => ((YamlScalarNode)n["kind"]).Value == "DaemonSet");
        var update = (YamlMappingNode)daemonSet["spec"]["updateStrategy"];
        Assert.Equal("RollingUpdate", ((YamlScalarNode)update["type"]).Value);
        Assert.Equal("1", ((YamlScalarNode)update["rollingUpdate"]["maxSurge"]).Value);
        Assert.Equal("0", ((YamlScalarNode)update["rollingUpdate"]["maxUnavailable"]).Value);
        var pod = (YamlMappingNode)daemonSet["spec"]["template"]["spec"];
        Assert.True(int.Parse(((YamlScalarNode)pod["terminationGracePeriodSeconds"]).Value!, System.Globalization.CultureInfo.InvariantCulture) >= 20);
        var container = (YamlMappingNode)((YamlSequenceNode)pod["containers"]).Single(c => ((YamlScalarNode)c["name"]).Value == "dataplane");
        Assert.False(container.Children.ContainsKey("ports"), "a declared port is a hostPort on the host network: the surge pod could not be scheduled");
        string[] args = [.. ((YamlSequenceNode)container["args"]).Select(a => ((YamlScalarNode)a).Value!)];
        Assert.Contains("--after-handover=wait", args);
        Assert.Contains("--on-exit=keep", args);
        string readyFile = args.Single(a => a.StartsWith("--ready-file=", StringComparison.Ordinal))["--ready-file=".Length..];
        Assert.Equal($"test,-f,{readyFile}", Scalars(container["readinessProbe"]["exec"]["command"]));

        var mounts = ((YamlSequenceNode)container["volumeMounts"]).Cast<YamlMappingNode>()
            .ToDictionary(m => ((YamlScalarNode)m["mountPath"]).Value!, m => ((YamlScalarNode)m["name"]).Value!);
        var volumes = ((YamlSequenceNode)pod["volumes"]).Cast<YamlMappingNode>().ToDictionary(v => ((YamlScalarNode)v["name"]).Value!);
        Assert.Equal("/run/dataplane", ((YamlScalarNode)volumes[mounts["/run/dataplane"]]["hostPath"]["path"]).Value);
        Assert.True(volumes[mounts[Path.GetDirectoryName(readyFile)!]].Children.ContainsKey("emptyDir"), "the ready file must be this pod's own");
    }

    private static string Scalars(YamlNode n) => string.Join(',', ((YamlSequenceNode)n).Select(x => ((YamlScalarNode)x).Value));
}
