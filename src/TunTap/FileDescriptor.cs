using System.Runtime.InteropServices;
using static Tmds.Linux.LibC;

namespace Dataplane.TunTap;

/// <summary>
/// A Linux file descriptor owned by one object. It is closed exactly once, and never while a system
/// call on it is in progress: every call runs between <see cref="TryEnter"/> and <see cref="Exit"/>
/// (SafeHandle reference counting), so a <see cref="SafeHandle.Dispose()"/> from another thread
/// defers the close until that call has returned and the number cannot be reused under a running
/// loop. After the close, <see cref="TryEnter"/> says no and the edge reports "closed". Edges take
/// the reference with <see cref="Enter"/>, a scoped <see cref="DescriptorEntry"/>.
/// </summary>
public sealed class FileDescriptor : SafeHandle
{
    private readonly Action? _afterClose;
    private volatile bool _disposed;

    /// <param name="fd">The descriptor, now owned by this handle.</param>
    /// <param name="afterClose">Frees what the system calls on this descriptor use (native message
    /// vectors), once the last call has returned and the descriptor is closed.</param>
    public FileDescriptor(int fd, Action? afterClose = null) : base(invalidHandleValue: -1, ownsHandle: true)
    {
        SetHandle(fd);
        _afterClose = afterClose;
    }

    public override bool IsInvalid => handle == -1;

    /// <summary>The number, for a call made between <see cref="TryEnter"/> and <see cref="Exit"/> or at setup.</summary>
    public int Number => (int)handle;

    /// <summary>Takes a reference for one system call, returned when the entry is disposed (<c>using</c>); not open once the descriptor is closed.</summary>
    public DescriptorEntry Enter() => TryEnter(out int fd) ? new DescriptorEntry(this, fd) : default;

    /// <summary>Takes a reference for one system call; false once the descriptor is closed (or closing).</summary>
    public bool TryEnter(out int fd)
    {
        bool added = false;
        if (_disposed)
        {
            // Disposed: no new calls, even while an earlier one still holds the descriptor open.
            fd = -1;
            return false;
        }
        try
        {
            DangerousAddRef(ref added);
        }
        catch (ObjectDisposedException)
        {
            // Closed: the loop that asked is about to stop.
        }
        fd = added ? (int)handle : -1;
        return added;
    }

    /// <summary>Returns the reference <see cref="TryEnter"/> took.</summary>
    public void Exit() => DangerousRelease();

    protected override void Dispose(bool disposing)
    {
        _disposed = true;
        base.Dispose(disposing);
    }

    protected override bool ReleaseHandle()
    {
        bool closed = close((int)handle) == 0;
        _afterClose?.Invoke();
        return closed;
    }
}
