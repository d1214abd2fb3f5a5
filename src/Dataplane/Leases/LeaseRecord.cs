using Dataplane.Encap;

namespace Dataplane.Leases;

/// <summary>
/// One node's lease as flannel stores it under <c>&lt;prefix&gt;/subnets/10.244.1.0-24</c>:
/// <c>{"PublicIP":"192.0.2.1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:..."}}</c>.
/// flannel's udp backend writes no BackendType/BackendData.
/// </summary>
internal sealed record LeaseRecord(Ipv4Prefix Subnet, uint PublicIp, string? BackendType, MacAddress? VtepMac)
{
    public string PublicIpText => Ipv4Prefix.Format(PublicIp);
}
