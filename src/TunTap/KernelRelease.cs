using System.Globalization;

namespace Dataplane.TunTap;

/// <summary>
/// The running kernel's release (<c>/proc/sys/kernel/osrelease</c>, "6.18.44-cloud-amd64"), for
/// features that can only be known by version: where a kernel takes something without a way to
/// ask it first (a packet socket's virtio-net header has no offload negotiation, unlike a TUN's).
/// </summary>
public static class KernelRelease
{
    /// <summary>The running kernel's release string, or null when it cannot be read.</summary>
    public static string? Current => Read();

    /// <summary>True when the release parses and is at least <paramref name="major"/>.<paramref name="minor"/>; false when it cannot be read.</summary>
    public static bool AtLeast(int major, int minor) => AtLeast(Read(), major, minor);

    /// <summary><see cref="AtLeast(int, int)"/> for a given release string (tests).</summary>
    public static bool AtLeast(string? release, int major, int minor)
    {
        if (release is null)
        {
            return false;
        }
        string[] parts = release.Split('.', 3);
        if (parts.Length < 2 || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int ma))
        {
            return false;
        }
        int digits = 0;
        while (digits < parts[1].Length && char.IsAsciiDigit(parts[1][digits]))
        {
            digits++;
        }
        if (digits == 0 || !int.TryParse(parts[1].AsSpan(0, digits), NumberStyles.None, CultureInfo.InvariantCulture, out int mi))
        {
            return false;
        }
        return ma > major || (ma == major && mi >= minor);
    }

    private static string? Read()
    {
        try
        {
            return File.ReadAllText("/proc/sys/kernel/osrelease").Trim();
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }
}
