using System.Globalization;
using System.Net;
using Dataplane.Encap;
using Dataplane.Engine;
using Dataplane.Leases;
using Dataplane.TunTap;
using Serilog;

namespace Dataplane.Node;

/// <summary>Step 1 of <see cref="NodeRunner"/>: the plan, as the sequence of questions it answers.</summary>
internal static partial class NodeRunner
{
    /// <summary>Our underlay: the IPv4 public address (0 on an IPv6-only network), the IPv6 one if any, and the interface they are on.</summary>
    private readonly record struct Underlay(uint PublicIp, UInt128? PublicIpv6, string Iface);

    /// <summary>Everything checked, nothing created; our lease acquired last.</summary>
    public static NodePlan Plan(RunOptions o, ILeaseSource leases, ILogger log)
    {
        ClusterSnapshot snapshot = leases.Start();
        IpFamilies network = snapshot.Config.Families;
        log.Information("{Source}: network {Network}, SubnetLen {Len}, {Count} leases", leases.Description,
            network == IpFamilies.Ipv6Only ? $"{snapshot.Config.Ipv6Network} (IPv6-only)" : snapshot.Config.Network.ToString(),
            network == IpFamilies.Ipv6Only ? snapshot.Config.Ipv6SubnetLength : snapshot.Config.SubnetLength, snapshot.Leases.Count);
        o = WithStoredPublicIps(o, snapshot, log);
        Underlay underlay = FindUnderlay(o, snapshot, network, log);
        BackendProfile profile = BackendProfile.Of(o.Backend ?? snapshot.Config.Backend);
        int port = o.Port ?? (profile.Kind == snapshot.Config.Backend ? snapshot.Config.Port : profile.DefaultPort);
        string device = o.Device ?? profile.DefaultDevice;
        DeviceSource source = ChooseSource(o.Source, log);
        if (!HostInfo.HasNetAdmin())
        {
            throw new ConfigException("needs CAP_NET_ADMIN to create the device and its routes (run as root)");
        }
        string controlSocket = o.ControlSocket ?? Metrics.StatsCommand.DefaultSocket(device);
        bool running = ExistingDevice.RunningNode(controlSocket) is not null; // asked for a hand-over last, once all else is known
        StoredDescriptors? stored = running ? null : TakeStored(o, device, source, log);
        ExistingDevice? existing = running ? null : CheckDeviceFree(o, device, source, attachedByUs: stored is not null);
        int underlayMtu = RouteNetlink.GetMtu(underlay.Iface);
        LeaseRecord lease = AcquireLease(leases, snapshot, underlay, profile);
        var node = new NodeIdentity(lease, snapshot.Config, profile.Kind, port, snapshot.Config.Vni) { PublicIpv6 = LeasedIpv6(o, snapshot, lease, underlay) };
        int deviceMtu = profile.InnerMtu(underlayMtu, ipv6Underlay: network == IpFamilies.Ipv6Only);
        var plan = new NodePlan(snapshot, node, underlay.Iface, device, deviceMtu)
        {
            MetricsEndpoint = o.Metrics,
            HealthzEndpoint = o.Healthz,
            BindAddress = underlay.PublicIp,
            Source = source,
            Existing = existing,
            Stored = stored,
            Ipv6RouteMtu = Ipv6RouteMtu(node, deviceMtu, underlayMtu, log),
        };
        return running ? AskForHandover(o, plan, controlSocket, log) : plan;
    }

    /// <summary>
    /// A node runs on our device: ask it to hand the device and sockets over (its offer checked
    /// against this plan). If it stopped meanwhile, this is a plain start after all.
    /// </summary>
    private static NodePlan AskForHandover(RunOptions o, NodePlan plan, string controlSocket, ILogger log)
    {
        if (HandoverSuccessor.Ask(controlSocket, OfferOf(o, plan, tunFlags: 0)) is HandoverSuccessor predecessor)
        {
            log.Information("Hand-over: {Predecessor} runs on {Device} and offers its queues (protocol version {Version})",
                predecessor.Predecessor, plan.DeviceName, predecessor.Offer.Version);
            return plan with { Predecessor = predecessor };
        }
        return plan with { Existing = CheckDeviceFree(o, plan.DeviceName, plan.Source) };
    }

