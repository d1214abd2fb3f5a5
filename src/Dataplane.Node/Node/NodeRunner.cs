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
///     our lease (taken or renewed in a store); then, if a node already runs on our device, ask it
///     for a hand-over (<see cref="HandoverSuccessor"/>: its offer must match this plan). Any problem
///     is a <see cref="ConfigException"/>: one line, non-zero exit, nothing created.
///  2. Build the first subnet table from the leases; bind the metrics port (the one thing that can
///     still be refused); register SIGINT/SIGTERM.
///  3. Create the device and each queue's sockets, then set the device up with flannel's MTU,
///     address <c>&lt;subnet&gt;.0/32</c> and route <c>&lt;Network&gt; dev &lt;device&gt;</c>
///     (<see cref="NodeDevice"/>; a failure undoes what was done), or adopt the running node's
///     descriptors, every queue's, while it still forwards.
///  4. Install --ip-masq's rules, write subnet.env, start the loops (after a hand-over one queue
///     at a time, as the predecessor stops its own) and the lease watch, open the control socket
///     (which also answers a successor's hand-over: <see cref="HandoverPredecessor"/>), log "Ready"
///     and tell systemd.
///  5. Wait for SIGINT/SIGTERM, a loop's failure (the device deleted under us, an exception), or a
///     successor that took every queue (then nothing is removed at the stop).
///  6. Stop: the lease watch, captures and loops, log the counters, then (as the usings unwind) the
///     control socket, the rules, the device and its route. Exit 0, or 1 after a failure.
/// </summary>
internal static partial class NodeRunner
{
    public static int Run(RunOptions o, ILogger log)
    {
        int exit = Forward(o, log, out StopSignals? afterHandover);
        if (afterHandover is not null)
        {
            using (afterHandover)
            {
                log.Information("Waiting for SIGTERM (--after-handover wait): the successor forwards; this process holds nothing");
                afterHandover.Stopping.WaitOne();
                log.Information("Stopping");
            }
        }
        return exit;
    }

    /// <summary>
    /// Steps 1 to 6. With --after-handover wait, a node that handed over returns a SIGTERM/SIGINT
    /// watch registered before its own goes (no signal falls between them) in <paramref name="afterHandover"/>.
    /// </summary>
    private static int Forward(RunOptions o, ILogger log, out StopSignals? afterHandover)
    {
        afterHandover = null;
        using ILeaseSource leases = LeaseSources.Create(o.LeasesPath, o.Etcd, o.Kube, log);
        NodePlan plan = Plan(o, leases, log);                                                     // 1
        using HandoverSuccessor? predecessor = plan.Predecessor;
        LogLease(plan, log);

        DataplaneEngine? engine = null;                                                           // 2
        var tables = new PeerTables(plan.Node, table => engine!.Publish(table), log, HostInfo.LocalAddresses());
        SubnetTable table = tables.First(plan.Snapshot);
        MetricsText.Source? metricsSource = null;
        var health = new NodeHealth();
        IReadOnlyList<HttpListenerPlan> listeners = HttpListeners.Plan(plan.MetricsEndpoint, plan.HealthzEndpoint,
            () => metricsSource is { } m ? MetricsText.Render(m) : "", health);
        using HttpListeners? http = predecessor is null ? HttpListeners.Start(listeners, log) : null;
        using var signals = new StopSignals();

        using StoredDescriptors? stored = plan.Stored;
        using NodeDevice device = MakeDevice(o, plan, log);                                       // 3
        var captures = new CaptureHub();
        EngineSettings settings = Settings(o, plan);
        using var running = new DataplaneEngine([.. device.Queues.Select(q => FaultInjection.Wrap(o.InjectFault, q))], table, settings, captures);
        engine = running;

        using TrafficRules? rules = HostRules(o, plan, log);                                      // 4
        SubnetEnvFile.Write(o.SubnetFile, plan.Ipv4Subnets, plan.DeviceMtu, o.IpMasq, plan.Ipv6Subnets);
        log.Information("Wrote {Path}", o.SubnetFile);
        StartForwarding(running, predecessor, log);
        using HttpListeners? httpAfterHandover = predecessor is not null ? HttpListeners.StartAfterHandover(listeners, log) : null;
        leases.Watch(tables);
        var metricsNow = new MetricsText.Source(running, plan.Node.Profile.Name, plan.DeviceName, o.Batch, device)
        {
            Facts = Describe(plan, leases.Description, o.SubnetFile, o.IpMasq),
            Captures = captures,
            RejectedLeases = () => tables.Rejected,
            TablesBuilt = () => tables.Built,
        };
        metricsSource = metricsNow;
        uint tunFlags = (device.Device as TunTap.TunDevice)?.OffloadFlags ?? 0;
        using var handover = new HandoverPredecessor(OfferOf(o, plan, tunFlags), device, running, log);
        using MetricsServer control = StartControl(o, plan, device, metricsNow, settings.SlotSize, handover, log);
        Announce(o, plan, device, predecessor, tunFlags, log);
        health.Forwarding(running, plan.Node.ForwardsIpv4 ? plan.Node.Subnet.ToString() : plan.Node.Ipv6Subnet.ToString() ?? "");

        Stop stop = WaitForStop(signals, running, handover, log);                                // 5
        health.Stopping(stop == Stop.HandedOver ? $"handed over to {handover.Successor}" : "stopping");
        afterHandover = Release(stop, o, device, rules, control, handover);
        StopForwarding(leases, captures, running, device, log);                                   // 6
        return stop == Stop.Failed ? 1 : 0;
    }

