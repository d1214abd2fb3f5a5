using System.Security.Cryptography;
using Dataplane.Encap;

namespace Dataplane.Leases;

/// <summary>
/// Our VTEP MAC, kept in a file across restarts (flanneld keeps it the same way), so the permanent
/// neighbour and FDB entries kernel peers hold for us stay valid when the node comes back.
/// </summary>
internal static class VtepMacFile
{
    /// <summary>Where our VTEP MAC is kept unless told otherwise.</summary>
    public static string DefaultPath(string device) => $"/var/lib/dataplane/{device}.vtepmac";

    /// <summary>The MAC in <paramref name="path"/>; else the one our old lease names, else a new random one; saved in the file.</summary>
    public static MacAddress LoadOrCreate(string path, MacAddress? fromLease)
    {
        if (File.Exists(path) && MacAddress.TryParse(File.ReadAllText(path).Trim(), out MacAddress? saved))
        {
            return saved.Value;
        }
        MacAddress mac = fromLease ?? Random();
        Save(path, mac);
        return mac;
    }

    /// <summary>Keeps <paramref name="mac"/> in <paramref name="path"/> (a MAC our node already announces, for example).</summary>
    public static void Save(string path, MacAddress mac)
    {
        try
        {
            string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
            if (dir is not null)
            {
                Directory.CreateDirectory(dir);
            }
            File.WriteAllText(path, mac + "\n");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigException($"--vtep-mac-file {path}: cannot write: {e.Message}");
        }
    }

    /// <summary>A random unicast, locally administered MAC (as the kernel gives a new flannel.1).</summary>
    private static MacAddress Random()
    {
        Span<byte> b = stackalloc byte[6];
        RandomNumberGenerator.Fill(b);
        b[0] = (byte)((b[0] & 0xFE) | 0x02);
        return MacAddress.Read(b);
    }
}
