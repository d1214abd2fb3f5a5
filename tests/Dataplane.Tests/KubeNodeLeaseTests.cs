using System.Text.Json;
using Dataplane.Encap;
using Dataplane.Leases;
using Dataplane.Leases.Kube;

namespace Dataplane.Tests;

/// <summary>Node objects read as flanneld reads them (<c>pkg/subnet/kube</c>), and what we write back, byte for byte.</summary>
public sealed class KubeNodeLeaseTests
{
    private static readonly KubeAnnotations Flannel = KubeAnnotations.Create("flannel.alpha.coreos.com");

    private static NodeJson Node(string json) => JsonSerializer.Deserialize(json, KubeJson.Default.NodeJson)!;

    private const string FlanneldVxlanNode = """
        {"kind":"Node","apiVersion":"v1","metadata":{"name":"worker-2","resourceVersion":"4711","annotations":{
          "flannel.alpha.coreos.com/backend-data":"{\"VNI\":1,\"VtepMAC\":\"12:c6:65:89:b4:e3\"}",
          "flannel.alpha.coreos.com/backend-type":"vxlan",
          "flannel.alpha.coreos.com/kube-subnet-manager":"true",
          "flannel.alpha.coreos.com/public-ip":"192.0.2.2",
          "node.alpha.kubernetes.io/ttl":"0"}},
         "spec":{"podCIDR":"10.244.2.0/24","podCIDRs":["10.244.2.0/24","2001:db8:244:2::/64"]},
         "status":{"conditions":[]}}
        """;

    [Fact]
    public void A_node_flanneld_annotated_is_the_lease_it_means()
    {
        NodeJson node = Node(FlanneldVxlanNode);
        Assert.True(NodeLease.IsManaged(node, Flannel));
        LeaseRecord lease = NodeLease.FromNode(node, Flannel, out string? skipped)!;
        Assert.Null(skipped);
        Assert.Equal("10.244.2.0/24", lease.Subnet.ToString());
        Assert.Equal("192.0.2.2", lease.PublicIpText);
        Assert.Equal("vxlan", lease.BackendType);
        Assert.Equal("12:c6:65:89:b4:e3", lease.VtepMac.ToString());
        Assert.Equal("4711", node.Metadata!.ResourceVersion);
    }

    [Fact]
    public void On_a_dual_stack_network_the_ipv6_podcidr_and_annotations_are_the_ipv6_half()
    {
        NodeJson node = Node(FlanneldVxlanNode.Replace("\"node.alpha.kubernetes.io/ttl\":\"0\"",
            "\"flannel.alpha.coreos.com/public-ipv6\":\"2001:db8:2::2\",\"flannel.alpha.coreos.com/backend-v6-data\":\"{\\\"VNI\\\":1,\\\"VtepMAC\\\":\\\"12:c6:65:89:b4:66\\\"}\"", StringComparison.Ordinal));
        LeaseRecord lease = NodeLease.FromNode(node, Flannel, out string? skipped, ipv6: true)!;
        Assert.Null(skipped);
        Assert.Equal("10.244.2.0-24&2001:db8:244:2::-64", lease.Key);
        Assert.Equal("2001:db8:2::2", Ipv6Prefix.Format(lease.PublicIpv6!.Value));
        Assert.Equal("12:c6:65:89:b4:66", lease.VtepMacV6.ToString());
        // Not dual-stack: the IPv6 podCIDR and annotations are not read.
        Assert.Null(NodeLease.FromNode(node, Flannel, out _)!.Ipv6Subnet);
        // No IPv6 annotations (our udp node over IPv4, or flanneld before it published them): the IPv6 subnet alone.
        LeaseRecord bare = NodeLease.FromNode(Node(FlanneldVxlanNode), Flannel, out _, ipv6: true)!;
        Assert.Equal("2001:db8:244:2::/64", bare.Ipv6Subnet.ToString());
        Assert.Null(bare.PublicIpv6);
        Assert.Null(bare.VtepMacV6);
    }

    [Fact]
    public void A_udp_node_has_null_backend_data_and_no_mac()
    {
        NodeJson node = Node("""
            {"metadata":{"name":"n","annotations":{"flannel.alpha.coreos.com/backend-data":"null","flannel.alpha.coreos.com/backend-type":"udp",
             "flannel.alpha.coreos.com/kube-subnet-manager":"true","flannel.alpha.coreos.com/public-ip":"192.0.2.3"}},"spec":{"podCIDR":"10.244.3.0/24"}}
            """);
        LeaseRecord lease = NodeLease.FromNode(node, Flannel, out _)!;
        Assert.Equal("udp", lease.BackendType);
        Assert.Null(lease.VtepMac);
    }

