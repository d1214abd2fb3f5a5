using Dataplane.Metrics;
using Dataplane.TunTap;

namespace Dataplane.Node;

/// <summary>
/// <c>dataplane uninstall</c>: removes what a node of ours made on this host, for both backends and
/// both sources, and says each thing it removed in one line. Safe to run twice: the second run
/// says nothing is left and exits 0.
///
///  1. The devices: <c>--device</c>, else every device that carries our mark, and flannel.1 /
///     flannel0 when they are ours (marked, or our veth pair).
///  2. A node still running on one of them is not pulled out from under: refused with its pid, or
///     with <c>--force</c> stopped first (SIGTERM, SIGKILL after 10 s).
///  3. Each device (its addresses, routes and neighbours go with it; a veth pair's other end too),
///     then the files of each device name: its control socket and its VTEP MAC file.
///  4. The <c>--ip-masq</c> and forward chains and the jumps into them (iptables, or the nftables
///     table), and subnet.env.
///  5. With <c>--release-lease</c>: our lease in the store the node used (<see cref="Leases.ILeaseSource.Release"/>:
///     etcd keys whose PublicIP is an address of this host, or our Node's lease annotations).
///  6. With <c>--cni</c>: the CNI config and the flannel plugin the DaemonSet installs, and cni0
///     (the pods on this node lose their network).
/// </summary>
internal static class UninstallCommand
{
    /// <param name="ControlSocket">The one control socket to look at; null: /run/dataplane/DEVICE.sock of each device name.</param>
    /// <param name="VtepMacFile">The one VTEP MAC file to remove; null: the default of each device name.</param>
    public sealed record Options(string? Device, string? ControlSocket, string SubnetFile, string? VtepMacFile, bool Force, bool Cni,
        string CniConfFile, string CniPlugin)
    {
        public bool ReleaseLease { get; init; }

        /// <summary>The store of <see cref="ReleaseLease"/>, as the node was run: etcd or the Kubernetes API.</summary>
        public Leases.Etcd.EtcdOptions? Etcd { get; init; }

        public Leases.Kube.KubeOptions? Kube { get; init; }
    }

    private static readonly string[] DefaultNames = [Engine.BackendProfile.Vxlan.DefaultDevice, Engine.BackendProfile.Udp.DefaultDevice];

    public static int Run(Options o, TextWriter output)
    {
        if (o.ReleaseLease && o.Etcd is null && o.Kube is null)
        {
            throw new ConfigException("--release-lease: name the store our lease is in, as the node was run: --etcd-endpoints URL, or --kube-subnet-mgr");
        }
        string[] names = o.Device is string one ? [one] : [.. OurMarkedDevices().Union(DefaultNames)];
        var devices = names.Select(ExistingDevice.Find).OfType<ExistingDevice>().Where(d => d.IsOurs || d.Name == o.Device).ToList();
        if (devices.FirstOrDefault(d => !d.IsOurs) is ExistingDevice foreign)
        {
            throw new ConfigException($"--device {foreign.Name}: not ours (a {foreign.Kind} device without our mark): not removed");
        }
        foreach (string name in names)
        {
            StopRunningNode(ControlSocketOf(o, name), name, o.Force, output);
        }
        var removed = new List<string>();
        foreach (ExistingDevice d in devices)
        {
            removed.Add(RemoveDevice(d));
        }
        foreach (string name in names)
        {
            removed.AddRange(RemoveFile(ControlSocketOf(o, name), "control socket"));
            removed.AddRange(RemoveFile(o.VtepMacFile ?? Leases.VtepMacFile.DefaultPath(name), "VTEP MAC file"));
        }
        if (ProcessRunner.Which("iptables") is string iptables)
        {
            removed.AddRange(TrafficRules.RemoveChains(iptables).Select(chain => $"iptables chain {chain} and the jump into it"));
        }
        if (ProcessRunner.Which("nft") is string nft && NftRules.RemoveTable(nft))
        {
            removed.Add($"nftables table ip {NftRules.Table}");
        }
        removed.AddRange(RemoveFile(o.SubnetFile, "subnet.env"));
        if (o.ReleaseLease)
        {
            removed.AddRange(ReleaseLease(o));
        }
        if (o.Cni)
        {
            removed.AddRange(RemoveCni(o));
        }
        foreach (string line in removed.Distinct())
        {
            output.WriteLine($"removed {line}");
        }
        if (removed.Count == 0)
        {
            output.WriteLine("nothing of dataplane is left on this host");
        }
        return 0;
    }

