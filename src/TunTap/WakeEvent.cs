using static Tmds.Linux.LibC;

namespace Dataplane.TunTap;

/// <summary>
/// An eventfd that an edge polls beside its own descriptor, so a loop waiting for packets wakes at
/// once when the node stops (instead of at its next poll timeout). Once <see cref="Set"/>, it
/// stays readable: every later wait returns at once too, which is what stopping needs, until
/// <see cref="Reset"/> (a queue that resumes after a hand-over that did not finish).
/// </summary>
public sealed unsafe class WakeEvent : IDisposable
{
    private readonly FileDescriptor _fd;

    public WakeEvent()
    {
        int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (fd < 0)
        {
            throw new NativeException("eventfd", Errno.Last);
        }
        _fd = new FileDescriptor(fd);
    }

    public FileDescriptor Handle => _fd;

    /// <summary>Wakes every wait on this event, now and later.</summary>
    public void Set()
    {
        using DescriptorEntry entry = _fd.Enter();
        if (entry.IsOpen)
        {
            ulong one = 1;
            write(entry.Fd, &one, sizeof(ulong)); // EAGAIN only if the counter is full: readable anyway
        }
    }

    /// <summary>Waits block again: the event's counter is read back to zero.</summary>
    public void Reset()
    {
        using DescriptorEntry entry = _fd.Enter();
        if (entry.IsOpen)
        {
            ulong value;
            read(entry.Fd, &value, sizeof(ulong)); // EAGAIN when it was not set: nothing to clear
        }
    }

    public void Dispose() => _fd.Dispose();
}
