using Dataplane.Lab;
using Dataplane.Lab.Demo;
using Dataplane.Node;

namespace Dataplane.Integration.Tests;

/// <summary>The static cluster file is watched: peers added and removed live while traffic to an unchanged peer flows.</summary>
public class LeaseFileTests
{
    [Fact]
    public void A_peer_added_and_removed_live_while_a_transfer_to_an_unchanged_peer_completes_intact()
    {
        using var c = new Cluster();
        for (int i = 1; i <= 3; i++)
        {
            c.Topology.AddNode(i);
        }
        // Nodes 1 and 2 share the edited file; node 3 has its own copy that knows everyone.
        new ClusterFileBuilder().Node(1).Node(2).WriteTo(c.LeasesPath);
        string node3File = c.Path_("cluster-node3.json");
        new ClusterFileBuilder().Node(1).Node(2).Node(3).WriteTo(node3File);
        NodeProcess n1 = c.StartNode(1, "vxlan");
        c.StartNode(2, "vxlan");
        c.StartNode(3, "vxlan", node3File);

        ProcessRunner.Result before = c.Ping(c.Topology.Pod(1), Topology.PodIp(3), count: 1);
        Assert.Contains("Destination Net Unreachable", before.Stdout);

        Transfer transfer = c.StartTimedTransfer(1, 2, seconds: 8);
        Thread.Sleep(300);

        new ClusterFileBuilder().Node(1).Node(2).Node(3).WriteTo(c.LeasesPath);
        Assert.NotNull(n1.WaitForLine("Subnet added: 10.244.3.0/24 via 192.0.2.3", TimeSpan.FromSeconds(10)));
        ProcessRunner.Result added = c.Ping(c.Topology.Pod(1), Topology.PodIp(3), count: 3);
        Assert.True(added.ExitCode == 0, added.Stdout);

        new ClusterFileBuilder().Node(1).Node(2).WriteTo(c.LeasesPath);
        Assert.NotNull(n1.WaitForLine("Subnet removed: 10.244.3.0/24", TimeSpan.FromSeconds(10)));
        // Several probes: a bulk transfer fills the same device queue, and one echo may be lost to it.
        ProcessRunner.Result removed = c.Ping(c.Topology.Pod(1), Topology.PodIp(3), count: 3);
        Assert.Contains("Destination Net Unreachable", removed.Stdout);

        Assert.False(transfer.Sender.HasExited, "the transfer ended before the edits: make it longer so the test proves something");
        string sent = transfer.AssertIntact(TimeSpan.FromSeconds(120));
        Assert.True(long.Parse(DemoCommand.Field(sent, "bytes")!, System.Globalization.CultureInfo.InvariantCulture) >= 50L << 20, sent);

        // A broken edit is refused and the node keeps forwarding on the last good table.
        File.WriteAllText(c.LeasesPath, "{ \"config\": ");
        Assert.NotNull(n1.WaitForLine("Ignoring the edit", TimeSpan.FromSeconds(10)));
        ProcessRunner.Result still = c.Ping(c.Topology.Pod(1), Topology.PodIp(2), count: 3);
        Assert.True(still.ExitCode == 0, still.Stdout);
    }
}
