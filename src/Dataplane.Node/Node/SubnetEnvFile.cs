using System.Globalization;
using System.Text;
using Dataplane.Encap;

namespace Dataplane.Node;

/// <summary>
/// <c>/run/flannel/subnet.env</c> exactly as flanneld writes it, for the CNI flannel plugin:
/// FLANNEL_NETWORK, FLANNEL_SUBNET (the subnet's first host address with the subnet's length,
/// 10.244.1.1/24), on a dual-stack node FLANNEL_IPV6_NETWORK and FLANNEL_IPV6_SUBNET (the same
/// way: 2001:db8:244:1::1/64), then FLANNEL_MTU, FLANNEL_IPMASQ (flannel's pkg/subnet
/// WriteSubnetFile order). Written to a temporary file and renamed, so a reader never sees half of it.
/// </summary>
internal static class SubnetEnvFile
{
    public static string Format(Ipv4Prefix network, Ipv4Prefix subnet, int mtu, bool ipMasq, (Ipv6Prefix Network, Ipv6Prefix Subnet)? ipv6 = null) =>
        Format((network, subnet), mtu, ipMasq, ipv6);

    /// <summary>The file's text; an IPv6-only network (<paramref name="ipv4"/> null) has no IPv4 lines, as flanneld writes it.</summary>
    public static string Format((Ipv4Prefix Network, Ipv4Prefix Subnet)? ipv4, int mtu, bool ipMasq, (Ipv6Prefix Network, Ipv6Prefix Subnet)? ipv6)
    {
        var b = new StringBuilder();
        if (ipv4 is { } v4)
        {
            b.Append(CultureInfo.InvariantCulture, $"FLANNEL_NETWORK={v4.Network}\nFLANNEL_SUBNET={Ipv4Prefix.Format(v4.Subnet.Address + 1)}/{v4.Subnet.Length}\n");
        }
        if (ipv6 is { } v6)
        {
            b.Append(CultureInfo.InvariantCulture, $"FLANNEL_IPV6_NETWORK={v6.Network}\nFLANNEL_IPV6_SUBNET={Ipv6Prefix.Format(v6.Subnet.Address + 1)}/{v6.Subnet.Length}\n");
        }
        b.Append(CultureInfo.InvariantCulture, $"FLANNEL_MTU={mtu}\nFLANNEL_IPMASQ={(ipMasq ? "true" : "false")}\n");
        return b.ToString();
    }

    public static void Write(string path, Ipv4Prefix network, Ipv4Prefix subnet, int mtu, bool ipMasq, (Ipv6Prefix Network, Ipv6Prefix Subnet)? ipv6 = null) =>
        Write(path, (network, subnet), mtu, ipMasq, ipv6);

    public static void Write(string path, (Ipv4Prefix Network, Ipv4Prefix Subnet)? ipv4, int mtu, bool ipMasq, (Ipv6Prefix Network, Ipv6Prefix Subnet)? ipv6)
    {
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null)
        {
            Directory.CreateDirectory(dir);
        }
        string temp = path + ".tmp";
        File.WriteAllText(temp, Format(ipv4, mtu, ipMasq, ipv6));
        File.Move(temp, path, overwrite: true);
    }
}
