using System.Globalization;
using Dataplane.Lab;
using Dataplane.Lab.Demo;
using Dataplane.Node;

using Dataplane.TestSupport;

namespace Dataplane.Integration.Tests;

/// <summary>
/// A <see cref="Topology"/> plus what the tests do with it: start our nodes, program a kernel
/// flannel.1 node as flanneld does, move traffic between pods and compare digests. Requirements
/// (root, iproute2, ping, tshark) fail the test with the reason; nothing is skipped.
/// </summary>
internal sealed class Cluster : IDisposable
{
    public Cluster()
    {
        Require.Root();
        Topology = new Topology();
    }

    public Topology Topology { get; }

    /// <summary>How our node is started: the program under test (<see cref="SelfCommand"/>), or another build of it (the arm64 one under qemu).</summary>
    public IReadOnlyList<string> Program { get; set; } = SelfCommand.Prefix();

    public string LeasesPath => Path.Combine(Topology.WorkDir, "cluster.json");

    public string Path_(string name) => Path.Combine(Topology.WorkDir, name);

    /// <summary>Node i's control socket (what <c>dataplane stats</c> reads).</summary>
    public string ControlSocket(int i) => Path_($"node{i}.sock");

    /// <summary>Nodes 1 and 2 with their pods and leases for both in the cluster file; nothing started.</summary>
    public static Cluster WithTwoNodes()
    {
        var c = new Cluster();
        c.Topology.AddNode(1);
        c.Topology.AddNode(2);
        new ClusterFileBuilder().Node(1).Node(2).WriteTo(c.LeasesPath);
        return c;
    }

    /// <summary>Nodes 1 and 2 with their pods, leases for both in the cluster file, our data plane running on both.</summary>
    public (NodeProcess One, NodeProcess Two) StartTwoNodes(string backend, params string[] extra)
    {
        Topology.AddNode(1);
        Topology.AddNode(2);
        new ClusterFileBuilder(backend).Node(1).Node(2).WriteTo(LeasesPath);
        return (StartNode(1, backend, null, extra), StartNode(2, backend, null, extra));
    }

    /// <summary>Nodes 1 and 2 dual-stack (IPv6 underlay and pods) in a dual-stack cluster file (<see cref="ClusterFileBuilder.DualStack"/>); nothing started.</summary>
    public void DualStackPair(string backend = "vxlan")
    {
        Topology.AddNode(1, ipv6: true);
        Topology.AddNode(2, ipv6: true);
        new ClusterFileBuilder(backend).DualStack().Node(1).Node(2).WriteTo(LeasesPath);
    }

    /// <summary>Starts our data plane on node i and waits for "Ready".</summary>
    public NodeProcess StartNode(int i, string backend, string? leases = null, params string[] extra)
    {
        NodeProcess p = Topology.Start(Topology.Node(i), [.. Program, "run", "--leases", leases ?? LeasesPath,
            "--public-ip", Topology.UnderlayIp(i), "--backend", backend,
            "--subnet-file", Path_($"node{i}-subnet.env"), "--control-socket", ControlSocket(i), .. extra], $"node{i}");
        string? ready = p.WaitForLine("Ready:", TimeSpan.FromSeconds(30));
        Assert.True(ready is not null, $"node {i} did not become ready:\n{p.Output}");
        return p;
    }

    /// <summary>
    /// Node i as a kernel VXLAN node programmed as flanneld does (<see cref="Topology.AddKernelVxlan"/>).
    /// With the veth's default offloads (<paramref name="finishChecksums"/> false) the kernel leaves
    /// the inner checksum of what it encapsulates unfinished, as on kind-style clusters and VMs on
    /// one host; with tx checksum offload off it completes them itself, as a real NIC would.
    /// </summary>
    public void ProgramKernelVxlanNode(int i, string mac, IEnumerable<(int Node, string Mac)> peers, bool finishChecksums = true)
    {
        if (finishChecksums)
        {
            ProcessRunner.Check(Require.Tool("ip", "iproute2"), "netns", "exec", Topology.Node(i), Require.Tool("ethtool", "ethtool"), "-K", "eth0", "tx", "off");
        }
        Require.Tool("bridge", "iproute2");
        Topology.AddKernelVxlan(i, mac, peers);
    }

    /// <summary>
    /// Nodes 1 and 2 in the cluster file, node 2 a kernel flannel.1 programmed as flanneld does with
    /// our node 1 as its peer (see <see cref="ProgramKernelVxlanNode"/>); our node is not started.
    /// </summary>
    public void OursBesideAKernelPeer(bool finishChecksums = true)
    {
        Topology.AddNode(1);
        Topology.AddNode(2);
        string kernelMac = ClusterFileBuilder.VtepMac(2);
        new ClusterFileBuilder().Node(1).Node(2, vtepMac: kernelMac).WriteTo(LeasesPath);
        ProgramKernelVxlanNode(2, kernelMac, [(1, ClusterFileBuilder.VtepMac(1))], finishChecksums);
    }

    /// <summary>iputils ping from a namespace: the independent reader of ICMP.</summary>
    public ProcessRunner.Result Ping(string netns, string target, int count = 3) =>
        Topology.Exec(netns, [Require.Tool("ping", "iputils-ping"), "-c", count.ToString(CultureInfo.InvariantCulture), "-i", "0.2", "-W", "2", target], 30_000);