    /// <summary>
    /// Step 5's end: tell systemd, remove our ready file, and after a hand-over leave the device, the
    /// rules and the control socket's path to the successor; returns the signal watch of
    /// --after-handover wait, registered before ours goes.
    /// </summary>
    private static StopSignals? Release(Stop stop, RunOptions o, NodeDevice device, TrafficRules? rules, MetricsServer control, HandoverPredecessor handover)
    {
        ServiceNotifier.Notify("STOPPING=1");
        ReadyFile.Remove(o.ReadyFile);
        if (stop != Stop.HandedOver)
        {
            return null;
        }
        device.LeaveTo(handover.Successor);
        rules?.KeepFor($"handed over to {handover.Successor}");
        control.LeavePath();
        return o.AfterHandover == AfterHandover.Wait ? new StopSignals() : null;
    }

    /// <summary>Step 6, before the usings unwind: the lease watch, captures and loops stop, and the counters are logged.</summary>
    private static void StopForwarding(ILeaseSource leases, CaptureHub captures, DataplaneEngine running, NodeDevice device, ILogger log)
    {
        leases.Dispose();
        captures.EndAll();
        running.Stop();
        CountersReport.Log(running, log);
        CountersReport.LogOffloads(device, log);
    }

    /// <summary>
    /// Step 4's start of the loops: all at once, or after a hand-over one queue at a time, each as
    /// soon as the predecessor has stopped its own loops on it (if the predecessor goes away half-way,
    /// every queue starts here at once: the descriptors are ours already).
    /// </summary>
    private static void StartForwarding(DataplaneEngine running, HandoverSuccessor? predecessor, ILogger log)
    {
        if (predecessor is null)
        {
            running.Start();
            return;
        }
        var took = System.Diagnostics.Stopwatch.StartNew();
        bool moved = true;
        for (int q = 0; q < running.InboundLoops.Count && moved; q++)
        {
            moved = predecessor.MoveQueue(q, log);
            running.StartQueue(q);
        }
        running.Start(); // the queues not started yet, if the predecessor went away
        predecessor.Finish(log);
        predecessor.Dispose(); // the connection: every descriptor it brought is adopted
        log.Information("Took over from {Predecessor}: {Queues} queues moved one by one in {Ms:F1} ms, every descriptor passed, none reopened",
            predecessor.Predecessor, running.InboundLoops.Count, took.Elapsed.TotalMilliseconds);
    }

    /// <summary>
    /// The host's rules (--ip-masq, --iptables-forward-rules, --ip-blackhole-route), IPv4 only; without
    /// --ip-masq, a predecessor's masquerade rules are removed (it left them to us).
    /// </summary>
    private static TrafficRules? HostRules(RunOptions o, NodePlan plan, ILogger log)
    {
        if (!o.IpMasq && plan.Predecessor is { Offer.IpMasq: true } predecessor)
        {
            TrafficRules.RemoveMasqueradeLeftBy(predecessor.Predecessor, log);
        }
        if (!plan.Node.ForwardsIpv4)
        {
            return null;
        }
        var wanted = new TrafficRules.Wanted(o.IpMasq, o.ForwardRules, !o.MasqueradeFullyRandomDisable, o.BlackholeRoute, o.RulesResync, Keep: o.OnExit == OnExit.Keep);
        return TrafficRules.Install(plan.Node.Config.Network, plan.Node.Subnet, plan.Node.Config.EnableNFTables, wanted, log);
    }

    /// <summary>Step 3's device: the predecessor's queues, the ones systemd kept, or made anew.</summary>
    private static NodeDevice MakeDevice(RunOptions o, NodePlan plan, ILogger log) =>
        plan.Predecessor is HandoverSuccessor predecessor ? NodeDevice.Adopt(plan, predecessor, o.Batch, o.OnExit, log)
        : plan.Stored is StoredDescriptors stored ? NodeDevice.Adopt(plan, stored, o.Batch, o.OnExit, log)
        : NodeDevice.Create(plan, o.Offload, o.Batch, o.Queues, o.OnExit, log);