    private static string ControlSocketOf(Options o, string device) => o.ControlSocket ?? StatsCommand.DefaultSocket(device);

    /// <summary>The devices whose alias is our mark.</summary>
    private static IEnumerable<string> OurMarkedDevices() =>
        Directory.Exists("/sys/class/net")
            ? Directory.GetDirectories("/sys/class/net").Select(Path.GetFileName).OfType<string>().Where(n => ExistingDevice.Find(n)?.Mark is not null)
            : [];

    /// <summary>Step 2: refuses while a node answers on the device's control socket, or with --force stops it and waits for it to exit.</summary>
    private static void StopRunningNode(string controlSocket, string device, bool force, TextWriter output)
    {
        if (ExistingDevice.RunningNode(controlSocket) is not int pid)
        {
            if (ExistingDevice.Find(device) is { Kind: "tun", Carrier: true, IsOurs: true })
            {
                throw new ConfigException($"{device} is in use: a running node has its queues attached (its control socket is not at {controlSocket}); stop it first");
            }
            return;
        }
        if (!force || pid <= 0)
        {
            throw new ConfigException($"a node is running on {device}{(pid > 0 ? $" (pid {pid})" : "")}: stop it first, or uninstall --force to stop it");
        }
        output.WriteLine($"stopping the node on {device} (pid {pid})");
        Tmds.Linux.LibC.kill(pid, Tmds.Linux.LibC.SIGTERM);
        if (!WaitForExit(pid, TimeSpan.FromSeconds(10)))
        {
            Tmds.Linux.LibC.kill(pid, Tmds.Linux.LibC.SIGKILL);
            WaitForExit(pid, TimeSpan.FromSeconds(5));
        }
    }

    private static bool WaitForExit(int pid, TimeSpan timeout)
    {
        var until = DateTime.UtcNow + timeout;
        while (Directory.Exists($"/proc/{pid}") && DateTime.UtcNow < until)
        {
            Thread.Sleep(50);
        }
        return !Directory.Exists($"/proc/{pid}");
    }

    /// <summary>Step 3: the link, and with it its addresses, routes and neighbours (a veth pair goes whole).</summary>
    private static string RemoveDevice(ExistingDevice d)
    {
        using RouteNetlink nl = RouteNetlink.Open();
        int index = RouteNetlink.LinkIndex(d.Name);
        if (index > 0)
        {
            nl.DeleteLink(index, $"delete {d.Name}");
        }
        return d.Kind == "veth"
            ? $"device {d.Name} (the veth pair {d.Name}/{NodeDevice.VethPeerName(d.Name)}; its address and routes went with it)"
            : $"device {d.Name} ({d.Kind}; its address and routes went with it)";
    }

    private static IEnumerable<string> RemoveFile(string path, string what)
    {
        if (!File.Exists(path))
        {
            return [];
        }
        File.Delete(path);
        return [$"{what} {path}"];
    }

    /// <summary>Step 5: our lease, from the store the node was run with.</summary>
    private static IReadOnlyList<string> ReleaseLease(Options o)
    {
        using Leases.ILeaseSource store = LeaseSources.Create(null, o.Etcd, o.Kube, Serilog.Core.Logger.None);
        return store.Release();
    }

    /// <summary>Step 6: what the DaemonSet's init containers installed, and the bridge the flannel CNI plugin's delegate made.</summary>
    private static IEnumerable<string> RemoveCni(Options o)
    {
        var removed = new List<string>();
        removed.AddRange(RemoveFile(o.CniConfFile, "CNI config"));
        removed.AddRange(RemoveFile(o.CniPlugin, "CNI plugin"));
        if (ExistingDevice.Find("cni0") is not null)
        {
            using RouteNetlink nl = RouteNetlink.Open();
            nl.DeleteLink(RouteNetlink.LinkIndex("cni0"), "delete cni0");
            removed.Add("bridge cni0 (the pods on this node have no network until a CNI plugin gives them one)");
        }
        return removed;
    }
}
