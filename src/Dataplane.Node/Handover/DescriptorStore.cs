using System.Globalization;
using Serilog;
using static Tmds.Linux.LibC;

namespace Dataplane.Node;

/// <summary>
/// systemd's file descriptor store: how a node run by systemd restarts without losing what is
/// queued in its device and sockets. Under systemd (<c>NOTIFY_SOCKET</c>) with <c>--on-exit keep</c>,
/// a node that is ready hands systemd a copy of every queue's descriptors (<c>FDSTORE=1</c>, one
/// message per descriptor, named); the unit keeps them (<c>FileDescriptorStoreMax=</c>) across a
/// restart or a crash, so the TUN queues stay attached and the sockets bound, with their packets,
/// while no process runs; the next start receives them (<c>LISTEN_FDS</c>, <c>LISTEN_FDNAMES</c>)
/// and adopts them as a hand-over's successor does, instead of opening the device anew.
///
/// Each name says what the descriptor is and how it was made:
/// <c>dataplane/DEVICE/QUEUE/ROLE/SOURCE/OFFLOAD/TUNFLAGS</c>, for example
/// <c>dataplane/flannel.1/0/device/tun/on/3f</c>. A start whose flags differ (queues, source,
/// offloads) is refused in one line after telling systemd to drop them (the next start makes the
/// queues anew); descriptors of a device that is gone (deleted meanwhile) are dropped and the start
/// goes on as a plain one; a stop that removes the device tells systemd to drop them too.
/// </summary>
internal static class DescriptorStore
{
    private const string Prefix = "dataplane";
    private const int FirstPassed = 3; // SD_LISTEN_FDS_START

    public static string NameOf(string device, int queue, string role, string source, bool offload, uint tunFlags) =>
        string.Create(CultureInfo.InvariantCulture, $"{Prefix}/{device}/{queue}/{role}/{source}/{(offload ? "on" : "off")}/{tunFlags:x}");

    /// <summary>Hands systemd a copy of every queue's descriptors; returns the names given (none when no service manager listens).</summary>
    public static IReadOnlyList<string> Keep(NodeDevice device, string deviceName, string source, bool offload, uint tunFlags, ILogger log)
    {
        var names = new List<string>();
        if (!ServiceNotifier.Present)
        {
            return names;
        }
        for (int q = 0; q < device.Queues.Count; q++)
        {
            (string roles, int[] fds) = device.HandoverDescriptors(q);
            foreach ((string role, int fd) in roles.Split(',').Zip(fds))
            {
                string name = NameOf(deviceName, q, role, source, offload, tunFlags);
                if (ServiceNotifier.Notify($"FDSTORE=1\nFDNAME={name}", [fd]))
                {
                    names.Add(name);
                }
            }
        }
        log.Information("Offered systemd {Count} descriptors to keep (FDSTORE; kept when the unit sets FileDescriptorStoreMax=): "
            + "a restart or a crash finds the queues attached, with their packets", names.Count);
        return names;
    }

    /// <summary>Tells systemd to close the descriptors it keeps under <paramref name="names"/>.</summary>
    public static void Forget(IEnumerable<string> names)
    {
        foreach (string name in names)
        {
            ServiceNotifier.Notify($"FDSTOREREMOVE=1\nFDNAME={name}");
        }
    }

    /// <summary>
    /// The descriptors systemd passed this process for <paramref name="device"/>, by queue and role,
    /// or null when there are none. Every passed descriptor is made close-on-exec and the LISTEN_*
    /// variables are cleared (a child never inherits them); descriptors of another name are dropped.
    /// </summary>
    public static StoredDescriptors? Take(string device, ILogger log)
    {
        string? pid = Environment.GetEnvironmentVariable("LISTEN_PID"), count = Environment.GetEnvironmentVariable("LISTEN_FDS");
        string[] names = (Environment.GetEnvironmentVariable("LISTEN_FDNAMES") ?? "").Split(':');
        foreach (string variable in new[] { "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES" })
        {
            Environment.SetEnvironmentVariable(variable, null);
        }
        if (pid != Environment.ProcessId.ToString(CultureInfo.InvariantCulture) || !int.TryParse(count, CultureInfo.InvariantCulture, out int n) || n <= 0)
        {
            return null;
        }
        var queues = new SortedDictionary<int, Dictionary<string, int>>();
        var ours = new List<string>();
        (string Source, bool Offload, uint Flags)? made = null;
        for (int i = 0; i < n; i++)
        {
            int fd = FirstPassed + i;
            fcntl(fd, F_SETFD, FD_CLOEXEC);
            string[] parts = (i < names.Length ? names[i] : "").Split('/');
            if (parts.Length == 7 && parts[0] == Prefix && parts[1] == device && int.TryParse(parts[2], CultureInfo.InvariantCulture, out int q)
                && uint.TryParse(parts[6], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out uint flags)
                && queues.GetValueOrDefault(q)?.ContainsKey(parts[3]) != true)
            {
                (queues.TryGetValue(q, out Dictionary<string, int>? roles) ? roles : queues[q] = [])[parts[3]] = fd;
                ours.Add(names[i]);
                made ??= (parts[4], parts[5] == "on", flags);
                continue;
            }
            string name = i < names.Length ? names[i] : "";
            log.Warning("systemd passed a descriptor named '{Name}', not one of {Device}'s: dropped", name, device);
            if (name.Length > 0)
            {
                Forget([name]);
            }
            close(fd);
        }
        if (made is not { } m)
        {
            return null;
        }
        return new StoredDescriptors([.. queues.Select(p => HandedQueue.Of(p.Key, p.Value))], m.Source, m.Offload, m.Flags, ours);
    }
}

/// <summary>The queues systemd kept for this device, and how they were made; closes at <see cref="Dispose"/> what was not adopted.</summary>
internal sealed record StoredDescriptors(IReadOnlyList<HandedQueue> Queues, string Source, bool Offload, uint TunFlags, IReadOnlyList<string> Names) : IDisposable
{
    /// <summary>Queues 0 to N-1, each with its device's descriptor.</summary>
    public bool Complete => Queues.Select((q, i) => q.Index == i && q.Has(HandedQueue.Device)).All(ok => ok);

    public void Dispose()
    {
        foreach (HandedQueue q in Queues)
        {
            q.CloseUntaken();
        }
    }
}
