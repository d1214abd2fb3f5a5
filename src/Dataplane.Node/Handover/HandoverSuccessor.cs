using System.Globalization;
using System.Net.Sockets;
using Serilog;

namespace Dataplane.Node;

/// <summary>
/// The starting node's side of a hand-over (the protocol: <see cref="HandoverChannel"/>). The plan
/// asks once it has read its configuration and taken its lease (<see cref="Ask"/>): the running
/// node's offer must match this start in everything its descriptors were made with and in the
/// lease, else the start is refused in one line and the running node carries on. Then
/// <see cref="TakeQueues"/> receives every queue's descriptors (the running node still forwards),
/// and <see cref="MoveQueue"/> moves one queue at a time: the running node stops it, this node
/// starts it. <see cref="Finish"/> lets the running node go. Descriptors received and not adopted
/// are closed at <see cref="Dispose"/>.
/// </summary>
internal sealed class HandoverSuccessor : IDisposable
{
    private readonly HandoverChannel _channel;
    private readonly List<HandedQueue> _queues = [];
    private bool _gone;

    private HandoverSuccessor(HandoverChannel channel, HandoverOffer offer, string predecessor)
    {
        _channel = channel;
        Offer = offer;
        Predecessor = predecessor;
    }

    public HandoverOffer Offer { get; }

    /// <summary>"pid 4242" (or what the kernel lets us see of it).</summary>
    public string Predecessor { get; }

    /// <summary>
    /// Asks the node whose control socket is at <paramref name="path"/> for a hand-over, and checks
    /// its offer against <paramref name="ours"/> (this start, as it would make the device).
    /// A <see cref="ConfigException"/> when there is no hand-over to have (an older release, a
    /// refusal, an offer that differs); null when nobody answers at the path any more.
    /// </summary>
    public static HandoverSuccessor? Ask(string path, HandoverOffer ours)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Connect(new UnixDomainSocketEndPoint(path));
        }
        catch (SocketException)
        {
            socket.Dispose();
            return null; // it stopped meanwhile: a plain start
        }
        var channel = new HandoverChannel(socket);
        try
        {
            return Negotiate(channel, path, ours);
        }
        catch
        {
            channel.Dispose();
            throw;
        }
    }

    private static HandoverSuccessor Negotiate(HandoverChannel channel, string path, HandoverOffer ours)
    {
        PeerCredentials? peer = channel.Peer;
        string who = peer?.Pid is int pid and > 0 ? $"pid {pid}" : "its pid not visible here";
        string running = $"a node is already running on {ours.Device} ({who})";
        if (peer?.Uid is not 0)
        {
            throw new ConfigException($"{running}: its control socket {path} is not root's (uid {peer?.Uid}): no hand-over");
        }
        string line;
        try
        {
            channel.Send(string.Create(CultureInfo.InvariantCulture, $"{HandoverChannel.Request} {HandoverChannel.LowestVersion} {HandoverChannel.HighestVersion}"));
            (line, int[] fds) = channel.Receive();
            HandoverChannel.CloseAll(fds);
        }
        catch (Exception e) when (e is EndOfStreamException or TimeoutException or TunTap.NativeException)
        {
            throw new ConfigException($"{running}: it did not answer a hand-over ({e.Message}); stop it first, or choose --device and --control-socket");
        }
        if (line.StartsWith("REFUSED ", StringComparison.Ordinal))
        {
            throw new ConfigException($"{running} and refuses a hand-over: {line["REFUSED ".Length..]}");
        }
        if (!line.StartsWith("OFFER ", StringComparison.Ordinal))
        {
            throw new ConfigException($"{running}: it does not offer a hand-over (a release before hand-overs?): stop it first, or choose --device and --control-socket");
        }
        HandoverOffer offer;
        try
        {
            offer = HandoverOffer.Parse(line);
        }
        catch (FormatException e)
        {
            throw Abort(channel, $"{running}: its hand-over offer is unreadable: {e.Message}");
        }
        IReadOnlyList<string> differences = ours.DifferencesFrom(offer);
        if (differences.Count > 0)
        {
            throw Abort(channel, $"{running} and differs from this start ({string.Join("; ", differences)}): a hand-over keeps the device and sockets "
                + "as they are, so start with the same flags and lease, or stop it first");
        }
        return new HandoverSuccessor(channel, offer, who);
    }

    /// <summary>Tells the running node why we go (it carries on), and returns the one line for our exit.</summary>
    private static ConfigException Abort(HandoverChannel channel, string why)
    {
        try
        {
            channel.Send($"ABORT {why}");
        }
        catch (TunTap.NativeException)
        {
        }
        return new ConfigException(why);
    }

    /// <summary>Every queue's descriptors, received while the running node still forwards.</summary>
    public IReadOnlyList<HandedQueue> TakeQueues()
    {
        for (int q = 0; q < Offer.Queues; q++)
        {
            try
            {
                _channel.Send(string.Create(CultureInfo.InvariantCulture, $"SEND {q}"));
                (string line, int[] fds) = _channel.Receive();
                _queues.Add(HandedQueue.Read(q, line, fds));
            }
            catch (Exception e) when (e is EndOfStreamException or TimeoutException or TunTap.NativeException)
            {
                throw new ConfigException($"hand-over: {Predecessor} did not pass queue {q} ({e.Message}); start again");
            }
        }
        return _queues;
    }

    /// <summary>
    /// Asks the running node to stop queue <paramref name="q"/> (it returns once its loops have
    /// finished what they read). False when the running node went away: every queue is ours then.
    /// </summary>
    public bool MoveQueue(int q, ILogger log)
    {
        if (_gone)
        {
            return false;
        }
        try
        {
            _channel.Send(string.Create(CultureInfo.InvariantCulture, $"STOP {q}"));
            _channel.Expect("STOPPED", q);
            return true;
        }
        catch (Exception e) when (e is EndOfStreamException or TimeoutException or FormatException or TunTap.NativeException)
        {
            _gone = true;
            log.Warning("Hand-over: {Predecessor} went away while stopping queue {Queue} ({Error}); this node runs every queue", Predecessor, q, e.Message);
            return false;
        }
    }

    /// <summary>Every queue runs here: the running node may go (and removes nothing).</summary>
    public void Finish(ILogger log)
    {
        if (_gone)
        {
            return;
        }
        try
        {
            _channel.Send("DONE");
            _channel.Expect("BYE");
        }
        catch (Exception e) when (e is EndOfStreamException or TimeoutException or FormatException or TunTap.NativeException)
        {
            log.Warning("Hand-over: {Predecessor} did not say goodbye ({Error})", Predecessor, e.Message);
        }
    }

    public void Dispose()
    {
        foreach (HandedQueue q in _queues)
        {
            q.CloseUntaken();
        }
        _channel.Dispose();
    }
}

