using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Dataplane.Lab;
using Dataplane.Node;

namespace Dataplane.Integration.Tests.Kube;

/// <summary>
/// What flannel's CNI plugin does when a pod is added (containernetworking/plugins
/// plugins/meta/flannel, doCmdAdd; its binary comes from an image that cannot be pulled here): read
/// the node's /run/flannel/subnet.env and the conflist the DaemonSet's init container installed,
/// fill in the delegate (bridge, ipMasq = !FLANNEL_IPMASQ, mtu = FLANNEL_MTU, isGateway, host-local
/// IPAM on FLANNEL_SUBNET with a route to FLANNEL_NETWORK), and run the real plugins (Debian's
/// containernetworking-plugins: bridge, host-local) in the node's namespace for the pod's.
/// host-local keeps its state in the node's directory (its dataDir), not the machine's.
/// </summary>
internal static class FlannelCniPlugin
{
    private const string PluginDir = "/usr/lib/cni";

    /// <summary>"10.244.1.1/24" as Go's net.ParseCIDR reads it: the network, "10.244.1.0/24".</summary>
    private static string Network(string cidr)
    {
        string[] parts = cidr.Split('/');
        int prefix = int.Parse(parts[1], CultureInfo.InvariantCulture);
        uint address = System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(System.Net.IPAddress.Parse(parts[0]).GetAddressBytes());
        uint mask = prefix == 0 ? 0 : uint.MaxValue << (32 - prefix);
        byte[] network = new byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(network, address & mask);
        return $"{new System.Net.IPAddress(network)}/{prefix}";
    }

    /// <summary>Gives pod i (an empty namespace) its eth0 on the node's cni0; returns the address host-local gave it.</summary>
    public static string AddPod(PodmanKubelet kubelet, Topology topology, int i)
    {
        Assert.True(File.Exists(Path.Combine(PluginDir, "bridge")), $"{PluginDir}/bridge is missing: apt-get install containernetworking-plugins");
        Dictionary<string, string> env = File.ReadAllLines(kubelet.HostPath("/run/flannel/subnet.env"))
            .Where(l => l.Contains('=', StringComparison.Ordinal))
            .ToDictionary(l => l[..l.IndexOf('=', StringComparison.Ordinal)], l => l[(l.IndexOf('=', StringComparison.Ordinal) + 1)..]);
        JsonObject conflist = JsonNode.Parse(File.ReadAllText(kubelet.HostPath("/etc/cni/net.d/10-flannel.conflist")))!.AsObject();
        JsonObject flannel = conflist["plugins"]!.AsArray().Select(p => p!.AsObject()).Single(p => (string?)p["type"] == "flannel");
        JsonObject d = flannel["delegate"]?.DeepClone().AsObject() ?? [];
        d["name"] = (string?)conflist["name"];
        d["type"] ??= "bridge";
        d["ipMasq"] ??= env["FLANNEL_IPMASQ"] != "true";
        d["mtu"] ??= int.Parse(env["FLANNEL_MTU"], CultureInfo.InvariantCulture);
        if ((string?)d["type"] == "bridge")
        {
            d["isGateway"] ??= true;
        }
        d["cniVersion"] = (string?)conflist["cniVersion"];
        d["ipam"] = new JsonObject
        {
            ["type"] = "host-local",
            ["subnet"] = Network(env["FLANNEL_SUBNET"]),
            ["routes"] = new JsonArray(new JsonObject { ["dst"] = env["FLANNEL_NETWORK"] }),
            ["dataDir"] = kubelet.HostPath("/var/lib/cni/networks"),
        };
        string config = kubelet.HostPath($"/var/lib/cni/flannel/pod{i}.json");
        Directory.CreateDirectory(Path.GetDirectoryName(config)!);
        File.WriteAllText(config, d.ToJsonString());
        topology.AddEmptyPod(i);
        ProcessRunner.Result r = topology.Exec(topology.Node(i),
        [
            "env", "CNI_COMMAND=ADD", $"CNI_CONTAINERID=pod{i}", $"CNI_NETNS=/run/netns/{topology.Pod(i)}", "CNI_IFNAME=eth0", $"CNI_PATH={PluginDir}",
            "/bin/sh", "-c", "exec \"$0\" < \"$1\"", Path.Combine(PluginDir, (string)d["type"]!), config,
        ], 30_000);
        Assert.True(r.ExitCode == 0, $"CNI ADD with {d.ToJsonString()}: {r.Stdout}{r.Stderr}");
        using JsonDocument result = JsonDocument.Parse(r.Stdout);
        return result.RootElement.GetProperty("ips")[0].GetProperty("address").GetString()!;
    }
}
