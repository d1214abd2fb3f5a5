using System.Runtime.InteropServices;

namespace Dataplane.TunTap;

/// <summary>errno values the edges act on, and a short "what failed" formatter for setup errors.</summary>
public static class Errno
{
    /// <summary>
    /// The errno of the last native call on this thread. Every call in this project is declared with
    /// <c>SetLastError</c> (ours through <c>[LibraryImport]</c>, Tmds.LibC's through its own), so this is
    /// the one way errno is read.
    /// </summary>
    public static int Last => Marshal.GetLastPInvokeError();

    public const int EPERM = 1;
    public const int ENOENT = 2;
    public const int EINTR = 4;
    public const int EIO = 5;
    public const int ENXIO = 6;
    public const int EBADF = 9;
    public const int EAGAIN = 11;
    public const int ENOMEM = 12;
    public const int EACCES = 13;
    public const int EBUSY = 16;
    public const int ESRCH = 3;
    public const int EEXIST = 17;
    public const int ENODEV = 19;
    public const int EINVAL = 22;
    public const int EBADFD = 77;
    public const int EMSGSIZE = 90;
    public const int EOPNOTSUPP = 95;
    public const int EAFNOSUPPORT = 97;
    public const int EADDRINUSE = 98;
    public const int EADDRNOTAVAIL = 99;
    public const int ENETDOWN = 100;
    public const int ENETUNREACH = 101;
    public const int ENOBUFS = 105;
    public const int ECONNREFUSED = 111;
    public const int EHOSTUNREACH = 113;

    public static string Name(int errno) => errno switch
    {
        EPERM => "EPERM",
        ENOENT => "ENOENT",
        EINTR => "EINTR",
        EIO => "EIO",
        ENXIO => "ENXIO",
        EBADFD => "EBADFD",
        EBADF => "EBADF",
        EAGAIN => "EAGAIN",
        ENOMEM => "ENOMEM",
        EACCES => "EACCES",
        EBUSY => "EBUSY",
        EEXIST => "EEXIST",
        ENODEV => "ENODEV",
        EINVAL => "EINVAL",
        EMSGSIZE => "EMSGSIZE",
        EADDRINUSE => "EADDRINUSE",
        EADDRNOTAVAIL => "EADDRNOTAVAIL",
        ENETDOWN => "ENETDOWN",
        ENETUNREACH => "ENETUNREACH",
        ENOBUFS => "ENOBUFS",
        ECONNREFUSED => "ECONNREFUSED",
        EHOSTUNREACH => "EHOSTUNREACH",
        _ => $"errno {errno}",
    };

    /// <summary>"TUNSETIFF flannel0: EPERM (Operation not permitted) — needs CAP_NET_ADMIN".</summary>
    public static string Describe(string what, int errno)
    {
        string hint = errno is EPERM or EACCES ? " — needs CAP_NET_ADMIN (run as root)" : "";
        return $"{what}: {Name(errno)} ({Marshal.GetPInvokeErrorMessage(errno)}){hint}";
    }
}
