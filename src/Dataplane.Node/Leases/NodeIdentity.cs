using Dataplane.Encap;
using Dataplane.Engine;
using Dataplane.TunTap;

namespace Dataplane.Leases;

/// <summary>
/// Who this node is in the cluster, fixed at start: our lease, and the backend, port and VNI
/// in force (the config's, or the command line's overrides).
/// </summary>
internal sealed record NodeIdentity(LeaseRecord Lease, NetworkConfig Config, BackendKind Backend, int Port, uint Vni)
{
    public Ipv4Prefix Subnet => Lease.Subnet;

    /// <summary>The device address flannel gives: the subnet's base address, /32 (10.244.1.0).</summary>
    public uint DeviceAddress => Lease.Subnet.Address;

    /// <summary>Our VTEP MAC (vxlan), from our own lease.</summary>
    public MacAddress VtepMac => Lease.VtepMac ?? default;

    /// <summary>
    /// Builds the subnet table from a snapshot: every lease but ours (by public IP, or by subnet: a
    /// stale lease of our subnet from another address) is a peer. Leases that cannot
    /// be used with this backend (vxlan without a VtepMAC) are left out and reported in
    /// <paramref name="skipped"/>.
    /// </summary>
    public SubnetTable BuildTable(ClusterSnapshot snapshot, List<string> skipped)
    {
        var peers = new List<Peer>();
        skipped.AddRange(snapshot.Unreadable);
        foreach (LeaseRecord l in snapshot.Leases)
        {
            if (l.PublicIp == Lease.PublicIp || l.Subnet == Lease.Subnet)
            {
                continue;
            }
            if (Backend == BackendKind.Vxlan && l.VtepMac is null)
            {
                skipped.Add($"{l.Subnet} via {l.PublicIpText}: no BackendData.VtepMAC for vxlan");
                continue;
            }
            peers.Add(new Peer(l.Subnet, new UdpEndpoint(l.PublicIp, (ushort)Port), l.VtepMac ?? default));
        }
        return new SubnetTable(Config.Network, Config.SubnetLength, Lease.Subnet, peers);
    }
}
