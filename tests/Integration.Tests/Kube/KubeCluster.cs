using System.Globalization;
using System.Net;
using Dataplane.Lab;
using Dataplane.Node;
using Dataplane.TestSupport;

namespace Dataplane.Integration.Tests.Kube;

/// <summary>
/// A <see cref="Cluster"/> whose leases live in Node objects of a stand-in API server on the
/// underlay (192.0.2.100:6443, its own namespace), as kube-flannel runs: net-conf.json mounted
/// as a file, NODE_NAME from the environment, RBAC that allows only <c>nodes/status</c> patches.
/// </summary>
internal sealed class KubeCluster : IDisposable
{
    public const int ApiHost = 100;
    public const string Prefix = "flannel.alpha.coreos.com/";

    /// <param name="tls">Serve the API over HTTPS with a CA the test makes (<see cref="Authority"/>), as a real API server does.</param>
    public KubeCluster(string backend, bool tls = false)
    {
        Backend = backend;
        C = new Cluster();
        C.Topology.AddNode(ApiHost, withPod: false);
        IPAddress address = IPAddress.Parse(Topology.UnderlayIp(ApiHost));
        Authority = tls ? new ClusterAuthority(address) : null;
        Api = new KubeApiStandIn(C.Topology.Node(ApiHost), new IPEndPoint(address, 6443), Authority?.ServerCertificate) { ForbidNodePatch = true };
        Api.Start();
        File.WriteAllText(NetConf, $$"""{"Network":"10.244.0.0/16","Backend":{"Type":"{{backend}}"} }""");
    }

    public Cluster C { get; }
    public KubeApiStandIn Api { get; }
    public ClusterAuthority? Authority { get; }
    public string Backend { get; }
    public string NetConf => C.Path_("net-conf.json");

    public static string NodeName(int i) => string.Create(CultureInfo.InvariantCulture, $"node{i}");

    public static string PodCidr(int i) => string.Create(CultureInfo.InvariantCulture, $"10.244.{i}.0/24");

    /// <summary>Node i registered with the API server (as the kubelet does) and given its podCIDR (as the controller manager does).</summary>
    /// <remarks>Dual-stack (<paramref name="ipv6"/>): the node has an IPv6 underlay address and a second podCIDR, 2001:db8:244:i::/64.</remarks>
    public void Register(int i, bool withPod = true, string? podCidr = "", IReadOnlyDictionary<string, string>? annotations = null, bool ipv6 = false)
    {
        C.Topology.AddNode(i, withPod, ipv6);
        Api.PutNode(NodeName(i), podCidr == "" ? PodCidr(i) : podCidr, annotations, ipv6 ? Topology.SubnetIpv6(i) : null);
    }

    /// <summary>net-conf.json of a dual-stack cluster, as kube-flannel's ConfigMap has it with EnableIPv6.</summary>
    public void DualStack() =>
        File.WriteAllText(NetConf, $$"""{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8:244::/48","Backend":{"Type":"{{Backend}}"} }""");

    /// <summary>The annotations flanneld writes for a dual-stack vxlan node.</summary>
    public static Dictionary<string, string> FlanneldDualStackVxlan(int i, string mac, string mac6)
    {
        Dictionary<string, string> a = FlanneldVxlan(i, mac);
        a[Prefix + "backend-v6-data"] = $$"""{"VNI":1,"VtepMAC":"{{mac6}}"}""";
        a[Prefix + "public-ipv6"] = Topology.UnderlayIpv6(i);
        return a;
    }

    /// <summary>The annotations flanneld writes for a vxlan node.</summary>
    public static Dictionary<string, string> FlanneldVxlan(int i, string mac) => new()
    {
        [Prefix + "backend-data"] = $$"""{"VNI":1,"VtepMAC":"{{mac}}"}""",
        [Prefix + "backend-type"] = "vxlan",
        [Prefix + "kube-subnet-manager"] = "true",
        [Prefix + "public-ip"] = Topology.UnderlayIp(i),
    };

    /// <summary>The command of our node i (not started).</summary>
    public string[] Command(int i, params string[] extra) =>
    [
        "env", $"NODE_NAME={NodeName(i)}", .. SelfCommand.Prefix(), "run", "--kube-subnet-mgr", "--kube-api-url", Api.Url,
        "--net-config-path", NetConf, "--public-ip", Topology.UnderlayIp(i),
        "--subnet-file", C.Path_($"node{i}-subnet.env"), "--control-socket", C.ControlSocket(i),
        "--vtep-mac-file", C.Path_($"node{i}.vtepmac"), .. extra,
    ];

    public NodeProcess Launch(int i, params string[] extra) => C.Topology.Start(C.Topology.Node(i), Command(i, extra), NodeName(i));

    public NodeProcess StartNode(int i, params string[] extra)
    {
        NodeProcess p = Launch(i, extra);
        Assert.True(p.WaitForLine("Ready:", TimeSpan.FromSeconds(30)) is not null, $"node {i} did not become ready:\n{p.Output}");
        return p;
    }

    /// <summary>kubectl (Debian's kubernetes-client, or any kubectl on the path) against the stand-in, from the API server's namespace.</summary>
    public ProcessRunner.Result Kubectl(params string[] args) =>
        C.Topology.Exec(C.Topology.Node(ApiHost), [Require.Tool("kubectl", "kubernetes-client"), "--server", Api.Url, "--cache-dir", C.Path_("kubectl-cache"), .. args], 30_000);

    public string KubectlOk(params string[] args)
    {
        ProcessRunner.Result r = Kubectl(args);
        Assert.True(r.ExitCode == 0, $"kubectl {string.Join(' ', args)}: {r.Stderr}{r.Stdout}");
        return r.Stdout;
    }

    public void Dispose()
    {
        Api.Dispose();
        Authority?.Dispose();
        C.Dispose();
    }
}
