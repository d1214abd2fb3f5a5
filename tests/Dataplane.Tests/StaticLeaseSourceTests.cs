using System.Diagnostics;
using Dataplane.Lab;
using Dataplane.Engine;
using Dataplane.Leases;
using Serilog;
using Dataplane.TestSupport;

namespace Dataplane.Tests;

public sealed class StaticLeaseSourceTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("dp-leases-").FullName;
    private readonly List<string> _log = [];

    public void Dispose() => Directory.Delete(_dir, true);

    private ILogger Logger() => new LoggerConfiguration().WriteTo.Sink(new ListLogSink(_log)).CreateLogger();

    [Fact]
    public void Edits_are_applied_live_and_logged_in_flanneld_words()
    {
        string path = Path.Combine(_dir, "cluster.json");
        new ClusterFileBuilder().Node(1).Node(2).WriteTo(path);
        SubnetTable? published = null;
        using var source = new StaticLeaseSource(path, Logger());
        Watch(source, t => Volatile.Write(ref published, t));

        new ClusterFileBuilder().Node(1).Node(2).Node(3).WriteTo(path);
        WaitFor(() => source.Generation >= 1);
        Assert.NotNull(published!.Lookup(Packets.Ip("10.244.3.9")));
        Assert.Contains("Subnet added: 10.244.3.0/24 via 192.0.2.3", Log());

        new ClusterFileBuilder().Node(1).Node(3).WriteTo(path);
        WaitFor(() => source.Generation >= 2);
        Assert.Null(published!.Lookup(Packets.Ip("10.244.2.9")));
        Assert.Contains("Subnet removed: 10.244.2.0/24", Log());

        // A broken edit keeps the last good table.
        File.WriteAllText(path, "{ not json");
        WaitFor(() => Log().Any(l => l.Contains("Ignoring the edit", StringComparison.Ordinal)));
        Assert.Equal(2, source.Generation);
        Assert.NotNull(published!.Lookup(Packets.Ip("10.244.3.9")));
    }

    [Fact]
    public void A_file_that_keeps_changing_is_still_applied_every_settle_delay()
    {
        string path = Path.Combine(_dir, "cluster.json");
        new ClusterFileBuilder().Node(1).Node(2).WriteTo(path);
        int published = 0;
        using var source = new StaticLeaseSource(path, Logger());
        Watch(source, _ => Interlocked.Increment(ref published));
        var until = DateTime.UtcNow.AddSeconds(2);
        int edits = 0;
        while (DateTime.UtcNow < until)
        {
            var b = new ClusterFileBuilder().Node(1).Node(2);
            (edits++ % 2 == 0 ? b.Node(3) : b).WriteTo(path);
            Thread.Sleep(25);
        }
        // Every read is offered to the tables (which publish only real changes): count the reads.
        Assert.True(source.Generation >= 5, $"{edits} edits over 2 s, {source.Generation} read and offered ({published} changed the peers)");
        source.Dispose();
        source.Dispose(); // run disposes it explicitly and again through 'using'
    }

    /// <summary>The source's lifecycle as the node runs it: start, acquire our lease (192.0.2.1), first table, watch.</summary>
    private void Watch(ILeaseSource source, Action<SubnetTable> publish)
    {
        ClusterSnapshot s = source.Start();
        LeaseRecord ours = source.Acquire(s, new LeaseRequest(Packets.Ip("192.0.2.1"), BackendKind.Vxlan, 1));
        var tables = new PeerTables(new NodeIdentity(ours, s.Config, BackendKind.Vxlan, 8472, 1), publish, Logger());
        tables.First(s);
        source.Watch(tables);
    }

    [Fact]
    public void Acquire_finds_our_lease_by_public_ip_and_says_what_is_missing()
    {
        string path = Path.Combine(_dir, "cluster.json");
        File.WriteAllText(path, """
            {"config": {"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}},
             "subnets": {"10.244.1.0-24": {"PublicIP": "192.0.2.1"}, "10.244.2.0-24": {"PublicIP": "192.0.2.2", "BackendType": "vxlan", "BackendData": {"VNI": 1, "VtepMAC": "0e:00:5e:00:00:02"}}}}
            """);
        using var source = new StaticLeaseSource(path, Logger());
        ClusterSnapshot s = source.Start();
        Assert.Equal("10.244.2.0/24", source.Acquire(s, new LeaseRequest(Packets.Ip("192.0.2.2"), BackendKind.Vxlan, 1)).Subnet.ToString());
        Assert.Equal("10.244.1.0/24", source.Acquire(s, new LeaseRequest(Packets.Ip("192.0.2.1"), BackendKind.Udp, 1)).Subnet.ToString());
        Assert.Equal($"lease file {path}: our lease 10.244.1.0-24 has no BackendData.VtepMAC, which vxlan needs",
            Assert.Throws<ConfigException>(() => source.Acquire(s, new LeaseRequest(Packets.Ip("192.0.2.1"), BackendKind.Vxlan, 1))).Message);
        Assert.Equal($"lease file {path}: no lease has PublicIP 192.0.2.9 (this node)",
            Assert.Throws<ConfigException>(() => source.Acquire(s, new LeaseRequest(Packets.Ip("192.0.2.9"), BackendKind.Udp, 1))).Message);
    }

    private List<string> Log()
    {
        lock (_log)
        {
            return [.. _log];
        }
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
}
