using System.Globalization;
using Dataplane.Encap;

namespace Dataplane.Node;

/// <summary>
/// <c>/run/flannel/subnet.env</c> exactly as flanneld writes it, for the CNI flannel plugin:
/// FLANNEL_NETWORK, FLANNEL_SUBNET (the subnet's first host address with the subnet's length,
/// 10.244.1.1/24), FLANNEL_MTU, FLANNEL_IPMASQ. Written to a temporary file and renamed, so a
/// reader never sees half of it.
/// </summary>
internal static class SubnetEnvFile
{
    public static string Format(Ipv4Prefix network, Ipv4Prefix subnet, int mtu, bool ipMasq) =>
        string.Create(CultureInfo.InvariantCulture,
            $"FLANNEL_NETWORK={network}\nFLANNEL_SUBNET={Ipv4Prefix.Format(subnet.Address + 1)}/{subnet.Length}\nFLANNEL_MTU={mtu}\nFLANNEL_IPMASQ={(ipMasq ? "true" : "false")}\n");

    public static void Write(string path, Ipv4Prefix network, Ipv4Prefix subnet, int mtu, bool ipMasq)
    {
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null)
        {
            Directory.CreateDirectory(dir);
        }
        string temp = path + ".tmp";
        File.WriteAllText(temp, Format(network, subnet, mtu, ipMasq));
        File.Move(temp, path, overwrite: true);
    }
}