    /// <summary>What this node is, as a hand-over offer says it (a successor compares its own with the running node's).</summary>
    private static HandoverOffer OfferOf(RunOptions o, NodePlan plan, uint tunFlags) => new()
    {
        Version = HandoverChannel.HighestVersion,
        Pid = Environment.ProcessId,
        Device = plan.DeviceName,
        Source = plan.Source.Name(),
        Backend = plan.Node.Profile.Name,
        Port = plan.Node.Port,
        Queues = o.Queues,
        Offload = o.Offload,
        TunFlags = tunFlags,
        Subnet = plan.Node.ForwardsIpv4 ? plan.Node.Subnet.ToString() : "",
        Subnet6 = plan.Node.Ipv6Subnet?.ToString() ?? "",
        PublicIp = plan.Node.ForwardsIpv4 ? plan.Node.Lease.PublicIpText : "",
        PublicIpv6 = plan.Node.ForwardsIpv6 && plan.Node.PublicIpv6 is UInt128 v6 ? Ipv6Prefix.Format(v6) : "",
        VtepMac = plan.Node.Profile.NeedsVtepMac ? plan.Node.VtepMac.ToString() : "",
        IpMasq = o.IpMasq,
    };

    /// <summary>Where is our underlay: the public addresses (flags, else the interface's) and their interface, each checked to be this host's.</summary>
    private static Underlay FindUnderlay(RunOptions o, ClusterSnapshot snapshot, IpFamilies network, ILogger log)
    {
        UnderlayInterface.Choice? chosen = UnderlayInterface.Choose(o.Ifaces, o.IfaceRegexes, o.IfaceCanReach, log);
        string? iface = chosen?.Name;
        uint publicIp = 0;
        string? underlay = null;
        if (network != IpFamilies.Ipv6Only)
        {
            publicIp = o.PublicIp is not null ? Ipv4Prefix.ToUInt32(o.PublicIp) : chosen?.Address ?? DefaultPublicIp(ref iface);
            underlay = HostInfo.InterfaceWith(publicIp)
                ?? throw new ConfigException($"public IP {Ipv4Prefix.Format(publicIp)} is not an address of this host");
        }
        UInt128? publicIpv6 = null;
        if (network != IpFamilies.Ipv4)
        {
            string? v6Iface = iface ?? underlay ?? HostInfo.DefaultRouteInterface();
            publicIpv6 = o.PublicIpv6 is IPAddress given ? HostInfo.ToUInt128(given) : v6Iface is null ? null : HostInfo.Ipv6AddressOf(v6Iface);
            if (o.PublicIpv6 is not null && HostInfo.InterfaceWith(publicIpv6!.Value) is null)
            {
                throw new ConfigException($"--public-ipv6 {o.PublicIpv6}: not an address of this host");
            }
        }
        if (network == IpFamilies.Ipv6Only)
        {
            // No address given or found on an interface: a lease naming one of this host's addresses is ours (as PublicIP picks it with IPv4).
            publicIpv6 ??= snapshot.Leases.Select(l => l.PublicIpv6).FirstOrDefault(a => a is UInt128 v6 && HostInfo.InterfaceWith(v6) is not null);
            UInt128 address = publicIpv6 ?? throw new ConfigException(
                "the network is IPv6-only (EnableIPv4 false) and this node has no IPv6 underlay address: give --public-ipv6, or an --iface with a global IPv6 address");
            underlay = HostInfo.InterfaceWith(address)!;
            if (o.IpMasq)
            {
                throw new ConfigException("--ip-masq on an IPv6-only network: not supported (flanneld's IPv6 masquerade rules are ip6tables; this node installs IPv4 rules only)");
            }
        }
        return new Underlay(publicIp, publicIpv6, underlay!);
    }

    /// <summary>
    /// flanneld's rule (main.go, GetStoredPublicIP): a public address the store keeps for this node
    /// (our Node's <c>node-public-ip</c>, <c>node-public-ipv6</c>) wins over <c>--public-ip</c> and
    /// <c>--public-ipv6</c>; said in one line.
    /// </summary>
    private static RunOptions WithStoredPublicIps(RunOptions o, ClusterSnapshot snapshot, ILogger log) => o with
    {
        PublicIp = Stored(snapshot.StoredPublicIp, System.Net.Sockets.AddressFamily.InterNetwork, "Public IP", "--public-ip", o.PublicIp, log),
        PublicIpv6 = Stored(snapshot.StoredPublicIpv6, System.Net.Sockets.AddressFamily.InterNetworkV6, "Public IPv6", "--public-ipv6", o.PublicIpv6, log),
    };

