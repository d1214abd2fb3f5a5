using Dataplane.TunTap.Native;

namespace Dataplane.TunTap;

/// <summary>
/// The bare sendmmsg loop both batch senders share (the UDP socket, the packet socket), with the
/// errors it meets sorted once into what they mean (<see cref="SendFailure"/>), as Kestrel's
/// <c>SocketConnection</c> sorts errors around a bare loop and wireguard-go's
/// <c>conn/errors_linux.go</c> names the one that turns GSO off. The loop handles what needs no
/// decision (a signal, a full buffer for a few short waits) and returns at anything else: the
/// edge decides what a refused message or unsupported segmentation costs it.
/// </summary>
internal static unsafe class MessageSender
{
    public static SendFailure Classify(int errno, bool segmented, RoomPolicy policy) => errno switch
    {
        Errno.EINTR => SendFailure.Interrupted,
        Errno.EAGAIN => SendFailure.NoRoom,
        Errno.ENOBUFS when policy.NoBuffersMeansFull => SendFailure.NoRoom,
        Errno.EIO when segmented => SendFailure.SegmentationUnsupported,
        _ => SendFailure.MessageRefused,
    };

    /// <summary>
    /// Sends messages <paramref name="next"/> to <paramref name="count"/>-1 of <paramref name="tx"/>
    /// until all are sent (returns <paramref name="count"/>) or one fails: returns its index, with
    /// the errno and what it means (never <see cref="SendFailure.Interrupted"/>; <see cref="SendFailure.NoRoom"/>
    /// only after the policy's waits). <paramref name="gso"/>: messages carrying several datagrams are UDP_SEGMENT ones.
    /// </summary>
    public static int SendUntilFailure(int fd, MessageVector tx, int next, int count, RoomPolicy policy, bool gso,
        out SendFailure failure, out int errno)
    {
        int waits = 0;
        while (next < count)
        {
            int sent = NativeMethods.sendmmsg(fd, tx.Msgs + next, (uint)(count - next), 0);
            if (sent > 0)
            {
                next += sent;
                waits = 0;
                continue;
            }
            errno = Errno.Last;
            failure = Classify(errno, gso && tx.MessageSlots[next] > 1, policy);
            if (failure == SendFailure.Interrupted)
            {
                continue;
            }
            if (failure == SendFailure.NoRoom && waits++ < policy.Waits)
            {
                Poll.WaitWritable(fd, policy.WaitMs);
                continue;
            }
            return next;
        }
        failure = default;
        errno = 0;
        return count;
    }
}
