using System.Globalization;
using System.Text.RegularExpressions;
using Dataplane.Lab;
using Xunit.Abstractions;

namespace Dataplane.Integration.Tests;

/// <summary>
/// Numbered 64-byte datagrams from one pod to another, one per millisecond (<c>pod-udp-send</c> to
/// <c>pod-udp-sink</c>): continuity as a user sees it while a node is replaced.
/// </summary>
internal sealed record DatagramStream(NodeProcess Sink, NodeProcess Sender)
{
    /// <summary>Starts the sink in pod <paramref name="to"/>, then the sender in pod <paramref name="from"/> (to the IPv6 pod address with <paramref name="ipv6"/>).</summary>
    public static DatagramStream Start(Cluster c, int from, int to, int datagrams, bool ipv6 = false)
    {
        string count = datagrams.ToString(CultureInfo.InvariantCulture), port = ipv6 ? "5402" : "5401";
        NodeProcess sink = c.Topology.Start(c.Topology.Pod(to), [.. SelfCommand.Prefix(), "pod-udp-sink", "--port", port, "--count", count], $"udp-sink{to}");
        Assert.NotNull(sink.WaitForLine("listening", TimeSpan.FromSeconds(10)));
        string target = ipv6 ? $"[{Topology.PodIpv6(to)}]:{port}" : $"{Topology.PodIp(to)}:{port}";
        NodeProcess sender = c.Topology.Start(c.Topology.Pod(from),
            [.. SelfCommand.Prefix(), "pod-udp-send", "--to", target, "--count", count, "--interval-ms", "1"], $"udp-send{from}");
        return new DatagramStream(sink, sender);
    }

    /// <summary>Waits for both ends, writes the sink's count to <paramref name="output"/> and asserts nothing was lost or reordered.</summary>
    public void AssertAllArrived(ITestOutputHelper output, string way)
    {
        Assert.True(Sender.WaitForExit(TimeSpan.FromSeconds(30)), Sender.Output);
        Assert.True(Sink.WaitForExit(TimeSpan.FromSeconds(30)), Sink.Output);
        Match m = Regex.Match(Sink.Output, @"^received=(\d+) lost=(\d+) reordered=(\d+) duplicates=(\d+) longest_gap_ms=([\d.]+).*$", RegexOptions.Multiline);
        Assert.True(m.Success, Sink.Output);
        output.WriteLine($"{way}: {m.Value}");
        Assert.Equal("0", m.Groups[2].Value); // lost
        Assert.Equal("0", m.Groups[3].Value); // reordered
    }
}
