using System.Text;
using System.Text.Json;
using Dataplane.Encap;

namespace Dataplane.Leases.Kube;

/// <summary>
/// A Kubernetes Node as a flannel lease, as flanneld reads it (<c>nodeToLease</c> in
/// <c>pkg/subnet/kube</c>): only nodes annotated <c>kube-subnet-manager: "true"</c> take part; the
/// subnet is the node's IPv4 pod CIDR (the first IPv4 one of <c>spec.podCIDRs</c>, else
/// <c>spec.podCIDR</c>); the public IP, backend type and backend data are the annotations. The
/// annotations are checked with the same rules, and the same one-line errors, as an etcd lease.
/// </summary>
internal static class NodeLease
{
    /// <summary>The node's IPv4 pod CIDR, or null if none is assigned (or only an IPv6 one); a malformed one is an error.</summary>
    public static Ipv4Prefix? PodCidr(NodeJson node, string where)
    {
        List<string> cidrs = node.Spec?.PodCidrs is { Count: > 0 } list ? list : node.Spec?.PodCidr is { Length: > 0 } one ? [one] : [];
        if (cidrs.Count > 2)
        {
            throw new ConfigException($"{where}: {cidrs.Count} podCIDRs (one IPv4 and one IPv6 at most)");
        }
        foreach (string text in cidrs)
        {
            if (text.Contains(':'))
            {
                continue; // IPv6: not used by this data plane yet
            }
            if (!Ipv4Prefix.TryParse(text, out Ipv4Prefix? cidr) || !text.Contains('/'))
            {
                throw new ConfigException($"{where}: podCIDR '{text}' is not a network like 10.244.1.0/24");
            }
            return cidr;
        }
        return null;
    }

    /// <summary>Whether flanneld (or we) manage this node's lease.</summary>
    public static bool IsManaged(NodeJson node, KubeAnnotations a) =>
        node.Metadata?.Annotations?.GetValueOrDefault(a.SubnetKubeManaged) == "true";

    /// <summary>
    /// The lease a managed node's annotations make, or null with the reason in <paramref name="skipped"/>
    /// (no pod CIDR yet, no public IP, annotations that do not parse).
    /// </summary>
    public static LeaseRecord? FromNode(NodeJson node, KubeAnnotations a, out string? skipped)
    {
        string name = node.Metadata?.Name ?? "?";
        string where = $"node {name}";
        IReadOnlyDictionary<string, string> ann = node.Metadata?.Annotations ?? [];
        try
        {
            if (PodCidr(node, where) is not Ipv4Prefix subnet)
            {
                skipped = $"{where}: no IPv4 podCIDR";
                return null;
            }
            if (!ann.TryGetValue(a.PublicIp, out string? publicIp))
            {
                skipped = $"{where}: no {a.PublicIp} annotation";
                return null;
            }
            skipped = null;
            return LeaseRecord.Parse(subnet.ToKey(), LeaseJson(publicIp, ann.GetValueOrDefault(a.BackendType), ann.GetValueOrDefault(a.BackendData), where), where);
        }
        catch (ConfigException e)
        {
            skipped = e.Message;
            return null;
        }
    }

    /// <summary>The annotations as the lease value flannel stores in etcd, so one parser checks both.</summary>
    private static byte[] LeaseJson(string publicIp, string? backendType, string? backendData, string where) => KubeJsonWriter.Utf8(w =>
        {
            w.WriteStartObject();
            w.WriteString("PublicIP", publicIp);
            if (backendType is not null)
            {
                w.WriteString("BackendType", backendType);
            }
            if (backendData is { Length: > 0 })
            {
                try
                {
                    using JsonDocument data = JsonDocument.Parse(Encoding.UTF8.GetBytes(backendData));
                    w.WritePropertyName("BackendData");
                    data.WriteTo(w);
                }
                catch (JsonException)
                {
                    throw new ConfigException($"{where}: the backend-data annotation is not JSON: {backendData}");
                }
            }
            w.WriteEndObject();
        });
}
