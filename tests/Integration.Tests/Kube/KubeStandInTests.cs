using System.Text.Json;
using Dataplane.Lab;
using Dataplane.Node;

namespace Dataplane.Integration.Tests.Kube;

/// <summary>
/// The stand-in API server checked with an independent real client: kubectl lists, reads,
/// watches and patches nodes on it as on a real API server, and gets the errors a real one gives
/// (403 for the RBAC kube-flannel has, 404, 410 for a compacted resourceVersion). What the node
/// tests prove against the stand-in holds only as far as this agreement goes.
/// </summary>
public class KubeStandInTests
{
    [Fact]
    public void Kubectl_lists_reads_watches_and_patches_nodes_on_the_stand_in()
    {
        using var k = new KubeCluster("vxlan");
        k.Api.PutNode("node1", "10.244.1.0/24", KubeCluster.FlanneldVxlan(1, "0e:11:11:11:11:11"));

        using (JsonDocument list = JsonDocument.Parse(k.KubectlOk("get", "nodes", "-o", "json")))
        {
            JsonElement item = Assert.Single(list.RootElement.GetProperty("items").EnumerateArray());
            Assert.Equal("node1", item.GetProperty("metadata").GetProperty("name").GetString());
        }
        Assert.Equal("10.244.1.0/24", k.KubectlOk("get", "node", "node1", "-o", "jsonpath={.spec.podCIDR}"));
        Assert.Equal("""{"VNI":1,"VtepMAC":"0e:11:11:11:11:11"}""",
            k.KubectlOk("get", "node", "node1", "-o", @"jsonpath={.metadata.annotations.flannel\.alpha\.coreos\.com/backend-data}"));

        // A watch: kubectl lists, then watches from the list's resourceVersion; a node added later arrives.
        string kubectl = Dataplane.TestSupport.Require.Tool("kubectl", "kubernetes-client");
        NodeProcess watch = k.C.Topology.Start(k.C.Topology.Node(KubeCluster.ApiHost),
            [kubectl, "--server", k.Api.Url, "--cache-dir", k.C.Path_("kubectl-cache"), "get", "nodes", "--watch", "-o", "name"], "kubectl-watch");
        Assert.NotNull(watch.WaitForLine("node/node1", TimeSpan.FromSeconds(20)));
        k.Api.PutNode("node2", "10.244.2.0/24");
        Assert.True(watch.WaitForLine("node/node2", TimeSpan.FromSeconds(20)) is not null, watch.Output);
        watch.Kill();

        // Writes: kubectl's own patch types, applied with merge semantics and seen by the next read.
        k.Api.ForbidNodePatch = false;
        k.KubectlOk("annotate", "node", "node2", "example.com/by=kubectl");
        k.KubectlOk("patch", "node", "node2", "--type=merge", "-p", """{"metadata":{"annotations":{"example.com/merge":"yes"}}}""");
        k.KubectlOk("patch", "node", "node2", "-p", """{"metadata":{"annotations":{"example.com/strategic":"yes"}}}""");
        IReadOnlyDictionary<string, string> a = k.Api.Annotations("node2");
        Assert.Equal("kubectl", a["example.com/by"]);
        Assert.Equal("yes", a["example.com/merge"]);
        Assert.Equal("yes", a["example.com/strategic"]);
        Assert.Contains("example.com/strategic", k.KubectlOk("get", "--raw", "/api/v1/nodes/node2/status"));

        // The errors of a real API server, as kubectl reports them.
        k.Api.ForbidNodePatch = true;
        ProcessRunner.Result forbidden = k.Kubectl("annotate", "node", "node2", "example.com/again=no");
        Assert.NotEqual(0, forbidden.ExitCode);
        Assert.Contains("forbidden", forbidden.Stderr + forbidden.Stdout, StringComparison.OrdinalIgnoreCase);
        ProcessRunner.Result missing = k.Kubectl("get", "node", "node9");
        Assert.NotEqual(0, missing.ExitCode);
        Assert.Contains("not found", missing.Stderr + missing.Stdout, StringComparison.OrdinalIgnoreCase);

        // 410 on a watch, as kubectl's own watch decodes it: kubectl lists, watches from the list's
        // resourceVersion, and when that expires gets an ERROR event whose object is a Status it
        // reads as one (it prints the event it decoded, typed, with --output-watch-events).
        int Watches() => k.Api.Requests.Count(r => r.Contains("watch=true", StringComparison.Ordinal));
        int watchesBefore = Watches();
        NodeProcess expiring = k.C.Topology.Start(k.C.Topology.Node(KubeCluster.ApiHost),
            [kubectl, "--server", k.Api.Url, "--cache-dir", k.C.Path_("kubectl-cache"), "get", "nodes", "--watch", "--output-watch-events", "-o", "json"], "kubectl-expiring");
        Assert.True(expiring.WaitForLine("\"node2\"", TimeSpan.FromSeconds(20)) is not null, expiring.Output);
        Assert.True(SpinWait.SpinUntil(() => Watches() > watchesBefore, 10_000), "kubectl did not watch after its list");
        // Its request is seen before the stand-in's handler waits on the watch: expire until the watch has it.
        DateTime giveUp = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        do
        {
            k.Api.ExpireWatches();
        }
        while (!expiring.WaitForExit(TimeSpan.FromMilliseconds(500)) && DateTime.UtcNow < giveUp);
        Assert.True(expiring.HasExited, expiring.Output);
        JsonElement error = KubectlWatchEvents(expiring.Output).Single(e => e.GetProperty("type").GetString() == "ERROR");
        JsonElement status = error.GetProperty("object");
        Assert.Equal("Status", status.GetProperty("kind").GetString());
        Assert.Equal(410, status.GetProperty("code").GetInt32());
        Assert.Equal("Expired", status.GetProperty("reason").GetString());
        Assert.StartsWith("too old resource version", status.GetProperty("message").GetString());
    }

    /// <summary>The watch events kubectl printed as JSON objects one after another (indented, as -o json prints them).</summary>
    private static List<JsonElement> KubectlWatchEvents(string output)
    {
        var events = new List<JsonElement>();
        byte[] utf8 = System.Text.Encoding.UTF8.GetBytes(output[output.IndexOf('{', StringComparison.Ordinal)..]);
        var reader = new Utf8JsonReader(utf8, new JsonReaderOptions { AllowMultipleValues = true });
        while (reader.Read() && reader.TokenType == JsonTokenType.StartObject)
        {
            events.Add(JsonElement.ParseValue(ref reader));
        }
        return events;
    }
}
