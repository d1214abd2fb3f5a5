using System.Globalization;
using System.Text.Json.Nodes;
using Dataplane.Lab;
using Dataplane.Node;
using Dataplane.TestSupport;
using Xunit.Abstractions;

namespace Dataplane.Integration.Tests.Kube;

/// <summary>
/// The product as a Kubernetes user meets it: the image deploy/build-image.sh builds, loaded into a
/// real container runtime (podman with runc), running deploy/kube-dataplane.yml's DaemonSet pod
/// (read from the manifest itself) as each node of a two-node cluster whose API server (the
/// stand-in) speaks TLS with a CA the test made, reached with the in-cluster credentials a kubelet
/// mounts. Pods are then added by flannel's CNI logic with the real bridge and host-local plugins,
/// from the subnet.env the container wrote. No kubelet or API server runs here: what the kubelet
/// does for this pod is <see cref="PodmanKubelet"/>'s, and says so.
/// </summary>
public class DaemonSetPodTests(ITestOutputHelper output)
{
    private const string Container = "dataplane";
    private const long Bytes = 50_000_000;
    private const int Datagrams = 5000;

    [Theory]
    [InlineData("vxlan", true)]
    [InlineData("udp", true)]
    [InlineData("vxlan", false)]
    [InlineData("udp", false)]
    public void The_daemonsets_pod_run_by_podman_joins_two_nodes_whose_pods_carry_50_MB_both_ways(string backend, bool tunDevice)
    {
        Require.Root();
        string image = ContainerImage.Name;
        var manifest = new DaemonSetManifest();
        using var k = new KubeCluster(backend, tls: true);
        var kubelets = new List<PodmanKubelet>();
        try
        {
            var nodes = new Dictionary<int, NodeProcess>();
            foreach (int i in new[] { 1, 2 })
            {
                PodmanKubelet kubelet = AddNode(k, manifest, image, i, backend, tunDevice);
                kubelets.Add(kubelet);
                nodes[i] = kubelet.Start(Container, PodName(i));
            }
            foreach (var (i, node) in nodes)
            {
                Assert.True(node.WaitForLine("Ready:", TimeSpan.FromSeconds(60)) is not null, $"node {i}'s container did not become ready:\n{node.Output}");
                Assert.Contains(node.Lines, l => l.Contains(tunDevice ? "Source: tun" : "Source: packet", StringComparison.Ordinal));
                PodmanKubelet kubelet = kubelets[i - 1];
                Assert.True(kubelet.Ready(Container, PodName(i)), $"the readiness probe failed on node {i}:\n{node.Output}");
                Assert.Equal(200, kubelet.HttpProbe(Container, "livenessProbe"));
                // --metrics=$(POD_IP):9109: on the node's address, not on every interface (not on loopback).
                Assert.Contains("dataplane_build_info", Curl(k, i, $"http://{Topology.UnderlayIp(i)}:9109/metrics"));
                Assert.Equal("", Curl(k, i, "http://127.0.0.1:9109/metrics"));
                // What the container wrote for the CNI plugin, read by flannel's CNI logic and the real plugins.
                Assert.Contains("FLANNEL_IPMASQ=true", File.ReadAllText(kubelet.HostPath("/run/flannel/subnet.env")));
                Assert.Equal(string.Create(CultureInfo.InvariantCulture, $"10.244.{i}.2/24"), FlannelCniPlugin.AddPod(kubelet, k.C.Topology, i));
            }

            Transfer there = k.C.StartTransfer(1, 2, Bytes, port: 5201);
            Transfer back = k.C.StartTransfer(2, 1, Bytes, port: 5202);
            there.AssertIntact(TimeSpan.FromSeconds(120));
            back.AssertIntact(TimeSpan.FromSeconds(120));

            // Every request came with a service account's token, as mounted (over TLS: the URL is https).
            Assert.StartsWith("https://", k.Api.Url, StringComparison.Ordinal);
            string[] tokens = [.. kubelets.Select(kb => $"Bearer {kb.Token}")];
            Assert.NotEmpty(k.Api.Authorizations);
            Assert.All(k.Api.Authorizations, a => Assert.Contains(a, tokens));
            Assert.All(tokens, t => Assert.Contains(t, k.Api.Authorizations));
        }
        finally
        {
            kubelets.ForEach(kb => kb.Dispose());
        }
    }

