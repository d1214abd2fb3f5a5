using System.Text;
using Dataplane.Engine;
using Dataplane.Leases;

namespace Dataplane.Tests;

public class ClusterFileTests
{
    private const string Valid = """
        {
          "config": {"Network": "10.244.0.0/16", "SubnetLen": 24, "Backend": {"Type": "vxlan", "VNI": 1, "Port": 8472}},
          "subnets": {
            "10.244.1.0-24": {"PublicIP": "192.0.2.1", "BackendType": "vxlan", "BackendData": {"VNI": 1, "VtepMAC": "0e:00:5e:00:00:01"}},
            "10.244.2.0-24": {"PublicIP": "192.0.2.2", "BackendType": "vxlan", "BackendData": {"VNI": 1, "VtepMAC": "0e:00:5e:00:00:02"}}
          }
        }
        """;

    private static ClusterSnapshot Parse(string json) => ClusterFile.Parse(Encoding.UTF8.GetBytes(json), "cluster.json");

    private static string Error(string json) => Assert.Throws<ConfigException>(() => Parse(json)).Message;

    [Fact]
    public void Parses_flannels_schema()
    {
        ClusterSnapshot s = Parse(Valid);
        Assert.Equal("10.244.0.0/16", s.Config.Network.ToString());
        Assert.Equal(24, s.Config.SubnetLength);
        Assert.Equal(BackendKind.Vxlan, s.Config.Backend);
        Assert.Equal(8472, s.Config.Port);
        Assert.Equal(1u, s.Config.Vni);
        Assert.Equal(2, s.Leases.Count);
        LeaseRecord b = s.LeaseOf(Packets.Ip("192.0.2.2"))!;
        Assert.Equal("10.244.2.0/24", b.Subnet.ToString());
        Assert.Equal("0e:00:5e:00:00:02", b.VtepMac.ToString());
    }

    [Fact]
    public void Missing_backend_means_udp_on_8285_and_subnet_len_defaults_like_flannel()
    {
        ClusterSnapshot s = Parse("""{"config": {"Network": "10.244.0.0/16"}, "subnets": {"10.244.1.0-24": {"PublicIP": "192.0.2.1"}}}""");
        Assert.Equal(BackendKind.Udp, s.Config.Backend);
        Assert.Equal(8285, s.Config.Port);
        Assert.Equal(24, s.Config.SubnetLength);
        Assert.Null(s.Leases[0].VtepMac);
        Assert.Equal(26, NetworkConfig.DefaultSubnetLength(new Encap.Ipv4Prefix(0, 24)));
    }

    [Fact]
    public void Invalid_json_says_line_and_column()
    {
        string e = Error("{\n  \"config\": {,\n}");
        Assert.StartsWith("lease file cluster.json: invalid JSON at line 2, column", e);
    }

