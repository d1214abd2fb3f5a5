using System.Text;
using System.Text.Json;
using Dataplane.Leases.Kube;

namespace Dataplane.Tests;

/// <summary>
/// A watch line read only as far as a lease needs: the Node's status is not read when the type,
/// metadata and spec came first (the API server's order), and any other order gives the same result
/// by reading the whole line.
/// </summary>
public class KubeWatchEventTests
{
    private const string Metadata = """{"name":"n2","resourceVersion":"42","managedFields":[{"manager":"kubelet","fieldsV1":{"f:status":{"f:images":{}}}}],"annotations":{"flannel.alpha.coreos.com/public-ip":"198.51.100.2"}}""";
    private const string Spec = """{"podCIDR":"10.244.2.0/24","podCIDRs":["10.244.2.0/24","fd00:10:244:2::/64"]}""";
    private const string Status = """{"conditions":[{"type":"Ready","status":"True"}],"images":[{"names":["a"],"sizeBytes":1}]}""";

    private static (string Type, WatchObjectJson Object) Read(string line) => WatchEvent.Read(Encoding.UTF8.GetBytes(line));

    private static void AssertNode(WatchObjectJson o)
    {
        Assert.Equal("n2", o.Metadata?.Name);
        Assert.Equal("42", o.Metadata?.ResourceVersion);
        Assert.Equal("198.51.100.2", o.Metadata?.Annotations?["flannel.alpha.coreos.com/public-ip"]);
        Assert.Equal("10.244.2.0/24", o.Spec?.PodCidr);
        Assert.Equal(["10.244.2.0/24", "fd00:10:244:2::/64"], o.Spec?.PodCidrs);
    }

    [Fact]
    public void In_the_API_servers_order_the_status_is_never_read()
    {
        (string type, WatchObjectJson o) = Read($$$"""{"type":"MODIFIED","object":{"kind":"Node","apiVersion":"v1","metadata":{{{Metadata}}},"spec":{{{Spec}}},"status":{{{Status}}}}}""");
        Assert.Equal("MODIFIED", type);
        AssertNode(o);
        // The proof that it stops: a status cut off mid-way (which no reader of the whole line accepts) is not an error.
        (type, o) = Read($$$"""{"type":"MODIFIED","object":{"metadata":{{{Metadata}}},"spec":{{{Spec}}},"status":{"images":[{"names":["a""");
        Assert.Equal("MODIFIED", type);
        AssertNode(o);
        Assert.ThrowsAny<JsonException>(() => JsonDocument.Parse($$$"""{"type":"MODIFIED","object":{"metadata":{{{Metadata}}},"spec":{{{Spec}}},"status":{"images":[{"names":["a"""));
    }

    [Theory]
    [InlineData("""{"object":{"metadata":@M,"spec":@S,"status":@T},"type":"MODIFIED"}""")]
    [InlineData("""{"type":"MODIFIED","object":{"status":@T,"spec":@S,"metadata":@M}}""")]
    [InlineData("""{"type":"MODIFIED","object":{"spec":@S,"kind":"Node","metadata":@M}}""")]
    [InlineData("""{"extra":[1,{"a":2}],"type":"MODIFIED","object":{"metadata":@M,"spec":@S}}""")]
    public void Any_other_order_gives_the_same_node(string template)
    {
        (string type, WatchObjectJson o) = Read(template.Replace("@M", Metadata).Replace("@S", Spec).Replace("@T", Status));
        Assert.Equal("MODIFIED", type);
        AssertNode(o);
    }

    [Fact]
    public void When_the_type_comes_last_a_broken_object_is_an_error()
    {
        Assert.ThrowsAny<JsonException>(() => Read($$$"""{"object":{"metadata":{{{Metadata}}},"spec":{{{Spec}}},"status":{"images":[}},"type":"MODIFIED"}"""));
    }

    [Fact]
    public void An_error_event_carries_the_status_code_reason_and_message()
    {
        (string type, WatchObjectJson o) = Read("""{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 5 (9)","reason":"Expired","code":410}}""");
        Assert.Equal("ERROR", type);
        Assert.Equal(410, o.Code);
        Assert.Equal("Expired", o.Reason);
        Assert.Equal("too old resource version: 5 (9)", o.Message);
    }

    [Fact]
    public void A_bookmark_carries_only_a_resource_version()
    {
        (string type, WatchObjectJson o) = Read("""{"type":"BOOKMARK","object":{"kind":"Node","apiVersion":"v1","metadata":{"resourceVersion":"77","annotations":{"k8s.io/initial-events-end":"true"}}}}""");
        Assert.Equal("BOOKMARK", type);
        Assert.Equal("77", o.Metadata?.ResourceVersion);
        Assert.Null(o.Spec);
    }

    [Theory]
    [InlineData("[]")]
    [InlineData("""{"type":"ADDED"}""")]
    [InlineData("""{"object":{"metadata":{}}}""")]
    [InlineData("""{"type":7,"object":{}}""")]
    [InlineData("""{"type":"ADDED","object":"n2"}""")]
    [InlineData("""{"type":"ADDED","object":{"metadata":{"name":"n2"}""")]
    [InlineData("not json")]
    public void What_is_not_a_watch_event_is_a_json_error(string line) =>
        Assert.ThrowsAny<JsonException>(() => Read(line));
}
