using System.Globalization;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;

namespace Dataplane.Capture;

/// <summary>
/// <c>dataplane capture</c>: asks a running node for a capture over its control socket and writes
/// the pcapng stream to a file or to stdout (<c>-w -</c>, for <c>| tshark -r -</c>). Ends when the
/// node ends it (count, duration, node stopping) or on Ctrl-C.
/// </summary>
internal static class CaptureClient
{
    public static int Run(string socketPath, string output, long count, double seconds, string? peer, bool dropsOnly, int snapLength, TextWriter error)
    {
        if (CaptureFilter.Parse(peer, dropsOnly) is null)
        {
            error.WriteLine($"dataplane: --peer {peer}: not an IPv4 address or subnet like 10.244.2.0/24");
            return 1;
        }
        // Ctrl-C and SIGTERM end the capture cleanly from the first moment: whatever arrived is kept.
        using var stop = new CancellationTokenSource();
        using PosixSignalRegistration sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });
        using PosixSignalRegistration sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Connect(new UnixDomainSocketEndPoint(socketPath));
        }
        catch (SocketException e)
        {
            error.WriteLine(e.SocketErrorCode == SocketError.AccessDenied
                ? $"dataplane: {socketPath}: permission denied: only root may capture (a capture is every pod's traffic)"
                : $"dataplane: no node answers on {socketPath} ({e.SocketErrorCode})");
            return 1;
        }
        string request = string.Create(CultureInfo.InvariantCulture,
            $"CAPTURE count={count} duration={seconds} snaplen={snapLength} drops={(dropsOnly ? 1 : 0)}{(peer is null ? "" : $" peer={peer}")}\n");
        socket.Send(Encoding.ASCII.GetBytes(request));
        using var stream = new NetworkStream(socket, ownsSocket: false);
        byte[] head = new byte[4];
        int got = 0;
        while (got < head.Length)
        {
            int n = stream.Read(head, got, head.Length - got);
            if (n == 0)
            {
                break;
            }
            got += n;
        }
        if (got < head.Length || head.AsSpan().SequenceEqual("ERR "u8))
        {
            string rest = new StreamReader(stream, Encoding.UTF8).ReadLine() ?? "";
            error.WriteLine(got < head.Length ? $"dataplane: {socketPath}: the node closed the connection" : $"dataplane: {rest}");
            return 1;
        }
        // Unbuffered: the file grows as packets arrive (a reader may follow it), and nothing waits in a buffer at the end.
        using Stream sink = output == "-" ? Console.OpenStandardOutput()
            : new FileStream(output, FileMode.Create, FileAccess.Write, FileShare.Read, bufferSize: 0);
        sink.Write(head);
        try
        {
            // Until the node ends the capture (count, duration, stopping) or we are interrupted; the
            // node sees our end close and ends its side too.
            stream.CopyToAsync(sink, stop.Token).GetAwaiter().GetResult();
        }
        catch (Exception e) when (e is OperationCanceledException or IOException && stop.IsCancellationRequested)
        {
        }
        finally
        {
            sink.Flush();
        }
        return 0;
    }
}
