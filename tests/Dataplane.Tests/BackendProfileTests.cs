using Dataplane.Encap;
using Dataplane.Engine;

namespace Dataplane.Tests;

/// <summary>Each backend's facts, stated once in its profile, are flannel's.</summary>
public class BackendProfileTests
{
    [Fact]
    public void Udp_is_flannels_udp_backend()
    {
        BackendProfile p = BackendProfile.Of(BackendKind.Udp);
        Assert.Equal(("udp", 8285, "flannel0", 0), (p.Name, p.DefaultPort, p.DefaultDevice, p.PayloadPrefix));
        Assert.Equal(Overheads.UdpBackend, p.Overhead(ipv6Underlay: false));      // 20 IPv4 + 8 UDP
        Assert.Equal(Overheads.UdpBackendIpv6, p.Overhead(ipv6Underlay: true));   // 40 IPv6 + 8 UDP
        Assert.Equal(1472, p.InnerMtu(1500, ipv6Underlay: false));
        Assert.Null(p.LeaseBackendType); // flanneld's udp backend writes no BackendType
        Assert.False(p.NeedsVtepMac);
        Assert.True(p.CarriesIpv6OverIpv4);
    }

    [Fact]
    public void Vxlan_is_the_kernels_flannel_1()
    {
        BackendProfile p = BackendProfile.Of(BackendKind.Vxlan);
        Assert.Equal(("vxlan", 8472, "flannel.1", 22), (p.Name, p.DefaultPort, p.DefaultDevice, p.PayloadPrefix));
        Assert.Equal(Overheads.VxlanBackend, p.Overhead(ipv6Underlay: false));    // 20 + 8 + 8 VXLAN + 14 Ethernet
        Assert.Equal(Overheads.VxlanBackendIpv6, p.Overhead(ipv6Underlay: true)); // 40 + 8 + 8 + 14
        Assert.Equal(1450, p.InnerMtu(1500, ipv6Underlay: false));
        Assert.Equal("vxlan", p.LeaseBackendType);
        Assert.True(p.NeedsVtepMac);
        Assert.False(p.CarriesIpv6OverIpv4); // as flannel-v6.1: IPv6 over the IPv6 underlay only
    }
}