/// <summary>One queue's descriptors as the running node passed them, by role; each is taken once (by the edge that adopts it).</summary>
internal sealed class HandedQueue
{
    public const string Device = "device", Receive4 = "receive4", Receive6 = "receive6", Send4 = "send4", Send6 = "send6";

    private readonly Dictionary<string, int> _descriptors;

    private HandedQueue(int index, Dictionary<string, int> descriptors)
    {
        Index = index;
        _descriptors = descriptors;
    }

    public int Index { get; }

    /// <summary>A queue's descriptors by role, as systemd kept them (<see cref="DescriptorStore"/>).</summary>
    public static HandedQueue Of(int index, Dictionary<string, int> descriptors) => new(index, descriptors);

    public bool Has(string role) => _descriptors.ContainsKey(role);

    /// <summary>Reads "QUEUE q roles=device,receive4,send4" and its descriptors (closed if the message is wrong).</summary>
    public static HandedQueue Read(int q, string line, int[] fds)
    {
        string[] words = line.Split(' ');
        string[] roles = words.Length == 3 && words[0] == "QUEUE" && words[1] == q.ToString(CultureInfo.InvariantCulture) && words[2].StartsWith("roles=", StringComparison.Ordinal)
            ? words[2]["roles=".Length..].Split(',') : [];
        if (roles.Length != fds.Length || !roles.Contains(Device) || roles.Distinct().Count() != roles.Length)
        {
            HandoverChannel.CloseAll(fds);
            throw new ConfigException($"hand-over: queue {q} arrived as '{HandoverOffer.Shorten(line)}' with {fds.Length} descriptors");
        }
        return new HandedQueue(q, roles.Zip(fds).ToDictionary(p => p.First, p => p.Second));
    }

    /// <summary>The descriptor of <paramref name="role"/>, now the caller's; null when the queue has none.</summary>
    public int? Take(string role)
    {
        if (!_descriptors.Remove(role, out int fd))
        {
            return null;
        }
        return fd;
    }

    public void CloseUntaken()
    {
        HandoverChannel.CloseAll(_descriptors.Values);
        _descriptors.Clear();
    }
}
