using System.Globalization;

namespace Dataplane.Node;

/// <summary>
/// <c>run --ready-file</c>: a file that exists while this process forwards, for a readiness probe
/// (<c>test -f FILE</c>) that must tell this process from another one on the same device: a
/// DaemonSet's new pod is ready only once it has taken the device over, not while the old pod's
/// node still answers. It holds "pid N"; a process removes it only while it is its own.
/// </summary>
internal static class ReadyFile
{
    private static string Content => string.Create(CultureInfo.InvariantCulture, $"pid {Environment.ProcessId}\n");

    /// <summary>Writes the file (atomically: a probe never reads half of it).</summary>
    public static void Write(string? path)
    {
        if (path is null)
        {
            return;
        }
        if (Path.GetDirectoryName(Path.GetFullPath(path)) is string dir)
        {
            Directory.CreateDirectory(dir);
        }
        string written = $"{path}.{Environment.ProcessId}.new";
        File.WriteAllText(written, Content);
        File.Move(written, path, overwrite: true);
    }

    /// <summary>Removes the file if it is still this process's (a successor may have written its own).</summary>
    public static void Remove(string? path)
    {
        try
        {
            if (path is not null && File.Exists(path) && File.ReadAllText(path) == Content)
            {
                File.Delete(path);
            }
        }
        catch (IOException)
        {
            // Gone meanwhile: nothing to remove.
        }
    }
}
