using System.Net;
using System.Net.Sockets;
using Dataplane.Capture;
using Dataplane.Encap;
using Dataplane.Engine;
using Dataplane.Leases;
using Dataplane.Metrics;
using Serilog;

namespace Dataplane.Node;

/// <summary>
/// <c>dataplane run</c>: one node of the overlay, from flags to forwarding and back. The order:
///
///  1. Plan (<see cref="Plan"/>, in NodeRunner.Plan.cs): read the network config and the leases, then
///     answer, in order, what families the network has, where our underlay is, which backend, port
///     and device, which device source, whether we may (CAP_NET_ADMIN), the underlay's MTU, and last
///     our lease (taken or renewed in a store). Any problem is a <see cref="ConfigException"/>: one
///     line, non-zero exit, nothing created.
///  2. Build the first subnet table from the leases; bind the metrics port (the one thing that can
///     still be refused); register SIGINT/SIGTERM.
///  3. Create the device and each queue's sockets, then set the device up with flannel's MTU,
///     address <c>&lt;subnet&gt;.0/32</c> and route <c>&lt;Network&gt; dev &lt;device&gt;</c>
///     (<see cref="NodeDevice"/>; a failure undoes what was done).
///  4. Install --ip-masq's rules, write subnet.env, start the loops and the lease watch, open the
///     control socket, log "Ready" and tell systemd.
///  5. Wait for SIGINT/SIGTERM, or a loop's failure (the device deleted under us, an exception).
///  6. Stop: the lease watch, captures and loops, log the counters, then (as the usings unwind) the
///     control socket, the rules, the device and its route. Exit 0, or 1 after a failure.
/// </summary>
internal static partial class NodeRunner
{
    public static int Run(RunOptions o, ILogger log)
    {
        using ILeaseSource leases = LeaseSources.Create(o.LeasesPath, o.Etcd, o.Kube, log);
        NodePlan plan = Plan(o, leases, log);                                                     // 1
        log.Information("Lease acquired: {Subnet} (public IP {PublicIP} on {Iface})", plan.Node.ForwardsIpv4 ? plan.Node.Subnet.ToString() : plan.Node.Ipv6Subnet.ToString(),
            plan.Node.ForwardsIpv4 ? plan.Node.Lease.PublicIpText : Ipv6Prefix.Format(plan.Node.PublicIpv6.GetValueOrDefault()), plan.UnderlayIface);

        DataplaneEngine? engine = null;                                                           // 2
        var tables = new PeerTables(plan.Node, table => engine!.Publish(table), log, HostInfo.LocalAddresses());
        SubnetTable table = tables.First(plan.Snapshot);
        MetricsText.Source? metricsSource = null;
        using MetricsServer? metrics = plan.MetricsEndpoint is null ? null
            : StartMetrics(plan.MetricsEndpoint, () => metricsSource is { } m ? MetricsText.Render(m) : "", log);
        using var signals = new StopSignals();

        using NodeDevice device = NodeDevice.Create(plan, o.Offload, o.Batch, o.Queues, o.OnExit, log);      // 3
        var captures = new CaptureHub();
        EngineSettings settings = Settings(o, plan);
        using var running = new DataplaneEngine([.. device.Queues.Select(q => FaultInjection.Wrap(o.InjectFault, q))], table, settings, captures);
        engine = running;

        using IpMasq? masq = o.IpMasq ? IpMasq.Install(plan.Node.Config.Network, plan.Node.Subnet, keep: o.OnExit == OnExit.Keep, log) : null;   // 4
        SubnetEnvFile.Write(o.SubnetFile, plan.Ipv4Subnets, plan.DeviceMtu, o.IpMasq, plan.Ipv6Subnets);
        log.Information("Wrote {Path}", o.SubnetFile);
        running.Start();
        leases.Watch(tables);
        var metricsNow = new MetricsText.Source(running, plan.Node.Profile.Name, plan.DeviceName, o.Batch, device)
        {
            Facts = Describe(plan, leases.Description, o.SubnetFile, o.IpMasq),
            Captures = captures,
            RejectedLeases = () => tables.Rejected,
        };
        metricsSource = metricsNow;
        using MetricsServer control = StartControl(o, plan, device, metricsNow, settings.SlotSize, log);
        log.Information("Ready: backend {Backend}, VNI {Vni}, listening on {Endpoint}, device {Device}",
            plan.Node.Profile.Name, plan.Node.Vni, device.Underlay, plan.DeviceName);
        ServiceNotifier.Notify("READY=1\nSTATUS=forwarding");

        bool failed = WaitForStop(signals, running, log);                                          // 5
        ServiceNotifier.Notify("STOPPING=1");
        leases.Dispose();                                                                          // 6
        captures.EndAll();
        running.Stop();
        CountersReport.Log(running, log);
        CountersReport.LogOffloads(device, log);
        return failed ? 1 : 0;
    }