    [Theory]
    [InlineData("""{"subnets": {}}""", "missing \"config\"")]
    [InlineData("""{"config": {"Network": "10.244.0.0/16"}}""", "missing \"subnets\"")]
    [InlineData("""{"config": {}, "subnets": {}}""", "config: missing \"Network\"")]
    [InlineData("""{"config": {"Network": "10.244.0.1/16"}, "subnets": {}}""", "config.Network: '10.244.0.1/16' is not an IPv4 network")]
    [InlineData("""{"config": {"Network": "10.244.0.0/16", "SubnetLen": 12}, "subnets": {}}""", "config.SubnetLen: 12 must be longer")]
    [InlineData("""{"config": {"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw"}}, "subnets": {}}""", "config.Backend.Type: unknown backend 'host-gw' (supported: udp, vxlan)")]
    [InlineData("""{"config": {"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "VNI": 16777216}}, "subnets": {}}""", "config.Backend.VNI: 16777216 is not a 24-bit VNI")]
    [InlineData("""{"config": {"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "Port": 70000}}, "subnets": {}}""", "config.Backend.Port: 70000 is not a UDP port")]
    [InlineData("""{"config": {"Network": "10.244.0.0/16"}, "subnets": {"10.244.1.0-24": {}}}""", "subnets[\"10.244.1.0-24\"]: missing \"PublicIP\"")]
    [InlineData("""{"config": {"Network": "10.244.0.0/16"}, "subnets": {"10.244.1.0-24": {"PublicIP": "192.0.2"}}}""", "subnets[\"10.244.1.0-24\"].PublicIP: '192.0.2' is not an IPv4 address")]
    [InlineData("""{"config": {"Network": "10.244.0.0/16"}, "subnets": {"10.244.1.0+24": {"PublicIP": "192.0.2.1"}}}""", "'10.244.1.0+24' is not a subnet")]
    [InlineData("""{"config": {"Network": "10.244.0.0/16"}, "subnets": {"10.244.1.0-24": {"PublicIP": "192.0.2.1", "BackendData": {"VtepMAC": "zz"}}}}""", "BackendData.VtepMAC: 'zz' is not a MAC address")]
    [InlineData("""{"config": {"Network": "10.244.0.0/16"}, "subnets": {"10.245.1.0-24": {"PublicIP": "192.0.2.1"}}}""", "subnet 10.245.1.0/24 is outside the network 10.244.0.0/16")]
    [InlineData("""{"config": {"Network": "10.244.0.0/16"}, "subnets": {"10.244.1.0-25": {"PublicIP": "192.0.2.1"}}}""", "subnet 10.244.1.0/25 is not a /24 (SubnetLen)")]
    [InlineData("""{"config": {"Network": "10.244.0.0/16"}, "subnets": {"10.244.1.0-24": {"PublicIP": "192.0.2.1"}, "10.244.1.0-24 ": {"PublicIP": "192.0.2.2"}}}""", "is not a subnet")]
    [InlineData("""{"config": {"Network": "10.244.0.0/16"}, "subnets": {"10.244.1.0-24": {"PublicIP": "192.0.2.1"}, "10.244.1.0-24": {"PublicIP": "192.0.2.2"}}}""", "subnets 10.244.1.0/24 and 10.244.1.0/24 overlap")]
    [InlineData("""{"config": {"Network": "10.244.0.0/16"}, "subnets": {"10.244.1.0-24": {"PublicIP": "192.0.2.1"}, "10.244.2.0-24": {"PublicIP": "192.0.2.1"}}}""", "PublicIP 192.0.2.1 holds two leases")]
    public void Each_schema_error_is_one_line_naming_the_place(string json, string expected)
    {
        string e = Error(json);
        Assert.Contains(expected, e);
        Assert.StartsWith("lease file cluster.json", e);
        Assert.DoesNotContain('\n', e);
    }

    [Fact]
    public void Invalid_utf8_is_a_clear_error_not_a_crash()
    {
        // Found by the fuzzer: invalid UTF-8 inside a JSON string passed the parser and threw
        // InvalidOperationException when the string was read.
        byte[] json = Encoding.UTF8.GetBytes(Valid);
        int at = Valid.IndexOf("192.0.2.1", StringComparison.Ordinal) + 3;
        json[at] = 0xFF;
        var e = Assert.Throws<ConfigException>(() => ClusterFile.Parse(json, "cluster.json"));
        Assert.Equal($"lease file cluster.json: not valid UTF-8 at byte {at}", e.Message);

        using var doc = System.Text.Json.JsonDocument.Parse(Encoding.UTF8.GetBytes("{\"PublicIP\": \"192.0.2.1\"}").Select(b => b == (byte)'9' ? (byte)0xC3 : b).ToArray());
        Assert.Throws<ConfigException>(() => LeaseRecord.Parse("10.244.1.0-24", doc.RootElement, "subnets/10.244.1.0-24"));
    }

    [Fact]
    public void Missing_file_is_a_clear_error()
    {
        string e = Assert.Throws<ConfigException>(() => ClusterFile.Load("/nonexistent/cluster.json")).Message;
        Assert.Equal("lease file /nonexistent/cluster.json: no such file", e);
    }
}
