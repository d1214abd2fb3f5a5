namespace Dataplane.TunTap;

/// <summary>
/// One system call's hold on a <see cref="FileDescriptor"/>, taken by <see cref="FileDescriptor.Enter"/>
/// and given back when disposed, so the descriptor is never closed (and its number never reused)
/// while the call runs:
/// <code>
/// using DescriptorEntry entry = _edge.Enter();
/// if (!entry.IsOpen) return 0; // closed: the loop is stopping
/// read(entry.Fd, ...);
/// </code>
/// A ref struct: entering costs no allocation, and the entry cannot outlive the method that took it.
/// </summary>
public readonly ref struct DescriptorEntry
{
    private readonly FileDescriptor? _owner;
    private readonly int _fd;

    internal DescriptorEntry(FileDescriptor owner, int fd)
    {
        _owner = owner;
        _fd = fd;
    }

    /// <summary>False when the descriptor was closed (or is closing): the edge answers "nothing".</summary>
    public bool IsOpen => _owner is not null;

    /// <summary>The descriptor's number, valid until this entry is disposed (-1 when not open).</summary>
    public int Fd => _owner is null ? -1 : _fd;

    public void Dispose() => _owner?.Exit();
}
