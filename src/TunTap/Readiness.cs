using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace Dataplane.TunTap;

/// <summary>What a wait for input found.</summary>
public enum Readiness
{
    /// <summary>The descriptor has input.</summary>
    Ready,
    /// <summary>Nothing arrived within the timeout.</summary>
    Timeout,
    /// <summary>The wake event was set: the node is stopping.</summary>
    Woken,
    /// <summary>The descriptor reports an error and no input (a deleted TUN device polls like this forever).</summary>
    Failed,
}

/// <summary>poll() on an edge's descriptor and its <see cref="WakeEvent"/>, with named flags.</summary>
internal static unsafe class Poll
{
    private static readonly int Failure = (ushort)POLLERR | (ushort)POLLHUP | (ushort)POLLNVAL;

    /// <summary>Waits until <paramref name="fd"/> is readable, the wake event is set, or the timeout passes.</summary>
    public static Readiness WaitReadable(int fd, WakeEvent wake, int timeoutMs) =>
        WaitEither(fd, -1, wake, timeoutMs, out _, out _); // poll() ignores a negative descriptor

    /// <summary>
    /// Waits until <paramref name="fdA"/> or <paramref name="fdB"/> is readable, the wake event is
    /// set, or the timeout passes; says which of the two are readable. <see cref="Readiness.Failed"/>
    /// when neither is readable and one reports an error (a deleted TUN device polls like this).
    /// </summary>
    public static Readiness WaitEither(int fdA, int fdB, WakeEvent wake, int timeoutMs, out bool readyA, out bool readyB)
    {
        readyA = readyB = false;
        using DescriptorEntry wakeEntry = wake.Handle.Enter();
        if (!wakeEntry.IsOpen)
        {
            return Readiness.Woken; // the edge is being disposed
        }
        pollfd* fds = stackalloc pollfd[3];
        fds[0] = new pollfd { fd = fdA, events = POLLIN };
        fds[1] = new pollfd { fd = fdB, events = POLLIN };
        fds[2] = new pollfd { fd = wakeEntry.Fd, events = POLLIN };
        if (poll(fds, 3, timeoutMs) <= 0)
        {
            return Readiness.Timeout; // EINTR counts as a timeout: the caller simply waits again
        }
        if ((fds[2].revents & POLLIN) != 0)
        {
            return Readiness.Woken;
        }
        readyA = (fds[0].revents & POLLIN) != 0;
        readyB = (fds[1].revents & POLLIN) != 0;
        if (readyA || readyB)
        {
            return Readiness.Ready;
        }
        return (((ushort)fds[0].revents | (ushort)fds[1].revents) & Failure) != 0 ? Readiness.Failed : Readiness.Timeout;
    }

    /// <summary>Waits up to <paramref name="timeoutMs"/> for room to write on <paramref name="fd"/>.</summary>
    public static void WaitWritable(int fd, int timeoutMs)
    {
        pollfd pfd = new() { fd = fd, events = POLLOUT };
        poll(&pfd, 1, timeoutMs);
    }
}
