using System.Diagnostics;
using Dataplane.Demo;
using Dataplane.Engine;
using Dataplane.Leases;
using Serilog;
using Serilog.Core;
using Serilog.Events;

namespace Dataplane.Tests;

public sealed class StaticLeaseSourceTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("dp-leases-").FullName;
    private readonly List<string> _log = [];

    public void Dispose() => Directory.Delete(_dir, true);

    private ILogger Logger() => new LoggerConfiguration().WriteTo.Sink(new ListSink(_log)).CreateLogger();

    [Fact]
    public void Edits_are_applied_live_and_logged_in_flanneld_words()
    {
        string path = Path.Combine(_dir, "cluster.json");
        new ClusterFileBuilder().Node(1).Node(2).WriteTo(path);
        ClusterSnapshot s = ClusterFile.Load(path);
        LeaseRecord ours = s.LeaseOf(Packets.Ip("192.0.2.1"))!;
        var node = new NodeIdentity(ours, s.Config, BackendKind.Vxlan, 8472, 1);
        SubnetTable initial = node.BuildTable(s, []);
        SubnetTable? published = null;
        using var source = new StaticLeaseSource(path, node, initial, t => Volatile.Write(ref published, t), Logger());

        new ClusterFileBuilder().Node(1).Node(2).Node(3).WriteTo(path);
        WaitFor(() => source.Generation >= 1);
        Assert.NotNull(published!.Lookup(Packets.Ip("10.244.3.9")));
        Assert.Contains("Subnet added: 10.244.3.0/24 via 192.0.2.3", _log);

        new ClusterFileBuilder().Node(1).Node(3).WriteTo(path);
        WaitFor(() => source.Generation >= 2);
        Assert.Null(published!.Lookup(Packets.Ip("10.244.2.9")));
        Assert.Contains("Subnet removed: 10.244.2.0/24", _log);

        // A broken edit keeps the last good table.
        File.WriteAllText(path, "{ not json");
        WaitFor(() => _log.Any(l => l.Contains("Ignoring the edit", StringComparison.Ordinal)));
        Assert.Equal(2, source.Generation);
        Assert.NotNull(published!.Lookup(Packets.Ip("10.244.3.9")));
    }

    [Fact]
    public void A_file_that_keeps_changing_is_still_applied_every_settle_delay()
    {
        string path = Path.Combine(_dir, "cluster.json");
        new ClusterFileBuilder().Node(1).Node(2).WriteTo(path);
        ClusterSnapshot s = ClusterFile.Load(path);
        var node = new NodeIdentity(s.LeaseOf(Packets.Ip("192.0.2.1"))!, s.Config, BackendKind.Vxlan, 8472, 1);
        int published = 0;
        using var source = new StaticLeaseSource(path, node, node.BuildTable(s, []), _ => Interlocked.Increment(ref published), Logger());
        var until = DateTime.UtcNow.AddSeconds(2);
        int edits = 0;
        while (DateTime.UtcNow < until)
        {
            var b = new ClusterFileBuilder().Node(1).Node(2);
            (edits++ % 2 == 0 ? b.Node(3) : b).WriteTo(path);
            Thread.Sleep(25);
        }
        Assert.True(published >= 5, $"{edits} edits over 2 s, {published} applied");
        source.Dispose();
        source.Dispose(); // run disposes it explicitly and again through 'using'
    }

    private static void WaitFor(Func<bool> condition)
    {
        var sw = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(sw.Elapsed < TimeSpan.FromSeconds(10), "timed out waiting for the lease file watcher");
            Thread.Sleep(20);
        }
    }

    private sealed class ListSink(List<string> lines) : ILogEventSink
    {
        public void Emit(LogEvent logEvent)
        {
            lock (lines)
            {
                lines.Add(logEvent.RenderMessage().Replace("\"", "", StringComparison.Ordinal));
            }
        }
    }
}