    /// <summary>
    /// A rolling update as the DaemonSet asks for it (maxSurge 1, maxUnavailable 0), on one node,
    /// with numbered datagrams flowing both ways: the new pod starts beside the old one (its image
    /// under a new tag: the same build, see the note), takes the device and sockets over, turns ready
    /// by its own probe; then the old pod is stopped as a kubelet stops it (SIGTERM, the grace
    /// period) and exits 0. Not one datagram is lost or reordered.
    /// </summary>
    /// <remarks>
    /// Both tags name one build: a second release cannot be built here. What differs between releases
    /// on the wire of a hand-over is the protocol version, which HandoverTests and QueueHandoverTests cover.
    /// </remarks>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_rolling_update_on_one_node_hands_over_to_the_new_pod_losing_no_datagram(bool tunDevice)
    {
        Require.Root();
        string image = ContainerImage.Name;
        string next = image[..image.LastIndexOf(':')] + ":rollout";
        ProcessRunner.Check(Require.Tool("podman", "podman"), "tag", image, next);
        var manifest = new DaemonSetManifest();
        using var k = new KubeCluster("vxlan", tls: true);
        var kubelets = new List<PodmanKubelet>();
        try
        {
            var nodes = new Dictionary<int, NodeProcess>();
            foreach (int i in new[] { 1, 2 })
            {
                PodmanKubelet kubelet = AddNode(k, manifest, image, i, "vxlan", tunDevice);
                kubelets.Add(kubelet);
                nodes[i] = kubelet.Start(Container, PodName(i));
                Assert.True(nodes[i].WaitForLine("Ready:", TimeSpan.FromSeconds(60)) is not null, $"node {i}'s container did not become ready:\n{nodes[i].Output}");
                FlannelCniPlugin.AddPod(kubelet, k.C.Topology, i);
            }
            PodmanKubelet one = kubelets[0];
            NodeProcess old = nodes[1];
            ProcessRunner.Result warm = k.C.Ping(k.C.Topology.Pod(2), Topology.PodIp(1));
            Assert.True(warm.ExitCode == 0, warm.Stdout);

            DatagramStream toOne = DatagramStream.Start(k.C, from: 2, to: 1, Datagrams), toTwo = DatagramStream.Start(k.C, from: 1, to: 2, Datagrams);
            Thread.Sleep(1000);
            string newPod = PodName(1) + "-next";
            NodeProcess successor = one.Start(Container, newPod, next);
            Assert.True(successor.WaitForLine("Took over from", TimeSpan.FromSeconds(60)) is not null, $"the new pod did not take over:\n{successor.Output}\n--- old pod:\n{old.Output}");
            Assert.True(SpinWait.SpinUntil(() => one.Ready(Container, newPod), TimeSpan.FromSeconds(30)), $"the new pod never turned ready:\n{successor.Output}");
            Assert.True(old.WaitForLine("Handed over to", TimeSpan.FromSeconds(10)) is not null, old.Output);
            Assert.False(old.HasExited, "the old pod's process exits only at its SIGTERM (--after-handover=wait): " + old.Output);

            // The DaemonSet controller deletes the old pod once the new one is ready: the kubelet's SIGTERM.
            ProcessRunner.Result stopped = one.Stop(Container, PodName(1));
            Assert.True(stopped.ExitCode == 0, $"podman stop: {stopped.Stderr}");
            Assert.True(old.WaitForExit(TimeSpan.FromSeconds(30)), old.Output);
            Assert.True(old.ExitCode == 0, $"the old pod exited {old.ExitCode}:\n{old.Output}");
            toOne.AssertAllArrived(output, $"tun={tunDevice}, pod 2 to pod 1");
            toTwo.AssertAllArrived(output, $"tun={tunDevice}, pod 1 to pod 2");

            // The new pod carries on alone: live, ready, forwarding.
            Assert.Equal(200, one.HttpProbe(Container, "livenessProbe"));
            Assert.True(one.Ready(Container, newPod));
            k.C.StartTransfer(2, 1, 10_000_000).AssertIntact(TimeSpan.FromSeconds(60));
            Assert.False(successor.HasExited, successor.Output);
        }
        finally
        {
            kubelets.ForEach(kb => kb.Dispose());
            ProcessRunner.Run(Require.Tool("podman", "podman"), ["rmi", next]);
        }
    }

    private static string Curl(KubeCluster k, int node, string url) =>
        k.C.Topology.Exec(k.C.Topology.Node(node), ["curl", "-s", "-m", "5", url], 15_000).Stdout;

    private static string PodName(int i)
             => string.Create(CultureInfo.InvariantCulture, $"kube-dataplane-ds-node{i}");

    /// <summary>
    /// Node i registered with its podCIDR, a default route (the node's address is the default
    /// route's interface's, as flanneld finds it), its pod object, the ConfigMap with this cluster's
    /// backend, and the init container's CNI config copy run.
    /// </summary>
    private static PodmanKubelet AddNode(KubeCluster k, DaemonSetManifest manifest, string image, int i, string backend, bool tunDevice)
    {
        k.Register(i, withPod: false);
        k.C.Topology.Ip(k.C.Topology.Node(i), "route", "add", "default", "via", "192.0.2.254", "dev", "eth0");
        k.Api.PutPod(manifest.Namespace, PodName(i), KubeCluster.NodeName(i));
        Dictionary<string, string> configMap = manifest.ConfigMapData.ToDictionary();
        JsonObject netConf = JsonNode.Parse(configMap["net-conf.json"])!.AsObject();
        netConf["Backend"]!["Type"] = backend;
        configMap["net-conf.json"] = netConf.ToJsonString();
        var kubelet = new PodmanKubelet(k, manifest, image, i, configMap, tunDevice);
        var init = kubelet.RunToEnd("install-cni", PodName(i));
        Assert.True(init.ExitCode == 0, $"the install-cni init container: {init.Stderr}{init.Stdout}");
        Assert.Equal(configMap["cni-conf.json"], File.ReadAllText(kubelet.HostPath("/etc/cni/net.d/10-flannel.conflist")));
        return kubelet;
    }
}
