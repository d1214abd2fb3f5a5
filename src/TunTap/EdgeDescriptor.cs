namespace Dataplane.TunTap;

/// <summary>
/// What every Linux edge (TUN queue, packet socket, UDP socket) is built on: its descriptor, entered
/// once per system call (<see cref="Enter"/>), and a <see cref="WakeEvent"/> polled beside it, so
/// that a stop wakes a loop waiting for input at once (<see cref="StopWaiting"/>) and every later
/// wait returns at once too. <see cref="Dispose"/> wakes the waits, then closes the descriptor as
/// soon as no call is inside it (what the calls use is freed by the descriptor's afterClose then).
/// As wireguard-go's <c>tun/operateonfd.go</c> runs each call through one helper that holds the file.
/// </summary>
internal sealed class EdgeDescriptor : IDisposable
{
    private readonly FileDescriptor _fd;
    private readonly WakeEvent _wake = new();

    /// <param name="fd">The descriptor, now owned by this edge.</param>
    /// <param name="afterClose">Frees what the calls on the descriptor use (native message vectors).</param>
    public EdgeDescriptor(int fd, Action? afterClose = null) => _fd = new FileDescriptor(fd, afterClose);

    /// <summary>The descriptor (tests check when it closes).</summary>
    public FileDescriptor Handle => _fd;

    /// <summary>Holds the descriptor open for one call (see <see cref="DescriptorEntry"/>).</summary>
    public DescriptorEntry Enter() => _fd.Enter();

    /// <summary>Waits until the entered descriptor <paramref name="fd"/> is readable, the edge is told to stop, or the timeout passes.</summary>
    public Readiness WaitReadable(int fd, int timeoutMs) => Poll.WaitReadable(fd, _wake, timeoutMs);

    /// <summary>As <see cref="WaitReadable"/> for two entered descriptors (a queue's two underlay sockets); says which are readable.</summary>
    public Readiness WaitEither(int fdA, int fdB, int timeoutMs, out bool readyA, out bool readyB) =>
        Poll.WaitEither(fdA, fdB, _wake, timeoutMs, out readyA, out readyB);

    /// <summary>Wakes a wait in progress; later waits return at once.</summary>
    public void StopWaiting() => _wake.Set();

    /// <summary>Undoes <see cref="StopWaiting"/>: waits block again (a loop restarted on this edge).</summary>
    public void ResumeWaiting() => _wake.Reset();

    public void Dispose()
    {
        _wake.Set();
        _fd.Dispose();
        _wake.Dispose();
    }
}
