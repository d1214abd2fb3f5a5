using System.Net;
using Dataplane.Leases.Kube;

namespace Dataplane.Integration.Tests.Kube;

/// <summary>
/// The lease source's HTTP layer (<see cref="KubeApi"/>) against the stand-in on loopback: the
/// answers of an API server become what the source acts on (a node or none, 403 and 410 as
/// statuses, a refused connection as a request failure with a one-line reason).
/// </summary>
public class KubeApiTests
{
    [Fact]
    public void Requests_and_their_failures_read_as_the_source_needs_them()
    {
        using var server = new KubeApiStandIn(null, new IPEndPoint(IPAddress.Loopback, 0)) { ForbidNodePatch = true };
        server.Start();
        server.PutNode("node1", "10.244.1.0/24");
        using KubeApi api = KubeApi.Create(new KubeOptions { ApiUrl = server.Url, Timeout = TimeSpan.FromSeconds(5) });

        Assert.Equal("10.244.1.0/24", api.GetNode("node1")!.Spec!.PodCidr);
        Assert.Null(api.GetNode("node9"));
        NodeListJson list = api.ListNodes();
        Assert.Equal("node1", Assert.Single(list.Items!).Metadata!.Name);

        // A watch from the list's version sees a change made after it, then ends when asked to.
        using (var stop = new CancellationTokenSource())
        {
            server.PutNode("node2", "10.244.2.0/24");
            (string type, NodeJson node) = api.WatchNodes(list.Metadata!.ResourceVersion!, TimeSpan.FromSeconds(5), stop.Token).First();
            Assert.Equal(("ADDED", "node2"), (type, node.Metadata!.Name));
        }

        // Compacted away: the ERROR event's 410, as a status the source re-lists on.
        server.Compact();
        KubeApiException gone = Assert.Throws<KubeApiException>(() => api.WatchNodes(list.Metadata!.ResourceVersion!, TimeSpan.FromSeconds(5), CancellationToken.None).ToList());
        Assert.Equal(410, gone.Status);

        // nodes/status may be patched; a 403 would carry the server's message.
        api.PatchNodeStatus("node1", """{"metadata":{"annotations":{"example.com/a":"b"}}}""");
        Assert.Equal("b", server.Annotations("node1")["example.com/a"]);
        KubeApiException missing = Assert.Throws<KubeApiException>(() => api.PatchNodeStatus("node9", "{}"));
        Assert.Equal(404, missing.Status);
        Assert.Equal("404 Not Found: nodes \"node9\" not found", missing.Message);

        server.Stop();
        Exception refused = Assert.ThrowsAny<Exception>(() => api.ListNodes());
        Assert.True(KubeApi.IsRequestFailure(refused), refused.ToString());
        Assert.Equal("connection refused", KubeApi.Describe(refused));
    }
}
