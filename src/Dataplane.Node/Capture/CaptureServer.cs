using System.Globalization;
using System.Net.Sockets;
using System.Text;
using Serilog;

namespace Dataplane.Capture;

/// <summary>
/// The node's side of <c>dataplane capture</c>: a control-socket client that sends
/// <c>CAPTURE count=N duration=S peer=IP|SUBNET drops=1 snaplen=N</c> gets a capture of its own,
/// streamed as pcapng on that connection until the count or duration is reached, the client goes
/// away, or the node stops. Several may run at once. (Only root reaches the control socket.)
/// </summary>
internal static class CaptureServer
{
    public const int DefaultSnapLength = 65535;

    /// <summary>Takes the connection over if <paramref name="line"/> asks for a capture (true), even to refuse it with an <c>ERR</c> line.</summary>
    public static bool TryStart(Socket client, string line, CaptureHub hub, string overlayName, string underlayName, int maxPacket, ILogger log)
    {
        if (!line.StartsWith("CAPTURE", StringComparison.Ordinal))
        {
            return false;
        }
        if (!TryParse(line, out CaptureFilter? filter, out int snapLength, out long count, out TimeSpan duration, out string? error))
        {
            client.Send(Encoding.UTF8.GetBytes($"ERR {error}\n"));
            client.Dispose();
            return true;
        }
        var session = new CaptureSession(filter, snapLength, count, duration, maxPacket);
        hub.Add(session);
        log.Information("Capture started: {Request}", line);
        var thread = new Thread(() =>
        {
            client.ReceiveTimeout = 0;
            using var stream = new NetworkStream(client, ownsSocket: true);
            // The client closing its end (Ctrl-C) ends the capture even while no packet comes.
            _ = client.ReceiveAsync(new byte[1], SocketFlags.None).ContinueWith(_ => session.End(), TaskScheduler.Default);
            long written = session.WriteAsync(stream, overlayName, underlayName).GetAwaiter().GetResult();
            hub.Remove(session);
            log.Information("Capture ended: {Written} packets written, {Dropped} left out (the writer fell behind)", written, session.Dropped);
        })
        { Name = "capture", IsBackground = true };
        thread.Start();
        return true;
    }

    public static bool TryParse(string line, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out CaptureFilter? filter,
        out int snapLength, out long count, out TimeSpan duration, out string? error)
    {
        filter = null;
        snapLength = DefaultSnapLength;
        count = 0;
        duration = TimeSpan.Zero;
        error = null;
        string? peer = null;
        bool dropsOnly = false;
        foreach (string token in line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1))
        {
            string[] kv = token.Split('=', 2);
            string value = kv.Length == 2 ? kv[1] : "";
            bool ok = kv[0] switch
            {
                "count" => long.TryParse(value, CultureInfo.InvariantCulture, out count) && count >= 0,
                "duration" => double.TryParse(value, CultureInfo.InvariantCulture, out double s) && s >= 0 && (duration = TimeSpan.FromSeconds(s)) >= TimeSpan.Zero,
                "snaplen" => int.TryParse(value, CultureInfo.InvariantCulture, out snapLength) && snapLength is >= 64 and <= 262144,
                "drops" => (dropsOnly = value == "1") || value == "0",
                "peer" => (peer = value).Length > 0,
                _ => false,
            };
            if (!ok)
            {
                error = $"bad capture request part '{token}'";
                return false;
            }
        }
        filter = CaptureFilter.Parse(peer, dropsOnly);
        if (filter is null)
        {
            error = $"peer {peer}: not an IPv4 address or subnet";
            return false;
        }
        return true;
    }
}
