using System.Text;
using System.Text.Json;
using Dataplane.Encap;

namespace Dataplane.Leases.Kube;

/// <summary>
/// A Kubernetes Node as a flannel lease, as flanneld reads it (<c>nodeToLease</c> in
/// <c>pkg/subnet/kube</c>): only nodes annotated <c>kube-subnet-manager: "true"</c> take part; the
/// subnet is the node's IPv4 pod CIDR (the first IPv4 one of <c>spec.podCIDRs</c>, else
/// <c>spec.podCIDR</c>); the public IP, backend type and backend data are the annotations. On a
/// dual-stack network the node's IPv6 pod CIDR is the lease's IPv6 subnet, with the
/// <c>public-ipv6</c> and <c>backend-v6-data</c> annotations where the node has them. The
/// annotations are checked with the same rules, and the same one-line errors, as an etcd lease.
/// </summary>
internal static class NodeLease
{
    private static List<string> PodCidrs(NodeJson node, string where)
    {
        List<string> cidrs = node.Spec?.PodCidrs is { Count: > 0 } list ? list : node.Spec?.PodCidr is { Length: > 0 } one ? [one] : [];
        if (cidrs.Count > 2)
        {
            throw new ConfigException($"{where}: {cidrs.Count} podCIDRs (one IPv4 and one IPv6 at most)");
        }
        return cidrs;
    }

    /// <summary>The node's IPv6 pod CIDR, or null if none is assigned; a malformed one is an error.</summary>
    public static Ipv6Prefix? PodCidr6(NodeJson node, string where)
    {
        foreach (string text in PodCidrs(node, where))
        {
            if (!text.Contains(':'))
            {
                continue;
            }
            if (!Ipv6Prefix.TryParse(text, out Ipv6Prefix? cidr) || !text.Contains('/'))
            {
                throw new ConfigException($"{where}: podCIDR '{text}' is not a network like 2001:db8:244:1::/64");
            }
            return cidr;
        }
        return null;
    }

    /// <summary>The node's IPv4 pod CIDR, or null if none is assigned (or only an IPv6 one); a malformed one is an error.</summary>
    public static Ipv4Prefix? PodCidr(NodeJson node, string where)
    {
        foreach (string text in PodCidrs(node, where))
        {
            if (text.Contains(':'))
            {
                continue; // the IPv6 one: PodCidr6
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
    /// (no pod CIDR yet, no public IP, annotations that do not parse). With <paramref name="ipv6"/>
    /// (a dual-stack network) the IPv6 half too, when the node has an IPv6 pod CIDR.
    /// </summary>
    public static LeaseRecord? FromNode(NodeJson node, KubeAnnotations a, out string? skipped, bool ipv6 = false)
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
            Ipv6Prefix? subnet6 = ipv6 ? PodCidr6(node, where) : null;
            string key = subnet6 is Ipv6Prefix s6 ? $"{subnet.ToKey()}&{s6.ToKey()}" : subnet.ToKey();
            return LeaseRecord.Parse(key, LeaseJson(publicIp, ann.GetValueOrDefault(a.BackendType), ann.GetValueOrDefault(a.BackendData), where,
                subnet6 is null ? null : ann.GetValueOrDefault(a.PublicIpv6), subnet6 is null ? null : ann.GetValueOrDefault(a.BackendV6Data)), where) with
            { Name = where };
        }
        catch (ConfigException e)
        {
            skipped = e.Message;
            return null;
        }
    }

    /// <summary>The annotations as the lease value flannel stores in etcd, so one parser checks both.</summary>
    private static byte[] LeaseJson(string publicIp, string? backendType, string? backendData, string where, string? publicIpv6, string? backendV6Data) =>
        KubeJsonWriter.Utf8(w =>
        {
            w.WriteStartObject();
            w.WriteString("PublicIP", publicIp);
            if (publicIpv6 is { Length: > 0 })
            {
                w.WriteString("PublicIPv6", publicIpv6);
            }
            if (backendType is not null)
            {
                w.WriteString("BackendType", backendType);
            }
            Raw(w, "BackendData", backendData, "backend-data", where);
            Raw(w, "BackendV6Data", backendV6Data, "backend-v6-data", where);
            w.WriteEndObject();
        });

    private static void Raw(Utf8JsonWriter w, string name, string? json, string annotation, string where)
    {
        if (json is not { Length: > 0 })
        {
            return;
        }
        try
        {
            using JsonDocument data = JsonDocument.Parse(Encoding.UTF8.GetBytes(json));
            w.WritePropertyName(name);
            data.WriteTo(w);
        }
        catch (JsonException)
        {
            throw new ConfigException($"{where}: the {annotation} annotation is not JSON: {json}");
        }
    }
}
