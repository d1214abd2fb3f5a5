using System.Net;
using System.Runtime.InteropServices;
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
        NodePlan plan = Plan(o, log);
        using EtcdLeaseSource? etcd = plan.Etcd;
        log.Information("{Source}: network {Network}, SubnetLen {Len}, {Count} leases",
            plan.LeaseSource, plan.Node.Config.Network, plan.Node.Config.SubnetLength, plan.Snapshot.Leases.Count);
        log.Information("Lease acquired: {Subnet} (public IP {PublicIP} on {Iface})",
            plan.Node.Subnet, plan.Node.Lease.PublicIpText, plan.UnderlayIface);

        var skipped = new List<string>();
        SubnetTable table = plan.Node.BuildTable(plan.Snapshot, skipped);
        foreach (string s in skipped)
        {
            log.Warning("Lease skipped: {Reason}", s);
        }

        // The metrics port is the one thing that can still be refused: bind it before creating anything.
        MetricsText.Source? metricsSource = null;
        using MetricsServer? metrics = plan.MetricsEndpoint is null ? null
            : StartMetrics(plan.MetricsEndpoint, () => metricsSource is { } m ? MetricsText.Render(m) : "", log);

        using var stopping = new ManualResetEventSlim();
        using PosixSignalRegistration sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stopping.Set(); });
        using PosixSignalRegistration sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stopping.Set(); });

        using NodeDevice device = NodeDevice.Create(plan, o.Offload, o.Batch, o.Queues, log);
        var settings = new EngineSettings(plan.Node.Backend, plan.Node.Vni, plan.Node.VtepMac, o.Batch) { IcmpRate = o.IcmpRate, IcmpBurst = o.IcmpBurst };
        using var engine = new DataplaneEngine([.. device.Queues.Select(q => ((IPacketDevice)q.Tun, (IDatagramSocket)q.Socket))], table, settings);
        StaticLeaseSource.LogChanges([], table.Peers, log);

        using IpMasq? masq = o.IpMasq ? IpMasq.Install(plan.Node.Config.Network, plan.Node.Subnet, log) : null;
        SubnetEnvFile.Write(o.SubnetFile, plan.Node.Config.Network, plan.Node.Subnet, plan.DeviceMtu, o.IpMasq);
        log.Information("Wrote {Path}", o.SubnetFile);

        engine.Start();
        using StaticLeaseSource? source = etcd is null ? new StaticLeaseSource(o.LeasesPath!, plan.Node, table, engine.Publish, log) : null;
        etcd?.Start(plan.Node, table, engine.Publish);
        var metricsNow = new MetricsText.Source(engine, plan.Node.Backend.ToString().ToLowerInvariant(), plan.DeviceName, o.Batch, device.Queues);
        metricsSource = metricsNow;
        string controlPath = o.ControlSocket ?? StatsCommand.DefaultSocket(plan.DeviceName);
        using MetricsServer control = MetricsServer.Unix(controlPath, () => MetricsText.Render(metricsNow));
        log.Information("Control socket {Path} (dataplane stats --socket {Path})", controlPath, controlPath);
        log.Information("Ready: backend {Backend}, VNI {Vni}, listening on {Endpoint}, device {Device}",
            plan.Node.Backend.ToString().ToLowerInvariant(), plan.Node.Vni, device.Socket.LocalEndpoint, device.Tun.Name);

        ServiceNotifier.Notify("READY=1\nSTATUS=forwarding");
        int woke = WaitHandle.WaitAny([stopping.WaitHandle, engine.Faulted]);
        ServiceNotifier.Notify("STOPPING=1");
        if (woke == 1)
        {
            // Exit non-zero rather than recreate the device: whatever deleted it may do so again,
            // and a restart by the service manager runs every start-up check anew.
            log.Error("Stopping: {Failure}; exiting with status 1 so the service manager restarts the node", engine.Failure);
        }
        else
        {
            log.Information("Stopping");
        }
        source?.Dispose();
        etcd?.Dispose();
        engine.Stop();
        CountersReport.Log(engine, log);
        CountersReport.LogOffloads(device, log);
        return woke == 1 ? 1 : 0;
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

    /// <summary>Step 1: everything checked, nothing created.</summary>
    public static NodePlan Plan(RunOptions o, ILogger log)
    {
        EtcdLeaseSource? etcd = null;
        try
        {
            return Plan(o, log, ref etcd);
        }
        catch
        {
            etcd?.Dispose();
            throw;
        }
    }

    private static NodePlan Plan(RunOptions o, ILogger log, ref EtcdLeaseSource? etcd)
    {
        ClusterSnapshot snapshot;
        string leaseSource;
        if (o.Etcd is not null)
        {
            if (!string.IsNullOrEmpty(o.LeasesPath))
            {
                throw new ConfigException("two lease sources: give --leases FILE or --etcd-endpoints URL, not both");
            }
            (etcd, snapshot) = EtcdLeaseSource.Connect(o.Etcd, log);
            leaseSource = $"etcd {etcd.Where}";
        }
        else if (string.IsNullOrEmpty(o.LeasesPath))
        {
            throw new ConfigException("no lease source: give --leases FILE (the static cluster file) or --etcd-endpoints URL");
        }
        else
        {
            snapshot = ClusterFile.Load(o.LeasesPath);
            leaseSource = $"lease file {o.LeasesPath}";
        }

        uint publicIp;
        string? iface = o.Iface;
        if (iface is not null && !HostInfo.InterfaceExists(iface))
        {
            throw new ConfigException($"--iface {iface}: no such interface");
        }
        if (o.PublicIp is not null)
        {
            if (!Ipv4Prefix.TryParseAddress(o.PublicIp, out publicIp))
            {
                throw new ConfigException($"--public-ip {o.PublicIp}: not an IPv4 address");
            }
        }
        else
        {
            iface ??= HostInfo.DefaultRouteInterface()
                ?? throw new ConfigException("no --public-ip and no --iface, and there is no default route to take the interface from");
            publicIp = HostInfo.Ipv4AddressOf(iface)
                ?? throw new ConfigException($"interface {iface} has no IPv4 address to use as the public IP; give --public-ip");
        }
        string underlay = HostInfo.InterfaceWith(publicIp)
            ?? throw new ConfigException($"public IP {Ipv4Prefix.Format(publicIp)} is not an address of this host");

        LeaseRecord? lease = snapshot.LeaseOf(publicIp);
        if (lease is null && etcd is null)
        {
            throw new ConfigException($"lease file {o.LeasesPath}: no lease has PublicIP {Ipv4Prefix.Format(publicIp)} (this node)");
        }

        BackendKind backend = snapshot.Config.Backend;
        if (o.Backend is not null && !NetworkConfig.TryParseBackend(o.Backend, out backend))
        {
            throw new ConfigException($"--backend {o.Backend}: unknown backend (supported: udp, vxlan)");
        }
        int port = o.Port ?? (backend == snapshot.Config.Backend ? snapshot.Config.Port : NetworkConfig.DefaultPort(backend));
        if (port is < 1 or > 65535)
        {
            throw new ConfigException($"--port {port}: not a UDP port");
        }
        if (etcd is null && backend == BackendKind.Vxlan && lease!.VtepMac is null)
        {
            throw new ConfigException($"lease file {o.LeasesPath}: our lease {lease.Subnet} has no BackendData.VtepMAC, which vxlan needs");
        }
        string device = o.Device ?? (backend == BackendKind.Vxlan ? "flannel.1" : "flannel0");
        if (device.Length is 0 or > 15 || device.Contains('/') || device.Any(char.IsWhiteSpace))
        {
            throw new ConfigException($"--device {device}: not a valid interface name (1 to 15 characters, no '/' or spaces)");
        }
        IPEndPoint? metricsEndpoint = null;
        if (o.Metrics is not null)
        {
            string text = o.Metrics.StartsWith(':') ? "0.0.0.0" + o.Metrics : o.Metrics;
            if (!IPEndPoint.TryParse(text, out metricsEndpoint) || metricsEndpoint.Port == 0)
            {
                throw new ConfigException($"--metrics {o.Metrics}: not ADDR:PORT (for example 127.0.0.1:9100 or :9100)");
            }
        }
        if (o.IcmpRate < 0 || o.IcmpBurst < 1)
        {
            throw new ConfigException($"--icmp-rate {o.IcmpRate} --icmp-burst {o.IcmpBurst}: the rate must be 0 or more, the burst 1 or more");
        }
        if (o.Queues is < 1 or > 64)
        {
            throw new ConfigException($"--queues {o.Queues}: must be 1 to 64");
        }
        if (o.Batch is < 1 or > EngineSettings.MaxBatch)
        {
            throw new ConfigException($"--batch {o.Batch}: must be 1 to {EngineSettings.MaxBatch}");
        }
        if (!File.Exists(TunDevice.ClonePath))
        {
            throw new ConfigException($"{TunDevice.ClonePath} is missing: load the tun module (modprobe tun) or give the container the device");
        }
        if (!HostInfo.HasNetAdmin())
        {
            throw new ConfigException("needs CAP_NET_ADMIN to create the device and its routes (run as root)");
        }
        int underlayMtu = RouteNetlink.GetMtu(underlay);
        int overhead = backend == BackendKind.Vxlan ? Overheads.VxlanBackend : Overheads.UdpBackend;
        if (etcd is not null)
        {
            // Everything local checked: now take (or reuse) our subnet in the cluster.
            lease = etcd.Acquire(snapshot, publicIp, backend, snapshot.Config.Vni);
            LeaseRecord ours = lease;
            snapshot = snapshot with { Leases = [.. snapshot.Leases.Where(l => l.PublicIp != ours.PublicIp && l.Subnet != ours.Subnet), ours] };
        }
        var node = new NodeIdentity(lease!, snapshot.Config, backend, port, snapshot.Config.Vni);
        return new NodePlan(snapshot, node, underlay, device, underlayMtu - overhead)
        {
            MetricsEndpoint = metricsEndpoint,
            Etcd = etcd,
            LeaseSource = leaseSource,
        };
    }
}
