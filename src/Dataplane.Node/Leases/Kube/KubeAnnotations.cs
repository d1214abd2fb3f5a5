using System.Text.RegularExpressions;

namespace Dataplane.Leases.Kube;

/// <summary>
/// The node annotations flanneld keeps its lease in, under a prefix (default
/// <c>flannel.alpha.coreos.com/</c>), built by flannel's rules (<c>pkg/subnet/kube/annotations.go</c>):
/// a prefix without a slash gets one; one with a slash and a name part gets a dash.
/// </summary>
internal sealed partial record KubeAnnotations(string Prefix)
{
    public string SubnetKubeManaged => Prefix + "kube-subnet-manager";
    public string BackendData => Prefix + "backend-data";
    public string BackendType => Prefix + "backend-type";
    public string PublicIp => Prefix + "public-ip";
    /// <summary>Dual-stack: the node's IPv6 underlay address and its flannel-v6.1 backend data (vxlan: the v6 VtepMAC).</summary>
    public string PublicIpv6 => Prefix + "public-ipv6";
    public string BackendV6Data => Prefix + "backend-v6-data";
    /// <summary>Set by the operator: the address peers are to use instead of ours (a NAT in front of the node).</summary>
    public string PublicIpOverwrite => Prefix + "public-ip-overwrite";
    /// <summary>Set by the operator: the local address to use as the public IP (as <c>--public-ip</c>).</summary>
    public string NodePublicIp => Prefix + "node-public-ip";
    public string NodePublicIpv6 => Prefix + "node-public-ipv6";

    /// <summary>The annotations a node publishes its lease in (the operator's two are not among them).</summary>
    public IEnumerable<string> Published => [BackendData, BackendType, PublicIp, SubnetKubeManaged, PublicIpv6, BackendV6Data];

    public static KubeAnnotations Create(string prefix)
    {
        int slashes = prefix.Count(c => c == '/');
        if (slashes > 1)
        {
            throw new ConfigException($"--kube-annotation-prefix {prefix}: at most one '/'");
        }
        string p = slashes == 0 ? prefix + "/" : prefix;
        if (!p.EndsWith('/') && !p.EndsWith('-'))
        {
            p += "-";
        }
        if (!Format().IsMatch(p))
        {
            throw new ConfigException($"--kube-annotation-prefix {prefix}: must be a domain name, optionally with '/name' (lower case letters, digits, '-', '_', '.')");
        }
        return new KubeAnnotations(p);
    }

    [GeneratedRegex(@"^(?:[a-z0-9_-]+\.)+[a-z0-9_-]+/(?:[a-z0-9_-]+-)?$")]
    private static partial Regex Format();
}