    /// <summary>The stored address of one family in place of the flag's, said; the flag's when none is stored.</summary>
    private static IPAddress? Stored((string Address, string From)? stored, System.Net.Sockets.AddressFamily family, string what, string flag,
        IPAddress? given, ILogger log)
    {
        if (stored is not (string text, string from))
        {
            return given;
        }
        IPAddress a = IPAddress.TryParse(text, out IPAddress? p) && p.AddressFamily == family ? p
            : throw new ConfigException($"{from}: '{text}' is not an {(family == System.Net.Sockets.AddressFamily.InterNetwork ? "IPv4" : "IPv6")} address");
        log.Information("{What} {Address} from {From}{Instead}", what, text, from, given is null ? "" : $" (instead of {flag} {given})");
        return a;
    }

    /// <summary>No --public-ip: the IPv4 address of --iface, else of the default route's interface (which <paramref name="iface"/> then names).</summary>
    private static uint DefaultPublicIp(ref string? iface)
    {
        iface ??= HostInfo.DefaultRouteInterface()
            ?? throw new ConfigException("no --public-ip and no --iface, and there is no default route to take the interface from");
        return HostInfo.Ipv4AddressOf(iface)
            ?? throw new ConfigException($"interface {iface} has no IPv4 address to use as the public IP; give --public-ip");
    }

    /// <summary>Our lease: the file's, or reused or taken in the store (everything local has been checked by now).</summary>
    private static LeaseRecord AcquireLease(ILeaseSource leases, ClusterSnapshot snapshot, Underlay underlay, BackendProfile profile) =>
        leases.Acquire(snapshot, new LeaseRequest(underlay.PublicIp, profile.Kind, snapshot.Config.Vni)
        {
            // vxlan carries IPv6 over the IPv6 underlay only (as flannel-v6.1); udp can over IPv4 too.
            WantsIpv6 = snapshot.Config.EnableIpv6
                && (underlay.PublicIpv6 is not null || profile.CarriesIpv6OverIpv4 && snapshot.Config.Families != IpFamilies.Ipv6Only),
            PublicIpv6 = underlay.PublicIpv6,
        });

    /// <summary>Our IPv6 underlay address as the lease has it (a static file's, or one flanneld left), checked to be ours; else the one found.</summary>
    private static UInt128? LeasedIpv6(RunOptions o, ClusterSnapshot snapshot, LeaseRecord lease, Underlay underlay)
    {
        if (!snapshot.Config.EnableIpv6 || lease.PublicIpv6 is not UInt128 leased)
        {
            return underlay.PublicIpv6;
        }
        if (o.PublicIpv6 is not null && leased != underlay.PublicIpv6)
        {
            throw new ConfigException($"--public-ipv6 {o.PublicIpv6}: our lease {lease.Key} has PublicIPv6 {Ipv6Prefix.Format(leased)}");
        }
        if (HostInfo.InterfaceWith(leased) is null)
        {
            throw new ConfigException($"our lease {lease.Key} has PublicIPv6 {Ipv6Prefix.Format(leased)}, which is not an address of this host");
        }
        return leased;
    }

    /// <summary>
    /// The MTU of the IPv6 route when the node forwards IPv6 (0 otherwise): IPv6 inner packets may
    /// travel over the IPv6 underlay, 20 bytes more than over IPv4. Says why a dual-stack network's
    /// node forwards IPv4 only.
    /// </summary>
    private static int Ipv6RouteMtu(NodeIdentity node, int deviceMtu, int underlayMtu, ILogger log)
    {
        if (node.Config.Ipv6Network is not Ipv6Prefix network6)
        {
            return 0;
        }
        if (node.Ipv6Subnet is not Ipv6Prefix ours6)
        {
            log.Warning("The network config enables IPv6 ({Ipv6Network}) but this node forwards IPv4 only: {Why}", network6,
                node.Lease.Ipv6Subnet is null && (node.PublicIpv6 is not null || node.Profile.CarriesIpv6OverIpv4) ? $"our lease {node.Lease.Key} has no IPv6 subnet"
                : "no IPv6 underlay address (give --public-ipv6, or an --iface with a global IPv6 address); vxlan carries IPv6 over IPv6 as flannel-v6.1 does");
            return 0;
        }
        int underlayMtu6 = node.PublicIpv6 is UInt128 a && HostInfo.InterfaceWith(a) is string iface6 ? RouteNetlink.GetMtu(iface6) : underlayMtu;
        log.Information("IPv6: subnet {Subnet} of {Network}, underlay {Underlay}", ours6, network6,
            node.PublicIpv6 is UInt128 u ? Ipv6Prefix.Format(u) : "IPv4 (no IPv6 address: the udp backend carries IPv6 over IPv4)");
        return Math.Min(deviceMtu, node.Profile.InnerMtu(underlayMtu6, ipv6Underlay: true));
    }

