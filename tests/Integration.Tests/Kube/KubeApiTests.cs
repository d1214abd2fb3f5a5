using System.Diagnostics;
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
            (string type, NodeJson node) = api.WatchNodes(list.Metadata!.ResourceVersion!, TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(60), stop.Token).First();
            Assert.Equal(("ADDED", "node2"), (type, node.Metadata!.Name));
        }

        // Compacted away: the ERROR event's 410, as a status the source re-lists on.
        server.Compact();
        KubeApiException gone = Assert.Throws<KubeApiException>(() => api.WatchNodes(list.Metadata!.ResourceVersion!, TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(60), CancellationToken.None).ToList());
        Assert.Equal(410, gone.Status);

        // Bookmarks (asked for) keep a quiet watch alive past its idle limit, and carry the version
        // that writes of other objects moved; then a hung watch is abandoned after the idle limit.
        server.BookmarkInterval = TimeSpan.FromMilliseconds(300);
        server.WriteOtherObjects(50);
        string moved = api.ListNodes().Metadata!.ResourceVersion!;
        string from = moved;
        var quiet = Stopwatch.StartNew();
        List<(string Type, NodeJson Node)> marks = [.. api.WatchNodes(moved, TimeSpan.FromSeconds(3), TimeSpan.FromSeconds(1), CancellationToken.None)];
        Assert.InRange(quiet.Elapsed.TotalSeconds, 2.5, 5); // ended by the server's timeout, not as silent
        Assert.True(marks.Count >= 5, $"{marks.Count} bookmarks");
        Assert.All(marks, m => Assert.Equal(("BOOKMARK", moved), (m.Type, m.Node.Metadata!.ResourceVersion)));
        var hung = Stopwatch.StartNew();
        Assert.Throws<KubeWatchSilentException>(() =>
        {
            foreach ((string type, NodeJson _) in api.WatchNodes(from, TimeSpan.FromSeconds(30), TimeSpan.FromSeconds(1), CancellationToken.None))
            {
                server.HangWatches(); // after the first bookmark: the connection stays, nothing more comes
            }
        });
        Assert.InRange(hung.Elapsed.TotalSeconds, 1.2, 3);
        server.BookmarkInterval = TimeSpan.FromMinutes(1);

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
