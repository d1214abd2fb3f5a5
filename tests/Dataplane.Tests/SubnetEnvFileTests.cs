using Dataplane.Encap;
using Dataplane.Node;

namespace Dataplane.Tests;

public class SubnetEnvFileTests
{
    [Fact]
    public void Written_exactly_as_flanneld_writes_it()
    {
        string text = SubnetEnvFile.Format(new Ipv4Prefix(Packets.Ip("10.244.0.0"), 16), new Ipv4Prefix(Packets.Ip("10.244.1.0"), 24), 1450, false);
        Assert.Equal("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n", text);
    }

    [Fact]
    public void Write_creates_the_folder_and_replaces_atomically()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"dp-env-{Guid.NewGuid():N}");
        try
        {
            string path = Path.Combine(dir, "flannel", "subnet.env");
            SubnetEnvFile.Write(path, new Ipv4Prefix(Packets.Ip("10.244.0.0"), 16), new Ipv4Prefix(Packets.Ip("10.244.7.0"), 24), 1472, true);
            Assert.Contains("FLANNEL_SUBNET=10.244.7.1/24", File.ReadAllText(path));
            Assert.Contains("FLANNEL_IPMASQ=true", File.ReadAllText(path));
            Assert.False(File.Exists(path + ".tmp"));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