    private static EngineSettings Settings(RunOptions o, NodePlan plan) => new(plan.Node.Backend, plan.Node.Vni, plan.Node.VtepMac, o.Batch)
    {
        IcmpRate = o.IcmpRate,
        IcmpBurst = o.IcmpBurst,
        Assist = o.Assist,
        OurVtepMacV6 = plan.Node.VtepMacV6,
    };

    /// <summary>The control socket: <c>stats</c> and <c>doctor</c> read the metrics there, <c>capture</c> starts captures.</summary>
    private static MetricsServer StartControl(RunOptions o, NodePlan plan, NodeDevice device, MetricsText.Source metrics, int slotSize, ILogger log)
    {
        string path = o.ControlSocket ?? StatsCommand.DefaultSocket(plan.DeviceName);
        string overlayName = $"overlay {plan.DeviceName}", underlayName = $"underlay {device.Underlay}";
        CaptureHub captures = metrics.Captures!;
        MetricsServer control = MetricsServer.Unix(path, () => MetricsText.Render(metrics),
            (client, line) => CaptureServer.TryStart(client, line, captures, overlayName, underlayName, slotSize, log));
        log.Information("Control socket {Path} (dataplane stats --control-socket {Path})", path, path);
        return control;
    }

    /// <summary>Step 5: true when a loop failed (logged here, once, with its stack), false on SIGINT/SIGTERM.</summary>
    private static bool WaitForStop(StopSignals signals, DataplaneEngine running, ILogger log)
    {
        int woke = WaitHandle.WaitAny([signals.Stopping, running.Faulted]);
        if (woke == 1 && running.Failure is LoopFailure failure)
        {
            // Exit non-zero rather than recreate the device or restart the loop: whatever deleted
            // the device may do so again, and a restart by the service manager runs every start-up
            // check anew.
            log.Error(failure.Exception, "Stopping: {Failure}; exiting with status 1 so the service manager restarts the node", failure.Reason);
            return true;
        }
        log.Information("Stopping");
        return false;
    }

    /// <summary>The labels of <c>dataplane_node_info</c>: what <c>dataplane doctor</c> checks the host against.</summary>
    private static IReadOnlyList<(string Key, string Value)> Describe(NodePlan plan, string leaseSource, string subnetFile, bool ipMasq) =>
    [
        ("network", plan.Node.ForwardsIpv4 ? plan.Node.Config.Network.ToString() : ""),
        ("subnet", plan.Node.ForwardsIpv4 ? plan.Node.Subnet.ToString() : ""),
        ("public_ip", plan.Node.ForwardsIpv4 ? plan.Node.Lease.PublicIpText : ""),
        ("port", plan.Node.Port.ToString(System.Globalization.CultureInfo.InvariantCulture)),
        ("device", plan.DeviceName),
        ("mtu", plan.DeviceMtu.ToString(System.Globalization.CultureInfo.InvariantCulture)),
        ("backend", plan.Node.Profile.Name),
        ("lease_source", leaseSource),
        ("subnet_file", Path.GetFullPath(subnetFile)),
        ("ip_masq", ipMasq ? "true" : "false"),
        ("ipv6_network", plan.Ipv6Subnets?.Network.ToString() ?? ""),
        ("ipv6_subnet", plan.Ipv6Subnets?.Subnet.ToString() ?? ""),
        ("public_ipv6", plan.Node.ForwardsIpv6 && plan.Node.PublicIpv6 is UInt128 p6 ? Ipv6Prefix.Format(p6) : ""),
        ("pid", Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture)),
    ];

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
}
