using YamlDotNet.RepresentationModel;

namespace Dataplane.Integration.Tests.Kube;

/// <summary>
/// deploy/kube-dataplane.yml: kubectl accepts it (client-side dry run, against the stand-in API
/// server for discovery), and it is what a kube-flannel replacement must be: flanneld's RBAC and
/// no more, our flags, NODE_NAME from the downward API, the shared /run/flannel.
/// </summary>
public class DeployManifestTests
{
    private static readonly string Manifest = Path.Combine(RepositoryRoot(), "deploy", "kube-dataplane.yml");

    [Fact]
    public void Kubectl_accepts_the_manifest_in_a_client_side_dry_run()
    {
        using var k = new KubeCluster("vxlan");
        string output = k.KubectlOk("apply", "--dry-run=client", "--validate=false", "-f", Manifest);
        foreach (string created in new[]
        {
            "namespace/kube-flannel", "clusterrole.rbac.authorization.k8s.io/flannel", "clusterrolebinding.rbac.authorization.k8s.io/flannel",
            "serviceaccount/flannel", "configmap/kube-flannel-cfg", "daemonset.apps/kube-dataplane-ds",
        })
        {
            Assert.Contains($"{created} created (dry run)", output);
        }
    }

    [Fact]
    public void Kubectl_accepts_the_uninstall_manifest_and_it_runs_uninstall_on_every_node()
    {
        string uninstall = Path.Combine(RepositoryRoot(), "deploy", "uninstall-dataplane.yml");
        using var k = new KubeCluster("vxlan");
        string output = k.KubectlOk("apply", "--dry-run=client", "--validate=false", "-f", uninstall);
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

    private static string Scalars(YamlNode n) => string.Join(',', ((YamlSequenceNode)n).Select(x => ((YamlScalarNode)x).Value));

    private static string RepositoryRoot()
    {
        for (string? dir = AppContext.BaseDirectory; dir is not null; dir = Path.GetDirectoryName(dir))
        {
            if (File.Exists(Path.Combine(dir, "Dataplane.sln")))
            {
                return dir;
            }
        }
        throw new InvalidOperationException("repository root (Dataplane.sln) not found above " + AppContext.BaseDirectory);
    }
}
