using System.Diagnostics;
using System.Net;
using Dataplane.Encap;
using Dataplane.TestSupport;

namespace Dataplane.TunTap.Tests;

/// <summary>
/// The edges' descriptors as handles: a stop wakes a loop blocked in poll at once, and a close from
/// another thread while a loop is inside a call waits for the call (the number is never reused
/// under it); a closed edge answers "nothing" instead of failing.
/// </summary>
public class DescriptorTests
{
    private static uint Ip(string s) => Ipv4Prefix.ToUInt32(IPAddress.Parse(s));

    /// <summary>Runs <paramref name="read"/> on a thread (a loop waiting for packets), then <paramref name="interrupt"/>; returns how long the read took to come back.</summary>
    private static TimeSpan BlockedThen(Func<int> read, Action interrupt)
    {
        int got = -1;
        var started = new ManualResetEventSlim();
        var sw = new Stopwatch();
        var loop = new Thread(() =>
        {
            started.Set();
            got = read();
            sw.Stop();
        });
        loop.Start();
        started.Wait();
        Thread.Sleep(200); // now inside poll, waiting up to 10 s
        sw.Start();
        interrupt();
        Assert.True(loop.Join(TimeSpan.FromSeconds(5)), "the blocked read did not return");
        Assert.Equal(0, got);
        return sw.Elapsed;
    }

    [Fact]
    public void Stop_waiting_wakes_a_tun_read_and_a_socket_receive_at_once_and_later_waits_too()
    {
        using var ns = new TestNamespace();
        var (tun, socket) = ns.Run(() => (TunDevice.Open("dpwake0", offload: true), UdpBatchSocket.Bind(new UdpEndpoint(Ip("127.0.0.1"), 18480), 8, offload: true)));
        using (tun)
        using (socket)
        {
            var batch = new PacketBatch(8, 2048);
            Assert.True(BlockedThen(() => tun.ReadBatch(batch, 10_000), tun.StopWaiting) < TimeSpan.FromMilliseconds(500));
            Assert.True(BlockedThen(() => socket.ReceiveBatch(batch, 10_000), socket.StopWaiting) < TimeSpan.FromMilliseconds(500));
            var sw = Stopwatch.StartNew();
            Assert.Equal(0, tun.ReadBatch(batch, 10_000));
            Assert.Equal(0, socket.ReceiveBatch(batch, 10_000));
            Assert.True(sw.Elapsed < TimeSpan.FromMilliseconds(500), "a wait after the stop blocked");
        }
    }

    [Fact]
    public void Closing_an_edge_under_a_blocked_loop_wakes_it_and_releases_every_descriptor()
    {
        using var ns = new TestNamespace();
        var (tun, socket) = ns.Run(() => (TunDevice.Open("dpwake1", offload: true), UdpBatchSocket.Bind(new UdpEndpoint(Ip("127.0.0.1"), 18481), 8, offload: true)));
        var batch = new PacketBatch(8, 2048);
        Assert.True(BlockedThen(() => tun.ReadBatch(batch, 10_000), tun.Dispose) < TimeSpan.FromMilliseconds(500));
        Assert.True(BlockedThen(() => socket.ReceiveBatch(batch, 10_000), socket.Dispose) < TimeSpan.FromMilliseconds(500));
        // Closed edges answer "nothing" (the loop is stopping), and a second close is harmless.
        Assert.Equal(0, tun.ReadBatch(batch, 10));
        Assert.Equal(0, tun.WriteBatch(batch));
        Assert.Equal(0, socket.ReceiveBatch(batch, 10));
        Assert.Equal(0, socket.SendBatch(batch));
        tun.Dispose();
        socket.Dispose();
        Assert.True(tun.Descriptor.IsClosed && socket.Descriptor.IsClosed);
        Assert.DoesNotContain("dpwake1", ns.Ip("link", "show")); // the last descriptor closed: the device is gone
    }

    [Fact]
    public void A_close_waits_for_the_call_in_progress()
    {
        // A descriptor entered for a call is not closed by Dispose until the call exits.
        bool closed = false;
        int number = Tmds.Linux.LibC.dup(0);
        Assert.True(number >= 0);
        var fd = new FileDescriptor(number, afterClose: () => Volatile.Write(ref closed, true));
        Assert.True(fd.TryEnter(out int entered));
        Assert.Equal(number, entered);
        fd.Dispose();
        Assert.False(Volatile.Read(ref closed), "closed while a call was using it");
        Assert.True(File.Exists($"/proc/self/fd/{number}"));
        Assert.False(fd.TryEnter(out _), "a closing descriptor was entered again");
        fd.Exit();
        Assert.True(Volatile.Read(ref closed), "not closed after the call returned");
    }
}
