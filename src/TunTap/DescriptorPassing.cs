using Dataplane.TunTap.Native;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace Dataplane.TunTap;

/// <summary>
/// Open file descriptions passed from one process to another over a Unix socket (SCM_RIGHTS), the
/// ground of a hand-over: a TUN queue or a UDP socket received this way is the same kernel object,
/// still attached, with the packets queued in it (closing and reopening would free them). One
/// message carries a few bytes of text and up to <see cref="MaxDescriptors"/> descriptors.
/// Received descriptors are close-on-exec (MSG_CMSG_CLOEXEC); when the control room was too small
/// (MSG_CTRUNC) every descriptor that did arrive is closed and the receive fails, so none leaks.
/// </summary>
public static unsafe class DescriptorPassing
{
    public const int MaxDescriptors = 16;

    /// <summary>Sends <paramref name="message"/> (at least one byte) with <paramref name="descriptors"/> on the connected Unix socket <paramref name="socket"/>.</summary>
    public static void Send(int socket, ReadOnlySpan<byte> message, ReadOnlySpan<int> descriptors)
    {
        if (message.IsEmpty || descriptors.Length > MaxDescriptors)
        {
            throw new ArgumentException($"a message of at least one byte and at most {MaxDescriptors} descriptors");
        }
        int room = CMSG_SPACE(sizeof(int) * MaxDescriptors);
        byte* control = stackalloc byte[room];
        new Span<byte>(control, room).Clear();
        fixed (byte* text = message)
        {
            iovec iov = new() { iov_base = text, iov_len = (size_t)(ulong)message.Length };
            msghdr h = new() { msg_iov = &iov, msg_iovlen = 1 };
            if (!descriptors.IsEmpty)
            {
                h.msg_control = control;
                h.msg_controllen = (uint)CMSG_SPACE(sizeof(int) * descriptors.Length);
                cmsghdr* c = CMSG_FIRSTHDR(&h);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = NativeMethods.SCM_RIGHTS;
                c->cmsg_len = (uint)NativeMethods.CMSG_LEN(sizeof(int) * descriptors.Length);
                descriptors.CopyTo(new Span<int>(CMSG_DATA(c), descriptors.Length));
            }
            long sent;
            do
            {
                sent = sendmsg(socket, &h, MSG_NOSIGNAL);
            }
            while (sent < 0 && Errno.Last == Errno.EINTR);
            if (sent < 0)
            {
                throw new NativeException("sendmsg SCM_RIGHTS", Errno.Last);
            }
        }
    }

    /// <summary>
    /// As <see cref="Receive(int, Span{byte}, Span{int}, out int)"/>, after waiting at most
    /// <paramref name="timeoutMs"/> for the message; <see cref="TimeoutException"/> when none came.
    /// </summary>
    public static int Receive(int socket, Span<byte> buffer, Span<int> descriptors, out int count, int timeoutMs)
    {
        pollfd p = new() { fd = socket, events = POLLIN };
        int ready;
        do
        {
            ready = poll(&p, 1, timeoutMs);
        }
        while (ready < 0 && Errno.Last == Errno.EINTR);
        if (ready < 0)
        {
            throw new NativeException("poll (waiting for a message)", Errno.Last);
        }
        if (ready == 0)
        {
            throw new TimeoutException($"no message within {timeoutMs} ms");
        }
        return Receive(socket, buffer, descriptors, out count);
    }

    /// <summary>
    /// Receives one message into <paramref name="buffer"/> and its descriptors into
    /// <paramref name="descriptors"/>; returns the message's length (0: the peer closed) and the
    /// descriptors' count. The caller owns the descriptors it got.
    /// </summary>
    public static int Receive(int socket, Span<byte> buffer, Span<int> descriptors, out int count)
    {
        count = 0;
        int room = CMSG_SPACE(sizeof(int) * MaxDescriptors);
        byte* control = stackalloc byte[room];
        fixed (byte* text = buffer)
        {
            iovec iov = new() { iov_base = text, iov_len = (size_t)(ulong)buffer.Length };
            msghdr h = new() { msg_iov = &iov, msg_iovlen = 1, msg_control = control, msg_controllen = (uint)room };
            long got;
            do
            {
                got = recvmsg(socket, &h, NativeMethods.MSG_CMSG_CLOEXEC);
            }
            while (got < 0 && Errno.Last == Errno.EINTR);
            if (got < 0)
            {
                throw new NativeException("recvmsg SCM_RIGHTS", Errno.Last);
            }
            var received = new List<int>();
            for (cmsghdr* c = CMSG_FIRSTHDR(&h); c != null; c = CMSG_NXTHDR(&h, c))
            {
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == NativeMethods.SCM_RIGHTS)
                {
                    int n = ((int)(uint)c->cmsg_len - NativeMethods.CMSG_LEN(0)) / sizeof(int);
                    received.AddRange(new ReadOnlySpan<int>(CMSG_DATA(c), n).ToArray());
                }
            }
            if ((h.msg_flags & NativeMethods.MSG_CTRUNC) != 0 || received.Count > descriptors.Length)
            {
                received.ForEach(fd => close(fd));
                throw new NativeException($"recvmsg SCM_RIGHTS: more descriptors than room for {descriptors.Length}", Errno.EMSGSIZE);
            }
            received.CopyTo(descriptors);
            count = received.Count;
            return (int)got;
        }
    }
}
