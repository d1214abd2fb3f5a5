using Dataplane.Lab;
using Dataplane.Node;
using Dataplane.TestSupport;

namespace Dataplane.Integration.Tests;

/// <summary>
/// The linux-arm64 NativeAOT binary (cross-compiled by run-tests.sh with Debian's aarch64 cross
/// toolchain and lld) runs as the node on both ends, under qemu-user; the pods' tools stay the
/// x64 program. It carries pings and 16 MB each way intact with offloads on, so what is emitted
/// on arm64 (struct layouts, the virtio header, cmsgs, the checksum code without AVX2) is right.
/// qemu-user translates the system calls; it cannot show arm64 speed.
/// </summary>
public class Arm64Tests
{
    public const string BinaryVariable = "DATAPLANE_ARM64_BINARY";

    [Theory]
    [InlineData("udp")]
    [InlineData("vxlan")]
    public void The_arm64_binary_forwards_between_two_nodes_under_qemu(string backend)
    {
        string? binary = Environment.GetEnvironmentVariable(BinaryVariable);
        if (binary is null && Environment.GetEnvironmentVariable("CI") != "true")
        {
            return; // a developer's run without the cross build; run-tests.sh always builds it
        }
        Assert.False(string.IsNullOrEmpty(binary), $"{BinaryVariable} is not set: run-tests.sh cross-compiles the arm64 binary and sets it");
        byte[] elf = File.ReadAllBytes(binary!)[..20];
        Assert.Equal("\u007fELF"u8.ToArray(), elf[..4]);
        Assert.Equal(0xB7, elf[18] | (elf[19] << 8)); // e_machine: EM_AARCH64
        string qemu = Require.Tool("qemu-aarch64-static", "qemu-user-static");

        using var c = new Cluster { Program = [qemu, "-L", "/usr/aarch64-linux-gnu", binary!] };
        c.Topology.AddNode(1);
        c.Topology.AddNode(2);
        new ClusterFileBuilder().Node(1).Node(2).WriteTo(c.LeasesPath);
        NodeProcess n1 = c.StartNode(1, backend, null, "--queues", "2");
        c.StartNode(2, backend, null, "--queues", "2");
        Assert.Contains("Subnet added: 10.244.2.0/24 via 192.0.2.2", n1.Output);
        // The node really is the arm64 build, emulated: its process is qemu running that file.
        Assert.Equal(qemu, new FileInfo($"/proc/{n1.Pid}/exe").LinkTarget);
        Assert.Contains(binary!, File.ReadAllText($"/proc/{n1.Pid}/cmdline").Split('\0'));

        ProcessRunner.Result ping = c.Ping(c.Topology.Pod(1), Topology.PodIp(2));
        Assert.True(ping.ExitCode == 0, ping.Stdout + n1.Output);
        c.StartTransfer(1, 2, 16L << 20).AssertIntact(TimeSpan.FromSeconds(120));
        c.StartTransfer(2, 1, 16L << 20, port: 5202).AssertIntact(TimeSpan.FromSeconds(120));
    }
}
