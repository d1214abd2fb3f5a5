using System.Globalization;
using System.Net.Sockets;
using System.Text;
using Dataplane.TunTap;
using static Tmds.Linux.LibC;

namespace Dataplane.Node;

/// <summary>
/// The hand-over protocol, on a connection to the running node's control socket (root only, the
/// peer checked with SO_PEERCRED as for every control request). Lock-step: each side sends one
/// message (one line, descriptors attached with SCM_RIGHTS where there are some) and waits for the
/// other's, so a message is always read whole and its descriptors with it.
///
/// <code>
/// successor                         predecessor (the running node)
/// HANDOVER 1 1                 →    (the versions the successor speaks, lowest and highest)
///                              ←    OFFER version=1 pid=.. device=.. queues=.. ... | REFUSED why
/// SEND q        (each queue)   →
///                              ←    QUEUE q roles=device,receive4,send4 + those descriptors
/// (checks the offer, adopts the descriptors, builds its loops; or ABORT why)
/// STOP q        (each queue)   →    stops queue q: its loops finish the batch they read, then read no more
///                              ←    STOPPED q   (the successor starts its loops on queue q)
/// DONE                         →
///                              ←    BYE         (the predecessor exits 0 and removes nothing)
/// </code>
///
/// Nothing is lost in between: a stopped queue's packets wait in the TUN's ring and the sockets'
/// receive queues, which stay attached because the descriptors are passed, never closed and
/// reopened. If the successor goes away before DONE, the predecessor starts the queues it had
/// stopped again and carries on; if the predecessor goes away, the successor starts every queue.
/// The version makes a release able to hand over to the next and back: the predecessor answers
/// with the highest version both speak, and a reader ignores the offer's keys it does not know.
/// </summary>
internal sealed class HandoverChannel(Socket socket) : IDisposable
{
    /// <summary>The versions of the protocol this release speaks.</summary>
    public const int LowestVersion = 1, HighestVersion = 1;

    /// <summary>How long either side waits for the other's next message before it gives up.</summary>
    public const int ReplyTimeoutMs = 10_000;

    public const string Request = "HANDOVER";

    private readonly Socket _socket = socket;

    private int Fd => (int)_socket.Handle;

    /// <summary>The process at the other end.</summary>
    public PeerCredentials? Peer => PeerCredentials.Of(_socket);

    public void Send(string line, ReadOnlySpan<int> descriptors = default) =>
        DescriptorPassing.Send(Fd, Encoding.ASCII.GetBytes(line + "\n"), descriptors);

    /// <summary>
    /// The other side's next message and the descriptors that came with it (the caller owns them).
    /// <see cref="EndOfStreamException"/> when the other side closed, <see cref="TimeoutException"/>
    /// when it said nothing for <see cref="ReplyTimeoutMs"/>.
    /// </summary>
    public (string Line, int[] Descriptors) Receive()
    {
        byte[] buffer = new byte[8192];
        int[] descriptors = new int[DescriptorPassing.MaxDescriptors];
        int length = DescriptorPassing.Receive(Fd, buffer, descriptors, out int count, ReplyTimeoutMs);
        int[] got = descriptors[..count];
        if (length == 0)
        {
            CloseAll(got);
            throw new EndOfStreamException("the other process closed the connection");
        }
        return (Encoding.ASCII.GetString(buffer, 0, length).TrimEnd('\n'), got);
    }

    /// <summary>The next message, which must be <paramref name="verb"/> (with <paramref name="queue"/> when given) and carry no descriptor.</summary>
    public string Expect(string verb, int? queue = null)
    {
        (string line, int[] descriptors) = Receive();
        CloseAll(descriptors);
        string[] words = line.Split(' ');
        if (words[0] != verb || queue is int q && (words.Length < 2 || words[1] != q.ToString(CultureInfo.InvariantCulture)))
        {
            throw new FormatException($"expected {verb}{(queue is null ? "" : $" {queue}")}, got '{HandoverOffer.Shorten(line)}'");
        }
        return line;
    }

    public static void CloseAll(IEnumerable<int> descriptors)
    {
        foreach (int fd in descriptors)
        {
            if (fd >= 0)
            {
                close(fd);
            }
        }
    }

    public void Dispose() => _socket.Dispose();
}
