using System.Globalization;
using System.Net.Sockets;

namespace Dataplane.Node;

/// <summary>
/// A device of the configured name already on the host at start, and what it is, read from sysfs:
/// ours (kept by an earlier run with <c>--on-exit keep</c>, or left by a crash), recognised by the
/// mark every node of ours writes on its device (its alias, <see cref="MarkOf"/>) or, for the
/// packet source, by its veth pair's names; or something else. <see cref="Check"/> decides before
/// anything is created whether a start may take it over (its address and route stay: no gap
/// beyond the restart itself) or is refused with one line that names what is in the way and how to
/// clear it. A node still running on the device is refused too (its control socket answers, or
/// its TUN queues are attached): two nodes never share one device.
/// </summary>
internal sealed record ExistingDevice(string Name, string Kind, IReadOnlyDictionary<string, string>? Mark, bool Carrier)
{
    private const string MarkPrefix = "dataplane";

    /// <summary>The mark a node writes on its device: "dataplane source=tun queues=2".</summary>
    public static string MarkOf(DeviceSource source, int queues) =>
        string.Create(CultureInfo.InvariantCulture, $"{MarkPrefix} source={source.Name()} queues={queues}");

    /// <summary>The device named <paramref name="name"/> as sysfs shows it, or null when there is none.</summary>
    public static ExistingDevice? Find(string name)
    {
        string dir = $"/sys/class/net/{name}";
        if (!Directory.Exists(dir))
        {
            return null;
        }
        string kind = File.Exists($"{dir}/tun_flags") ? "tun"
            : NodeDevice.IsOurVethPair(name, NodeDevice.VethPeerName(name)) ? "veth"
            : Read($"{dir}/uevent")?.Split('\n').FirstOrDefault(l => l.StartsWith("DEVTYPE=", StringComparison.Ordinal))?["DEVTYPE=".Length..] ?? "device";
        return new ExistingDevice(name, kind, ParseMark(Read($"{dir}/ifalias")), Read($"{dir}/carrier") == "1");
    }

    /// <summary>"dataplane source=tun queues=2" as its pairs, or null when the alias is not our mark.</summary>
    internal static IReadOnlyDictionary<string, string>? ParseMark(string? alias)
    {
        string[] words = (alias ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (words.Length == 0 || words[0] != MarkPrefix)
        {
            return null;
        }
        return words.Skip(1).Select(w => w.Split('=', 2)).Where(p => p.Length == 2).ToDictionary(p => p[0], p => p[1]);
    }

    /// <summary>
    /// Whether a node with this <paramref name="source"/> and <paramref name="queues"/> may take this
    /// device over; a <see cref="ConfigException"/> that says why not otherwise. A carrier (queues
    /// attached) refuses it, unless <paramref name="attachedByUs"/> (systemd keeps our descriptors).
    /// </summary>
    public void Check(DeviceSource source, int queues, bool attachedByUs = false)
    {
        string wanted = source == DeviceSource.Packet ? "veth" : "tun";
        string clear = $"delete it (ip link del {Name}) or choose --device";
        string clearOurs = $"remove it (dataplane uninstall --device {Name}) or choose --device";
        if (Kind == "vxlan")
        {
            throw new ConfigException($"{Name} is a kernel VXLAN device (flanneld's?), not ours: stop flanneld, then {clear}");
        }
        if (Kind is not ("tun" or "veth") || Kind == "tun" && Mark is null)
        {
            string what = Kind switch { "tun" => "a TUN device", "device" => "a device", _ => $"a {Kind} device" };
            throw new ConfigException($"{what} named {Name} exists and is not ours (it has no dataplane mark): {clear}");
        }
        if (Kind != wanted)
        {
            throw new ConfigException($"--source {source.Name()}: {Name} is ours but was kept by a node with "
                + $"--source {(Kind == "tun" ? "tun" : "packet")}: start with that, or {clearOurs}");
        }
        if (Kind == "tun" && Carrier && !attachedByUs)
        {
            throw new ConfigException($"{Name} is in use: a running node has its queues attached; stop it first, or choose --device");
        }
        if (Kind == "tun" && Mark!.TryGetValue("queues", out string? kept) && int.TryParse(kept, CultureInfo.InvariantCulture, out int keptQueues)
            && keptQueues > 1 != queues > 1)
        {
            throw new ConfigException($"--queues {queues}: {Name} is ours, kept by a node with --queues {keptQueues}, and the kernel attaches "
                + $"{(queues > 1 ? "several queues only to a multi-queue device" : "one queue only to a single-queue device")}: "
                + $"start with --queues {(keptQueues > 1 ? "2 or more" : "1")}, or {clearOurs}");
        }
    }

    /// <summary>
    /// A node already running with the control socket at <paramref name="path"/>: the start is refused
    /// (it never unlinks a socket that answers); a socket file nobody answers is a leftover, replaced later.
    /// </summary>
    public static void RefuseIfRunning(string path, string device)
    {
        if (RunningNode(path) is int pid)
        {
            throw new ConfigException($"a node is already running on {device}{(pid > 0 ? $" (pid {pid})" : "")}: its control socket {path} answers; "
                + "stop it first, or choose --device and --control-socket");
        }
    }

    /// <summary>The pid of the node whose control socket at <paramref name="path"/> answers (0 when the kernel does not say), or null when none does.</summary>
    public static int? RunningNode(string path)
    {
        if (!File.Exists(path))
        {
            return null;
        }
        using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            s.Connect(new UnixDomainSocketEndPoint(path));
        }
        catch (SocketException)
        {
            return null; // nobody listens: a leftover of a killed node
        }
        return PeerCredentials.Of(s)?.Pid ?? 0;
    }

    /// <summary>Ours: a TUN or device with our mark, or the host end of our veth pair.</summary>
    public bool IsOurs => Mark is not null || Kind == "veth";

    private static string? Read(string path)
    {
        try
        {
            return File.ReadAllText(path).Trim();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
