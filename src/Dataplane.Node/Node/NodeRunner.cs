using System.Net;
using System.Runtime.InteropServices;
using Dataplane.Capture;
using Dataplane.Encap;
using Dataplane.Engine;
using Dataplane.Leases;
using Dataplane.Metrics;
using System.Net.Sockets;
using Dataplane.TunTap;
using Serilog;

namespace Dataplane.Node;

/// <summary>
/// <c>dataplane run</c>: one node of the overlay, from flags to forwarding and back.
///
///  1. Resolve everything that can be wrong before touching the host: the lease file, our public
///     IP and its interface, our lease, the backend, /dev/net/tun, CAP_NET_ADMIN. Any problem is a
///     <see cref="ConfigException"/>: one line, non-zero exit, nothing created.
///  2. Create the device (a TUN: closing it deletes it), bind the UDP socket, then set the device
///     up with flannel's MTU, address <c>&lt;subnet&gt;.0/32</c> and route <c>&lt;Network&gt; dev &lt;device&gt;</c>.
///     A failure here undoes what was done.
///  3. Write subnet.env, start the loops and the lease-file watcher, log "Ready".
///  4. On SIGINT/SIGTERM: stop the watcher and the loops, delete the route and the device, exit 0.
///     If the device is deleted under us: one error line, clean up the rest, exit 1.
/// </summary>
internal static class NodeRunner
{
    public static int Run(RunOptions o, ILogger log)
    {
        using ILeaseSource leases = LeaseSources.Create(o.LeasesPath, o.Etcd, o.Kube, log);
        NodePlan plan = Plan(o, leases, log);
        log.Information("Lease acquired: {Subnet} (public IP {PublicIP} on {Iface})",
            plan.Node.Ipv6Only ? plan.Node.Ipv6Subnet.ToString() : plan.Node.Subnet.ToString(),
            plan.Node.Ipv6Only ? Ipv6Prefix.Format(plan.Node.PublicIpv6.GetValueOrDefault()) : plan.Node.Lease.PublicIpText, plan.UnderlayIface);

        DataplaneEngine? engine = null;
        var tables = new PeerTables(plan.Node, table => engine!.Publish(table), log);
        SubnetTable table = tables.First(plan.Snapshot);

        // The metrics port is the one thing that can still be refused: bind it before creating anything.
        MetricsText.Source? metricsSource = null;
        using MetricsServer? metrics = plan.MetricsEndpoint is null ? null
            : StartMetrics(plan.MetricsEndpoint, () => metricsSource is { } m ? MetricsText.Render(m) : "", log);

        using var stopping = new ManualResetEventSlim();
        using PosixSignalRegistration sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stopping.Set(); });
        using PosixSignalRegistration sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stopping.Set(); });

        using NodeDevice device = NodeDevice.Create(plan, o.Offload, o.Batch, o.Queues, log);
        var settings = new EngineSettings(plan.Node.Backend, plan.Node.Vni, plan.Node.VtepMac, o.Batch)
        {
            IcmpRate = o.IcmpRate,
            IcmpBurst = o.IcmpBurst,
            Assist = o.Assist,
            OurVtepMacV6 = plan.Node.VtepMacV6,
        };
        var captures = new CaptureHub();
        using var running = new DataplaneEngine([.. device.Queues.Select(q => FaultInjection.Wrap(o.InjectFault, q))], table, settings, captures);
        engine = running;

        using IpMasq? masq = o.IpMasq ? IpMasq.Install(plan.Node.Config.Network, plan.Node.Subnet, log) : null;
        SubnetEnvFile.Write(o.SubnetFile, plan.Ipv4Subnets, plan.DeviceMtu, o.IpMasq, plan.Ipv6Subnets);
        log.Information("Wrote {Path}", o.SubnetFile);

        running.Start();
        leases.Watch(tables);
        var metricsNow = new MetricsText.Source(running, plan.Node.Profile.Name, plan.DeviceName, o.Batch, device)
        {
            Facts = Describe(plan, leases.Description, o.SubnetFile, o.IpMasq),
            Captures = captures,
        };
        metricsSource = metricsNow;
        string controlPath = o.ControlSocket ?? StatsCommand.DefaultSocket(plan.DeviceName);
        string overlayName = $"overlay {plan.DeviceName}", underlayName = $"underlay {device.Underlay}";
        using MetricsServer control = MetricsServer.Unix(controlPath, () => MetricsText.Render(metricsNow),
            (client, line) => CaptureServer.TryStart(client, line, captures, overlayName, underlayName, settings.SlotSize, log));
        log.Information("Control socket {Path} (dataplane stats --control-socket {Path})", controlPath, controlPath);
        log.Information("Ready: backend {Backend}, VNI {Vni}, listening on {Endpoint}, device {Device}",
            plan.Node.Profile.Name, plan.Node.Vni,
            device.Underlay, plan.DeviceName);

        ServiceNotifier.Notify("READY=1\nSTATUS=forwarding");
        int woke = WaitHandle.WaitAny([stopping.WaitHandle, running.Faulted]);
        ServiceNotifier.Notify("STOPPING=1");
        if (woke == 1 && running.Failure is LoopFailure failure)
        {
            // Exit non-zero rather than recreate the device or restart the loop: whatever deleted
            // the device may do so again, and a restart by the service manager runs every start-up
            // check anew. An unexpected exception is logged here, once, with its stack.
            log.Error(failure.Exception, "Stopping: {Failure}; exiting with status 1 so the service manager restarts the node", failure.Reason);
        }
        else
        {
            log.Information("Stopping");
        }
        leases.Dispose();
        captures.EndAll();
        running.Stop();
        CountersReport.Log(running, log);
        CountersReport.LogOffloads(device, log);
        return woke == 1 ? 1 : 0;
    }

    /// <summary>The labels of <c>dataplane_node_info</c>: what <c>dataplane doctor</c> checks the host against.</summary>
    private static IReadOnlyList<(string Key, string Value)> Describe(NodePlan plan, string leaseSource, string subnetFile, bool ipMasq) =>
    [
        ("network", plan.Node.Ipv6Only ? "" : plan.Node.Config.Network.ToString()),
        ("subnet", plan.Node.Ipv6Only ? "" : plan.Node.Subnet.ToString()),
        ("public_ip", plan.Node.Ipv6Only ? "" : plan.Node.Lease.PublicIpText),
        ("port", plan.Node.Port.ToString(System.Globalization.CultureInfo.InvariantCulture)),
        ("device", plan.DeviceName),
        ("mtu", plan.DeviceMtu.ToString(System.Globalization.CultureInfo.InvariantCulture)),
        ("backend", plan.Node.Profile.Name),
        ("lease_source", leaseSource),
        ("subnet_file", Path.GetFullPath(subnetFile)),
        ("ip_masq", ipMasq ? "true" : "false"),
        ("ipv6_network", plan.Ipv6Subnets?.Network.ToString() ?? ""),
        ("ipv6_subnet", plan.Ipv6Subnets?.Subnet.ToString() ?? ""),
        ("public_ipv6", plan.Node.Ipv6Subnet is not null && plan.Node.PublicIpv6 is UInt128 p6 ? Ipv6Prefix.Format(p6) : ""),
        ("pid", Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture)),
    ];

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

    private static MetricsServer StartMetrics(IPEndPoint endpoint, Func<string> render, ILogger log)
    {
        try
        {
            MetricsServer server = MetricsServer.Http(endpoint, render);
            log.Information("Metrics at http://{Endpoint}/metrics", endpoint);
            return server;
        }
        catch (SocketException e)
        {
            throw new ConfigException($"--metrics {endpoint}: cannot listen: {e.SocketErrorCode}");
        }
    }

    /// <summary>Step 1: everything checked, nothing created; our lease acquired last.</summary>
    public static NodePlan Plan(RunOptions o, ILeaseSource leases, ILogger log)
    {
        ClusterSnapshot snapshot = leases.Start();
        bool ipv6Only = !snapshot.Config.EnableIpv4;
        log.Information("{Source}: network {Network}, SubnetLen {Len}, {Count} leases", leases.Description,
            ipv6Only ? $"{snapshot.Config.Ipv6Network} (IPv6-only)" : snapshot.Config.Network.ToString(),
            ipv6Only ? snapshot.Config.Ipv6SubnetLength : snapshot.Config.SubnetLength, snapshot.Leases.Count);

        // The flags arrive typed and range-checked; what remains is what only the host can answer.
        uint publicIp = 0;
        string? iface = o.Iface;
        if (iface is not null && !HostInfo.InterfaceExists(iface))
        {
            throw new ConfigException($"--iface {iface}: no such interface");
        }
        string? underlay = null;
        if (!ipv6Only)
        {
            if (o.PublicIp is not null)
            {
                publicIp = Ipv4Prefix.ToUInt32(o.PublicIp);
            }
            else
            {
                iface ??= HostInfo.DefaultRouteInterface()
                    ?? throw new ConfigException("no --public-ip and no --iface, and there is no default route to take the interface from");
                publicIp = HostInfo.Ipv4AddressOf(iface)
                    ?? throw new ConfigException($"interface {iface} has no IPv4 address to use as the public IP; give --public-ip");
            }
            underlay = HostInfo.InterfaceWith(publicIp)
                ?? throw new ConfigException($"public IP {Ipv4Prefix.Format(publicIp)} is not an address of this host");
        }
        UInt128? publicIpv6 = null;
        if (snapshot.Config.EnableIpv6)
        {
            string? v6Iface = iface ?? underlay ?? HostInfo.DefaultRouteInterface();
            publicIpv6 = o.PublicIpv6 is IPAddress given ? HostInfo.ToUInt128(given) : v6Iface is null ? null : HostInfo.Ipv6AddressOf(v6Iface);
            if (o.PublicIpv6 is not null && HostInfo.InterfaceWith(publicIpv6!.Value) is null)
            {
                throw new ConfigException($"--public-ipv6 {o.PublicIpv6}: not an address of this host");
            }
        }
        if (ipv6Only)
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

        BackendKind backend = o.Backend ?? snapshot.Config.Backend;
        BackendProfile profile = BackendProfile.Of(backend);
        int port = o.Port ?? (backend == snapshot.Config.Backend ? snapshot.Config.Port : profile.DefaultPort);
        string device = o.Device ?? profile.DefaultDevice;
        DeviceSource source = ChooseSource(o.Source, log);
        if (!HostInfo.HasNetAdmin())
        {
            throw new ConfigException("needs CAP_NET_ADMIN to create the device and its routes (run as root)");
        }
        int underlayMtu = RouteNetlink.GetMtu(underlay!);
        int overhead = profile.Overhead(ipv6Underlay: ipv6Only);
        // Everything local checked: now our lease (the file's, or reused or taken in the store).
        LeaseRecord lease = leases.Acquire(snapshot, new LeaseRequest(publicIp, backend, snapshot.Config.Vni)
        {
            // vxlan carries IPv6 over the IPv6 underlay only (as flannel-v6.1); udp can over IPv4 too.
            WantsIpv6 = snapshot.Config.EnableIpv6 && (publicIpv6 is not null || profile.CarriesIpv6OverIpv4 && !ipv6Only),
            PublicIpv6 = publicIpv6,
        });
        if (snapshot.Config.EnableIpv6 && lease.PublicIpv6 is UInt128 leased)
        {
            // The lease names our IPv6 underlay address (a static file's, or one flanneld left): it must be ours.
            if (o.PublicIpv6 is not null && leased != publicIpv6)
            {
                throw new ConfigException($"--public-ipv6 {o.PublicIpv6}: our lease {lease.Key} has PublicIPv6 {Ipv6Prefix.Format(leased)}");
            }
            if (HostInfo.InterfaceWith(leased) is null)
            {
                throw new ConfigException($"our lease {lease.Key} has PublicIPv6 {Ipv6Prefix.Format(leased)}, which is not an address of this host");
            }
            publicIpv6 = leased;
        }
        var node = new NodeIdentity(lease, snapshot.Config, backend, port, snapshot.Config.Vni) { PublicIpv6 = publicIpv6 };
        int ipv6RouteMtu = 0;
        if (snapshot.Config.Ipv6Network is Ipv6Prefix network6)
        {
            if (node.Ipv6Subnet is Ipv6Prefix ours6)
            {
                // IPv6 inner packets may travel over the IPv6 underlay: 20 bytes more than over IPv4.
                int overhead6 = profile.Overhead(ipv6Underlay: true);
                int underlayMtu6 = publicIpv6 is UInt128 a && HostInfo.InterfaceWith(a) is string iface6 ? RouteNetlink.GetMtu(iface6) : underlayMtu;
                ipv6RouteMtu = Math.Min(underlayMtu - overhead, underlayMtu6 - overhead6);
                log.Information("IPv6: subnet {Subnet} of {Network}, underlay {Underlay}", ours6, network6,
                    publicIpv6 is UInt128 u ? Ipv6Prefix.Format(u) : "IPv4 (no IPv6 address: the udp backend carries IPv6 over IPv4)");
            }
            else
            {
                log.Warning("The network config enables IPv6 ({Ipv6Network}) but this node forwards IPv4 only: {Why}", network6,
                    lease.Ipv6Subnet is null && (publicIpv6 is not null || profile.CarriesIpv6OverIpv4) ? $"our lease {lease.Key} has no IPv6 subnet"
                    : "no IPv6 underlay address (give --public-ipv6, or an --iface with a global IPv6 address); vxlan carries IPv6 over IPv6 as flannel-v6.1 does");
            }
        }
        return new NodePlan(snapshot, node, underlay!, device, underlayMtu - overhead)
        {
            MetricsEndpoint = o.Metrics,
            BindAddress = publicIp,
            Source = source,
            Ipv6RouteMtu = ipv6RouteMtu,
        };
    }
}
