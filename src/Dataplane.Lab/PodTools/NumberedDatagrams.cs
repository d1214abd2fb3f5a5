using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Dataplane.Lab.PodTools;

/// <summary>
/// Continuity as a user sees it, one datagram at a time (hidden commands <c>pod-udp-send</c> and
/// <c>pod-udp-sink</c>): the sender sends <c>count</c> 64-byte UDP datagrams numbered 0, 1, 2...
/// (the number in the first 4 bytes) one every <c>interval</c> ms on its own clock; the sink counts
/// what came: received, lost (numbers never seen), reordered (a number below one already seen),
/// duplicated, and the longest gap between two arrivals. It ends when the last number came, or when
/// nothing came for <c>idle</c> seconds after the first.
/// </summary>
internal static class NumberedDatagrams
{
    public const int Size = 64;

    /// <summary>Prints "sent count=N seconds=T".</summary>
    public static int Send(IPEndPoint to, int count, double intervalMs, TextWriter output)
    {
        using var socket = new Socket(to.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        byte[] datagram = new byte[Size];
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < count; i++)
        {
            double due = i * intervalMs;
            while (clock.Elapsed.TotalMilliseconds < due)
            {
                if (due - clock.Elapsed.TotalMilliseconds > 1.5)
                {
                    Thread.Sleep(1);
                }
                else
                {
                    Thread.SpinWait(50);
                }
            }
            BinaryPrimitives.WriteInt32BigEndian(datagram, i);
            try
            {
                socket.SendTo(datagram, to);
            }
            catch (SocketException)
            {
                // No route for a moment (an ICMP error of an earlier datagram): that datagram counts as lost.
            }
        }
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"sent count={count} seconds={clock.Elapsed.TotalSeconds:F3}"));
        return 0;
    }

    /// <summary>Prints "listening port=P", then at the end "received=N lost=L reordered=R duplicates=D longest_gap_ms=G missing=the first 10 lost numbers".</summary>
    public static int Sink(int port, int count, double idleSeconds, TextWriter output)
    {
        using var socket = new Socket(AddressFamily.InterNetworkV6, SocketType.Dgram, ProtocolType.Udp) { DualMode = true };
        socket.ReceiveBufferSize = 4 << 20;
        socket.Bind(new IPEndPoint(IPAddress.IPv6Any, port));
        output.WriteLine($"listening port={port}");
        output.Flush();
        bool[] seen = new bool[count];
        int received = 0, reordered = 0, duplicates = 0, highest = -1;
        double longestGapMs = 0;
        var clock = Stopwatch.StartNew();
        double? last = null;
        byte[] buffer = new byte[2048];
        socket.ReceiveTimeout = 60_000; // until the first datagram
        while (highest < count - 1)
        {
            int n;
            try
            {
                n = socket.Receive(buffer);
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.TimedOut or SocketError.WouldBlock)
            {
                break;
            }
            double now = clock.Elapsed.TotalMilliseconds;
            if (last is double before)
            {
                longestGapMs = Math.Max(longestGapMs, now - before);
            }
            last = now;
            socket.ReceiveTimeout = (int)(idleSeconds * 1000);
            int number = n >= 4 ? BinaryPrimitives.ReadInt32BigEndian(buffer) : -1;
            if (number < 0 || number >= count)
            {
                continue;
            }
            if (seen[number])
            {
                duplicates++;
                continue;
            }
            seen[number] = true;
            received++;
            if (number < highest)
            {
                reordered++;
            }
            highest = Math.Max(highest, number);
        }
        string missing = string.Join(',', Enumerable.Range(0, count).Where(i => !seen[i]).Take(10));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"received={received} lost={count - received} reordered={reordered} duplicates={duplicates} longest_gap_ms={longestGapMs:F1} missing={missing}"));
        return 0;
    }
}
