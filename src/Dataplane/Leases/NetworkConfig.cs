using Dataplane.Encap;
using Dataplane.Engine;

namespace Dataplane.Leases;

/// <summary>
/// flannel's network config (<c>&lt;prefix&gt;/config</c>):
/// <c>{"Network":"10.244.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan","VNI":1,"Port":8472}}</c>.
/// A missing Backend means udp, as in flannel's code.
/// </summary>
internal sealed record NetworkConfig(Ipv4Prefix Network, int SubnetLength, BackendKind Backend, uint Vni, int Port)
{
    /// <summary>The first and last subnet base addresses a node may lease (flannel: the second subnet to the last).</summary>
    public uint SubnetMin { get; init; }
    public uint SubnetMax { get; init; }

    public const int DefaultUdpPort = 8285;   // flannel udp backend
    public const int DefaultVxlanPort = 8472; // Linux vxlan default, as flannel.1 uses
    public const uint DefaultVni = 1;

    public static int DefaultPort(BackendKind backend) => backend == BackendKind.Vxlan ? DefaultVxlanPort : DefaultUdpPort;

    /// <summary>flannel's default: /24 when the network is /22 or wider, otherwise four subnets' worth.</summary>
    public static int DefaultSubnetLength(Ipv4Prefix network) => network.Length <= 22 ? 24 : network.Length + 2;

    public static bool TryParseBackend(string? name, out BackendKind backend)
    {
        switch (name?.ToLowerInvariant())
        {
            case "udp":
                backend = BackendKind.Udp;
                return true;
            case "vxlan":
                backend = BackendKind.Vxlan;
                return true;
            default:
                backend = default;
                return false;
        }
    }
}