    /// <summary>
    /// Step 4's end: under systemd with --on-exit keep the descriptors it keeps across a restart
    /// (<see cref="DescriptorStore"/>), the --ready-file, "Ready" in the log, and READY=1.
    /// </summary>
    private static void Announce(RunOptions o, NodePlan plan, NodeDevice device, HandoverSuccessor? predecessor, uint tunFlags, ILogger log)
    {
        if (o.OnExit == OnExit.Keep)
        {
            DescriptorStore.Keep(device, plan.DeviceName, plan.Source.Name(), o.Offload, tunFlags, log);
        }
        ReadyFile.Write(o.ReadyFile); // before the log line: whoever reads "Ready" finds the file
        log.Information("Ready: backend {Backend}, VNI {Vni}, listening on {Endpoint}, device {Device}{Predecessor}",
            plan.Node.Profile.Name, plan.Node.Vni, device.Underlay, plan.DeviceName, predecessor is null ? "" : $" (taken over from {predecessor.Predecessor})");
        ServiceNotifier.Notify("READY=1\nSTATUS=forwarding");
    }

    private static void LogLease(NodePlan plan, ILogger log) =>
        log.Information("Lease acquired: {Subnet} (public IP {PublicIP} on {Iface})", plan.Node.ForwardsIpv4 ? plan.Node.Subnet.ToString() : plan.Node.Ipv6Subnet.ToString(),
            plan.Node.ForwardsIpv4 ? plan.Node.Lease.PublicIpText : Ipv6Prefix.Format(plan.Node.PublicIpv6.GetValueOrDefault()), plan.UnderlayIface);

    private static EngineSettings Settings(RunOptions o, NodePlan plan) => new(plan.Node.Backend, plan.Node.Vni, plan.Node.VtepMac, o.Batch)
    {
        IcmpRate = o.IcmpRate,
        IcmpBurst = o.IcmpBurst,
        Assist = o.Assist,
        OurVtepMacV6 = plan.Node.VtepMacV6,
    };

    /// <summary>The control socket: <c>stats</c> and <c>doctor</c> read the metrics there, <c>capture</c> starts captures.</summary>
    private static MetricsServer StartControl(RunOptions o, NodePlan plan, NodeDevice device, MetricsText.Source metrics, int slotSize, HandoverPredecessor handover,
        ILogger log)
    {
        string path = o.ControlSocket ?? StatsCommand.DefaultSocket(plan.DeviceName);
        string overlayName = $"overlay {plan.DeviceName}", underlayName = $"underlay {device.Underlay}";
        CaptureHub captures = metrics.Captures!;
        MetricsServer control = MetricsServer.Unix(path, () => MetricsText.Render(metrics),
            (client, line) => handover.TryServe(client, line) || CaptureServer.TryStart(client, line, captures, overlayName, underlayName, slotSize, log));
        log.Information("Control socket {Path} (dataplane stats --control-socket {Path})", path, path);
        return control;
    }

    /// <summary>Why step 5 ended.</summary>
    private enum Stop
    {
        Signal,
        Failed,
        HandedOver,
    }

    /// <summary>
    /// Step 5: a loop failed (logged here, once, with its stack), SIGINT/SIGTERM came, or a successor
    /// took every queue. A signal during a hand-over waits for its end: once the successor holds the
    /// descriptors, removing the device would cut it off.
    /// </summary>
    private static Stop WaitForStop(StopSignals signals, DataplaneEngine running, HandoverPredecessor handover, ILogger log)
    {
        int woke = WaitHandle.WaitAny([signals.Stopping, running.Faulted, handover.HandedOver]);
        if (woke == 1 && running.Failure is LoopFailure failure)
        {
            // Exit non-zero rather than recreate the device or restart the loop: whatever deleted
            // the device may do so again, and a restart by the service manager runs every start-up
            // check anew.
            log.Error(failure.Exception, "Stopping: {Failure}; exiting with status 1 so the service manager restarts the node", failure.Reason);
            return Stop.Failed;
        }
        for (var waited = System.Diagnostics.Stopwatch.StartNew(); woke == 0 && handover.InProgress && waited.Elapsed.TotalMilliseconds < 2 * HandoverChannel.ReplyTimeoutMs;)
        {
            woke = handover.HandedOver.WaitOne(10) ? 2 : 0;
        }
        if (woke == 2 || handover.HandedOver.WaitOne(0))
        {
            log.Information("Stopping: handed over to {Successor}; exiting without removing anything", handover.Successor);
            return Stop.HandedOver;
        }
        log.Information("Stopping");
        return Stop.Signal;
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
}