    /// <summary>Sends <paramref name="bytes"/> from pod <paramref name="from"/> to pod <paramref name="to"/> over TCP; asserts both ends saw the same bytes.</summary>
    public Transfer StartTransfer(int from, int to, long bytes, int port = 5201, bool ipv6 = false) =>
        StartTransfer(from, to, ["--bytes", bytes.ToString(CultureInfo.InvariantCulture)], bytes, port, ipv6);

    /// <summary>Sends for <paramref name="seconds"/>; the check is that both ends agree on the count and the digest.</summary>
    public Transfer StartTimedTransfer(int from, int to, double seconds, int port = 5201) =>
        StartTransfer(from, to, ["--seconds", seconds.ToString(CultureInfo.InvariantCulture)], null, port);

    private Transfer StartTransfer(int from, int to, string[] amount, long? bytes, int port, bool ipv6 = false)
    {
        NodeProcess sink = Topology.Start(Topology.Pod(to), [.. SelfCommand.Prefix(), "pod-sink", "--port", port.ToString(CultureInfo.InvariantCulture), "--timeout", "120"], $"sink{to}");
        Assert.NotNull(sink.WaitForLine("listening", TimeSpan.FromSeconds(20)));
        NodeProcess send = Topology.Start(Topology.Pod(from), [.. SelfCommand.Prefix(), "pod-send", "--to",
            ipv6 ? $"[{Topology.PodIpv6(to)}]:{port}" : $"{Topology.PodIp(to)}:{port}", .. amount], $"send{from}");
        return new Transfer(send, sink, bytes);
    }

    /// <summary>
    /// iperf3 (TCP) from pod <paramref name="from"/> to pod <paramref name="to"/> for
    /// <paramref name="seconds"/>, reporting every second: continuity measured as continuity (a TCP
    /// digest alone passes through any stall its retransmissions outlast).
    /// </summary>
    public Intervals StartIntervals(int from, int to, int seconds, int port = 5301)
    {
        string iperf3 = Require.Tool("iperf3", "iperf3");
        string p = port.ToString(CultureInfo.InvariantCulture);
        NodeProcess server = Topology.Start(Topology.Pod(to), [iperf3, "-s", "-1", "-p", p, "--forceflush"], $"iperf3-server{to}");
        Assert.NotNull(server.WaitForLine("Server listening", TimeSpan.FromSeconds(10)));
        NodeProcess client = Topology.Start(Topology.Pod(from), [iperf3, "-c", Topology.PodIp(to), "-p", p, "-t", seconds.ToString(CultureInfo.InvariantCulture),
            "-i", "1", "-J"], $"iperf3-client{from}");
        return new Intervals(client, seconds);
    }

    public void Dispose() => Topology.Dispose();
}

internal sealed record Intervals(NodeProcess Client, int Seconds)
{
    /// <summary>Waits for the end and asserts that every one-second interval moved at least <paramref name="minBytes"/>; returns the intervals' bytes.</summary>
    public double[] AssertEverySecondCarried(double minBytes)
    {
        Assert.True(Client.WaitForExit(TimeSpan.FromSeconds(Seconds + 30)), Client.Output);
        Assert.True(Client.ExitCode == 0, Client.Output);
        using System.Text.Json.JsonDocument report = System.Text.Json.JsonDocument.Parse(Client.Output);
        double[] bytes = [.. report.RootElement.GetProperty("intervals").EnumerateArray().Select(i => i.GetProperty("sum").GetProperty("bytes").GetDouble())];
        Assert.True(bytes.Length >= Seconds - 1, $"{bytes.Length} intervals of {Seconds}");
        Assert.True(bytes.All(b => b >= minBytes), $"a 1 s interval moved less than {minBytes / 1e6:0.#} MB: "
            + string.Join(", ", bytes.Select(b => (b / 1e6).ToString("0.0", CultureInfo.InvariantCulture))));
        return bytes;
    }
}

internal sealed record Transfer(NodeProcess Sender, NodeProcess Sink, long? Bytes)
{
    /// <summary>Waits for both ends and asserts the byte count and SHA-256 agree. Returns the sender's line.</summary>
    public string AssertIntact(TimeSpan timeout)
    {
        Assert.True(Sender.WaitForExit(timeout), $"the sender did not finish in {timeout}:\n{Sender.Output}");
        Assert.True(Sink.WaitForExit(TimeSpan.FromSeconds(30)), $"the receiver did not finish:\n{Sink.Output}");
        string sent = Sender.Lines.FirstOrDefault(l => l.StartsWith("sent ", StringComparison.Ordinal)) ?? "";
        string received = Sink.Lines.FirstOrDefault(l => l.StartsWith("received ", StringComparison.Ordinal)) ?? "";
        Assert.True(sent.Length > 0, $"sender: {Sender.Output}");
        Assert.True(received.Length > 0, $"receiver: {Sink.Output}");
        if (Bytes is long expected)
        {
            Assert.Equal(expected.ToString(CultureInfo.InvariantCulture), DemoCommand.Field(sent, "bytes"));
        }
        Assert.Equal(DemoCommand.Field(sent, "bytes"), DemoCommand.Field(received, "bytes"));
        Assert.Equal(DemoCommand.Field(sent, "sha256"), DemoCommand.Field(received, "sha256"));
        return sent;
    }
}