    /// <summary>
    /// Is the device ours to take: no node runs on it (its control socket does not answer), and a
    /// device of that name on the host is one of ours that this start can take over (else one line
    /// that says what is in the way). Returns that device, or null when there is none.
    /// </summary>
    /// <param name="attachedByUs">The device's queues are attached by descriptors systemd kept for us: its carrier is ours.</param>
    private static ExistingDevice? CheckDeviceFree(RunOptions o, string device, DeviceSource source, bool attachedByUs = false)
    {
        ExistingDevice.RefuseIfRunning(o.ControlSocket ?? Metrics.StatsCommand.DefaultSocket(device), device);
        ExistingDevice? existing = ExistingDevice.Find(device);
        existing?.Check(source, o.Queues, attachedByUs);
        return existing;
    }

    /// <summary>
    /// The descriptors systemd kept for our device (<see cref="DescriptorStore"/>), checked to be
    /// what this start would make; dropped (and systemd told) when the device is gone, refused in
    /// one line (and dropped, so the next start makes the queues anew) when this start differs.
    /// </summary>
    private static StoredDescriptors? TakeStored(RunOptions o, string device, DeviceSource source, ILogger log)
    {
        StoredDescriptors? stored = DescriptorStore.Take(device, log);
        if (stored is null)
        {
            return null;
        }
        var differences = new List<string>();
        HandoverOffer.AddDifference(differences, "--queues", stored.Queues.Count.ToString(CultureInfo.InvariantCulture), o.Queues.ToString(CultureInfo.InvariantCulture));
        HandoverOffer.AddDifference(differences, "--source", stored.Source, source.Name());
        HandoverOffer.AddDifference(differences, "--offload", stored.Offload ? "on" : "off", o.Offload ? "on" : "off");
        bool gone = ExistingDevice.Find(device) is null;
        if (gone || differences.Count > 0 || !stored.Complete)
        {
            DescriptorStore.Forget(stored.Names);
            stored.Dispose();
            if (gone)
            {
                log.Warning("systemd kept descriptors of {Device}, which is gone (deleted meanwhile): dropped them; the device is made anew", device);
                return null;
            }
            throw new ConfigException($"systemd kept {device}'s queues as an earlier start made them, and this start differs "
                + $"({(differences.Count > 0 ? string.Join("; ", differences) : "some are missing")}): dropped them from its store, so the next start makes them anew");
        }
        log.Information("systemd kept {Queues} queues of {Device} ({Count} descriptors, FDSTORE): taking them over with what is queued in them",
            stored.Queues.Count, device, stored.Names.Count);
        return stored;
    }

    /// <summary>
    /// <c>--source</c>: tun needs /dev/net/tun; auto takes tun when /dev/net/tun opens, else the
    /// packet source (a veth pair), and says which and why in one line.
    /// </summary>
    private static DeviceSource ChooseSource(DeviceSource wanted, ILogger log)
    {
        if (wanted == DeviceSource.Packet)
        {
            log.Information("Source: packet (--source packet)");
            return wanted;
        }
        string? problem = TunDevice.CanOpen();
        if (problem is null)
        {
            log.Information("Source: tun ({Path} opens)", TunDevice.ClonePath);
            return DeviceSource.Tun;
        }
        if (wanted == DeviceSource.Tun)
        {
            throw new ConfigException($"--source tun: {problem}: load the tun module (modprobe tun), give the container the device, or use --source packet");
        }
        log.Information("Source: packet, a veth pair read with AF_PACKET ({Problem})", problem);
        return DeviceSource.Packet;
    }
}
