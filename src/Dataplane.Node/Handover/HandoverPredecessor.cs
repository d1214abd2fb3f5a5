using System.Globalization;
using System.Net.Sockets;
using Dataplane.Engine;
using Serilog;

namespace Dataplane.Node;

/// <summary>
/// The running node's side of a hand-over (the protocol: <see cref="HandoverChannel"/>): offered
/// each control-socket request, it takes a <c>HANDOVER</c> request and answers it on the control
/// socket's thread (the packet loops never wait for it): the offer, each queue's descriptors, then
/// queue by queue a stop of its loops. When the successor says DONE, <see cref="HandedOver"/> is
/// set and the node exits 0, leaving the device, its address, route and rules to the successor.
/// A hand-over that breaks off (the successor refused the offer, failed, went away or went quiet
/// for <see cref="HandoverChannel.ReplyTimeoutMs"/>) restarts every queue it had stopped: the node
/// carries on as before.
/// </summary>
internal sealed class HandoverPredecessor(HandoverOffer offer, NodeDevice device, DataplaneEngine engine, ILogger log) : IDisposable
{
    private readonly ManualResetEventSlim _handedOver = new();
    private int _busy;

    /// <summary>Set once a successor has taken every queue.</summary>
    public WaitHandle HandedOver => _handedOver.WaitHandle;

    /// <summary>The process that took over ("pid 4242").</summary>
    public string Successor { get; private set; } = "";

    /// <summary>True while a hand-over is being answered (a stop signal waits for its end).</summary>
    public bool InProgress => Volatile.Read(ref _busy) != 0;

    /// <summary>Takes the connection when <paramref name="line"/> asks for a hand-over (and answers it before returning).</summary>
    public bool TryServe(Socket client, string line)
    {
        string[] words = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (words.Length == 0 || words[0] != HandoverChannel.Request)
        {
            return false;
        }
        using var channel = new HandoverChannel(client);
        int pid = channel.Peer?.Pid ?? 0;
        string who = pid > 0 ? $"pid {pid}" : "a process in another PID namespace";
        if (Refusal(words, out int version) is string refused)
        {
            log.Warning("Hand-over to {Successor} refused: {Why}", who, refused);
            Send(channel, $"REFUSED {refused}");
            return true;
        }
        Interlocked.Exchange(ref _busy, 1);
        try
        {
            Serve(channel, version, who);
        }
        finally
        {
            Interlocked.Exchange(ref _busy, 0);
        }
        return true;
    }

    /// <summary>Why this node cannot hand over now, or null and the <paramref name="version"/> both sides speak (the highest).</summary>
    private string? Refusal(string[] request, out int version)
    {
        version = 0;
        if (_handedOver.IsSet)
        {
            return $"this node already handed over to {Successor}";
        }
        if (engine.Failure is not null)
        {
            return "this node is stopping after a failure";
        }
        if (request.Length < 3 || !int.TryParse(request[1], CultureInfo.InvariantCulture, out int lowest)
            || !int.TryParse(request[2], CultureInfo.InvariantCulture, out int highest))
        {
            return $"expected '{HandoverChannel.Request} LOWEST HIGHEST' (the protocol versions the successor speaks)";
        }
        version = Math.Min(highest, HandoverChannel.HighestVersion);
        return version < Math.Max(lowest, HandoverChannel.LowestVersion)
            ? $"no protocol version in common: the successor speaks {lowest}-{highest}, this node {HandoverChannel.LowestVersion}-{HandoverChannel.HighestVersion}"
            : null;
    }

    private void Serve(HandoverChannel channel, int version, string who)
    {
        var stopped = new List<int>();
        try
        {
            channel.Send((offer with { Version = version }).Format());
            while (Answer(channel, stopped, who))
            {
            }
        }
        catch (Exception e) when (e is EndOfStreamException or TimeoutException or FormatException or TunTap.NativeException or SocketException)
        {
            log.Warning("Hand-over to {Successor} broke off ({Error}){Resume}", who, e.Message,
                stopped.Count == 0 ? "" : $": queues {string.Join(", ", stopped)} resume here");
        }
        finally
        {
            if (!_handedOver.IsSet)
            {
                stopped.ForEach(engine.StartQueue);
            }
        }
    }

    /// <summary>Answers one message of the successor; false when the exchange is over.</summary>
    private bool Answer(HandoverChannel channel, List<int> stopped, string who)
    {
        (string line, int[] descriptors) = channel.Receive();
        HandoverChannel.CloseAll(descriptors); // the successor sends none
        string[] words = line.Split(' ', 2);
        int queue = words.Length > 1 && int.TryParse(words[1], CultureInfo.InvariantCulture, out int q) && q >= 0 && q < device.Queues.Count ? q : -1;
        switch (words[0])
        {
            case "SEND" when queue >= 0:
                (string roles, int[] fds) = device.HandoverDescriptors(queue);
                channel.Send($"QUEUE {queue} roles={roles}", fds);
                return true;
            case "STOP" when queue >= 0:
                engine.StopQueue(queue);
                stopped.Add(queue);
                channel.Send($"STOPPED {queue}");
                return true;
            case "DONE":
                Successor = who;
                _handedOver.Set(); // before BYE: once the successor reads it, this node must not resume anything
                channel.Send("BYE");
                log.Information("Handed over to {Successor}: {Queues} queues, the device and the sockets are its now", who, stopped.Count);
                return false;
            case "ABORT":
                log.Warning("Hand-over to {Successor} abandoned by it: {Why}", who, words.Length > 1 ? words[1] : "no reason given");
                return false;
            default:
                throw new FormatException($"unexpected message '{HandoverOffer.Shorten(line)}'");
        }
    }

    private static void Send(HandoverChannel channel, string line)
    {
        try
        {
            channel.Send(line);
        }
        catch (TunTap.NativeException)
        {
            // It went away: nothing to tell.
        }
    }

    public void Dispose() => _handedOver.Dispose();
}