    [Theory]
    [InlineData("""{"metadata":{"name":"n","annotations":{"flannel.alpha.coreos.com/kube-subnet-manager":"true","flannel.alpha.coreos.com/public-ip":"192.0.2.3"}},"spec":{}}""", "node n: no IPv4 podCIDR")]
    [InlineData("""{"metadata":{"name":"n","annotations":{"flannel.alpha.coreos.com/kube-subnet-manager":"true","flannel.alpha.coreos.com/public-ip":"192.0.2.3"}},"spec":{"podCIDRs":["2001:db8::/64"]}}""", "node n: no IPv4 podCIDR")]
    [InlineData("""{"metadata":{"name":"n","annotations":{"flannel.alpha.coreos.com/kube-subnet-manager":"true"}},"spec":{"podCIDR":"10.244.3.0/24"}}""", "node n: no flannel.alpha.coreos.com/public-ip annotation")]
    [InlineData("""{"metadata":{"name":"n","annotations":{"flannel.alpha.coreos.com/kube-subnet-manager":"true","flannel.alpha.coreos.com/public-ip":"192.0.2"}},"spec":{"podCIDR":"10.244.3.0/24"}}""", "node n.PublicIP: '192.0.2' is not an IPv4 address")]
    [InlineData("""{"metadata":{"name":"n","annotations":{"flannel.alpha.coreos.com/kube-subnet-manager":"true","flannel.alpha.coreos.com/public-ip":"192.0.2.3","flannel.alpha.coreos.com/backend-data":"{\"VtepMAC\":\"01:00:5e:00:00:01\"}"}},"spec":{"podCIDR":"10.244.3.0/24"}}""", "node n.BackendData.VtepMAC: '01:00:5e:00:00:01' is a multicast address")]
    [InlineData("""{"metadata":{"name":"n","annotations":{"flannel.alpha.coreos.com/kube-subnet-manager":"true","flannel.alpha.coreos.com/public-ip":"192.0.2.3","flannel.alpha.coreos.com/backend-data":"{VtepMAC"}},"spec":{"podCIDR":"10.244.3.0/24"}}""", "node n: the backend-data annotation is not JSON: {VtepMAC")]
    [InlineData("""{"metadata":{"name":"n","annotations":{"flannel.alpha.coreos.com/kube-subnet-manager":"true","flannel.alpha.coreos.com/public-ip":"192.0.2.3"}},"spec":{"podCIDR":"10.244.3.7/24"}}""", "node n: podCIDR '10.244.3.7/24' is not a network like 10.244.1.0/24")]
    public void A_node_that_cannot_be_a_lease_is_skipped_with_the_reason(string json, string reason)
    {
        Assert.Null(NodeLease.FromNode(Node(json), Flannel, out string? skipped));
        Assert.Equal(reason, skipped);
    }

    [Fact]
    public void Nodes_not_marked_kube_subnet_manager_true_take_no_part()
    {
        Assert.False(NodeLease.IsManaged(Node("""{"metadata":{"name":"n"}}"""), Flannel));
        Assert.False(NodeLease.IsManaged(Node("""{"metadata":{"name":"n","annotations":{"flannel.alpha.coreos.com/kube-subnet-manager":"false"}}}"""), Flannel));
        Assert.False(NodeLease.IsManaged(Node("""{"metadata":{"name":"n","annotations":{"other.example.com/kube-subnet-manager":"true"}}}"""), Flannel));
    }

    // flannel's own cases (pkg/subnet/kube/annotations_test.go).
    [Theory]
    [InlineData("flannel.alpha.coreos.com", "flannel.alpha.coreos.com/backend-type")]
    [InlineData("flannel.alpha.coreos.com/", "flannel.alpha.coreos.com/backend-type")]
    [InlineData("flannel.alpha.coreos.com/prefix", "flannel.alpha.coreos.com/prefix-backend-type")]
    [InlineData("flannel.alpha.coreos.com/prefix-", "flannel.alpha.coreos.com/prefix-backend-type")]
    [InlineData("org.com", "org.com/backend-type")]
    [InlineData("org9.com", "org9.com/backend-type")]
    [InlineData("org.com/9", "org.com/9-backend-type")]
    public void Annotation_prefixes_are_completed_as_flannel_completes_them(string prefix, string backendType) =>
        Assert.Equal(backendType, KubeAnnotations.Create(prefix).BackendType);

    [Theory]
    [InlineData("org")]
    [InlineData("org/")]
    [InlineData("org/prefix")]
    [InlineData("org.COM")]
    [InlineData("org.com/PREFIX")]
    [InlineData("a.com/b/c")]
    public void Annotation_prefixes_flannel_refuses_are_refused_in_one_line(string prefix)
    {
        ConfigException e = Assert.Throws<ConfigException>(() => KubeAnnotations.Create(prefix));
        Assert.StartsWith($"--kube-annotation-prefix {prefix}: ", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void What_we_write_is_what_flanneld_writes()
    {
        Assert.Equal("""{"VNI":1,"VtepMAC":"0e:00:5e:00:00:01"}""", KubeLeaseSource.VxlanBackendData(1, MacAddress.Read([0x0e, 0, 0x5e, 0, 0, 1])));
        Assert.Equal("""{"metadata":{"annotations":{"flannel.alpha.coreos.com/backend-type":"vxlan","flannel.alpha.coreos.com/public-ip":"192.0.2.1"}}}""",
            KubeLeaseSource.AnnotationsPatch([new(Flannel.BackendType, "vxlan"), new(Flannel.PublicIp, "192.0.2.1")]));
        // flanneld's CompleteLease (pkg/subnet/kube/kube.go): fmt.Sprintf(`{"status":{"conditions":%s}}`, json.Marshal([]v1.NodeCondition{...}))
        // with Type NetworkUnavailable, Status False, Reason FlannelIsUp, Message "Flannel is running on this node" and both
        // times metav1.Now(); Go writes a struct's fields in declaration order: type, status, lastHeartbeatTime,
        // lastTransitionTime, reason, message (k8s.io/api core/v1 NodeCondition), a metav1.Time as RFC 3339 to the second.
        Assert.Equal(
            """{"status":{"conditions":[{"type":"NetworkUnavailable","status":"False","lastHeartbeatTime":"2026-11-27T05:00:00Z","lastTransitionTime":"2026-11-27T05:00:00Z","reason":"FlannelIsUp","message":"Flannel is running on this node"}]}}""",
            KubeLeaseSource.NetworkAvailablePatch(new DateTime(2026, 11, 27, 5, 0, 0, DateTimeKind.Utc)));
    }
}
