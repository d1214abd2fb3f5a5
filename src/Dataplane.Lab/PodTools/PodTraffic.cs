using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using System.Security.Cryptography;

namespace Dataplane.Lab.PodTools;

/// <summary>
/// Traffic tools run inside pod namespaces by the demo and the tests (hidden commands
/// <c>pod-sink</c>, <c>pod-send</c>, <c>pod-ping</c>), so the demo needs nothing beyond iproute2 and
/// .NET. The sender's bytes come from a seeded generator; both ends print the SHA-256 of what they
/// sent or received, so a test compares them.
/// </summary>
internal static class PodTraffic
{
    private const int ChunkSize = 64 * 1024;

    /// <summary>Accepts one connection (IPv4 or IPv6), reads to EOF; prints "received bytes=N seconds=T sha256=H".</summary>
    public static int Sink(int port, int timeoutSeconds, TextWriter output)
    {
        using var listener = new TcpListener(IPAddress.IPv6Any, port);
        listener.Server.DualMode = true;
        listener.Server.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        listener.Start();
        output.WriteLine($"listening port={port}");
        output.Flush();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(timeoutSeconds));
        using Socket s = listener.AcceptSocketAsync(cts.Token).AsTask().GetAwaiter().GetResult();
        s.ReceiveTimeout = timeoutSeconds * 1000;
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        byte[] buf = new byte[ChunkSize];
        long total = 0;
        var sw = Stopwatch.StartNew();
        int n;
        while ((n = s.Receive(buf)) > 0)
        {
            hash.AppendData(buf, 0, n);
            total += n;
        }
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"received bytes={total} seconds={sw.Elapsed.TotalSeconds:F3} sha256={Convert.ToHexStringLower(hash.GetHashAndReset())}"));
        return 0;
    }

    /// <summary>Sends <paramref name="bytes"/> bytes, or for <paramref name="seconds"/>; prints "sent bytes=N seconds=T gbps=G sha256=H".</summary>
    public static int Send(string host, int port, long? bytes, double? seconds, TextWriter output)
    {
        IPAddress address = IPAddress.Parse(host);
        using var s = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                s.Connect(address, port);
                break;
            }
            catch (SocketException) when (deadline.Elapsed < TimeSpan.FromSeconds(10))
            {
                Thread.Sleep(100);
            }
        }
        s.SendTimeout = 30_000;
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        byte[] buf = new byte[ChunkSize];
        ulong state = 0x9E3779B97F4A7C15;
        long total = 0;
        long limit = bytes ?? long.MaxValue;
        TimeSpan duration = seconds is null ? TimeSpan.MaxValue : TimeSpan.FromSeconds(seconds.Value);
        var sw = Stopwatch.StartNew();
        while (total < limit && sw.Elapsed < duration)
        {
            Fill(buf, ref state);
            int n = (int)Math.Min(buf.Length, limit - total);
            s.Send(buf, 0, n, SocketFlags.None);
            hash.AppendData(buf, 0, n);
            total += n;
        }
        s.Shutdown(SocketShutdown.Send);
        // Wait for the receiver to close: every byte was taken.
        s.ReceiveTimeout = 30_000;
        try
        {
            while (s.Receive(buf) > 0)
            {
            }
        }
        catch (SocketException)
        {
        }
        double secs = sw.Elapsed.TotalSeconds;
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"sent bytes={total} seconds={secs:F3} gbps={total * 8 / secs / 1e9:F3} sha256={Convert.ToHexStringLower(hash.GetHashAndReset())}"));
        return 0;
    }

    private static void Fill(byte[] buf, ref ulong state)
    {
        Span<ulong> words = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(buf.AsSpan());
        for (int i = 0; i < words.Length; i++)
        {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            words[i] = state;
        }
    }

    /// <summary>ICMP echo (raw socket, needs root): one line per probe, then "ping sent=N received=M avg_ms=X".</summary>
    public static int Ping(string host, int count, TextWriter output)
    {
        using var ping = new Ping();
        var rtts = new List<double>();
        var sw = new Stopwatch();
        for (int i = 0; i < count; i++)
        {
            sw.Restart();
            PingReply reply = ping.Send(IPAddress.Parse(host), 2000);
            double ms = sw.Elapsed.TotalMilliseconds;
            if (reply.Status == IPStatus.Success)
            {
                rtts.Add(ms);
                output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"reply from {host}: seq={i} time={ms:F3} ms"));
            }
            else
            {
                output.WriteLine($"no reply from {host}: seq={i} {reply.Status} from {reply.Address}");
            }
            if (i + 1 < count)
            {
                Thread.Sleep(200);
            }
        }
        double avg = rtts.Count > 0 ? rtts.Average() : 0;
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"ping sent={count} received={rtts.Count} avg_ms={avg:F3}"));
        return rtts.Count > 0 ? 0 : 1;
    }
}
