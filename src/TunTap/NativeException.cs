namespace Dataplane.TunTap;

/// <summary>A setup call failed; the message names the call, the object and the errno.</summary>
public sealed class NativeException(string what, int errno) : IOException(TunTap.Errno.Describe(what, errno))
{
    public int Errno { get; } = errno;
}
