using System.Net;
using System.Net.Sockets;
using Dataplane.Doctor;

namespace Dataplane.Tests;

/// <summary>The doctor's reading of the host where it can be checked without a namespace.</summary>
public sealed class DoctorHostViewTests
{
    [Fact]
    public void The_process_holding_a_udp_port_is_found_through_proc()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        int port = ((IPEndPoint)socket.LocalEndPoint!).Port;
        List<(int Pid, string Name)> holders = HostView.UdpPortHolders(port);
        Assert.Contains(holders, h => h.Pid == Environment.ProcessId);
        socket.Close();
        Assert.DoesNotContain(HostView.UdpPortHolders(port), h => h.Pid == Environment.ProcessId);
    }

    [Fact]
    public void Node_facts_are_read_back_from_the_metrics_text_with_their_peers()
    {
        string metrics = """
            dataplane_peer_packets_total{peer="192.0.2.2",subnet="10.244.2.0/24",direction="out"} 5
            dataplane_peer_packets_total{peer="192.0.2.2",subnet="10.244.2.0/24",direction="in"} 4
            dataplane_node_info{network="10.244.0.0/16",subnet="10.244.1.0/24",public_ip="192.0.2.1",port="8472",device="flannel.1",mtu="1450",backend="vxlan",lease_source="lease file /etc/a \"b\".json",subnet_file="/run/flannel/subnet.env",ip_masq="true",pid="42"} 1
            """;
        NodeFacts f = NodeFacts.Parse(metrics)!;
        Assert.Equal("10.244.0.0/16", f.Network.ToString());
        Assert.Equal("10.244.1.0/24", f.Subnet.ToString());
        Assert.Equal(("192.0.2.1", 8472, "flannel.1", 1450, "vxlan", true, 42), (f.PublicIp, f.Port, f.Device, f.Mtu, f.Backend, f.IpMasq, f.Pid));
        Assert.Equal("lease file /etc/a \"b\".json", f.LeaseSource);
        Assert.Equal("10.244.2.0/24", Assert.Single(f.Peers).Subnet.ToString());
        Assert.Null(NodeFacts.Parse("dataplane_peers 0\n"));
    }
}
