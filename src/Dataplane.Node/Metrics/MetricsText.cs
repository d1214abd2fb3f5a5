using System.Globalization;
using System.Reflection;
using System.Text;
using Dataplane.Encap;
using Dataplane.Engine;
using Dataplane.TunTap;

namespace Dataplane.Metrics;

/// <summary>
/// The counters of a running node in the Prometheus text format (version 0.0.4): what
/// <c>--metrics</c> serves at <c>/metrics</c> and the control socket hands to <c>dataplane stats</c>.
/// Rendered on request from the per-loop counters, summed over queues; never on the packet path.
/// </summary>
internal static class MetricsText
{
    /// <param name="Edges">The node's device queues and sockets (their offload counters), or null (tests of the loops' counters).</param>
    public sealed record Source(DataplaneEngine Engine, string Backend, string Device, int Batch, Node.NodeDevice? Edges)
    {
        /// <summary>What the node is (for <c>dataplane doctor</c> and dashboards): labels of <c>dataplane_node_info</c>.</summary>
        public IReadOnlyList<(string Key, string Value)> Facts { get; init; } = [];

        /// <summary>The node's captures (for their counters).</summary>
        public Capture.CaptureHub? Captures { get; init; }

        /// <summary>The leases refused now (<see cref="Leases.PeerTables.Rejected"/>), or null.</summary>
        public Func<IReadOnlyList<Leases.RejectedLease>>? RejectedLeases { get; init; }
        /// <summary>Subnet tables built from the store's leases so far.</summary>
        public Func<long>? TablesBuilt { get; init; }
    }

    /// <summary>Each queue's packets by direction, and its outbound loop's ICMP errors (one token bucket per loop).</summary>
    private static void QueueLines(StringBuilder b, LoopCounters[] outs, LoopCounters[] ins)
    {
        Family(b, "dataplane_queue_packets_total", "counter", "Packets handled by each queue's loops, by direction (how the kernel spreads flows over the queues).");
        for (int q = 0; q < outs.Length; q++)
        {
            string queue = q.ToString(CultureInfo.InvariantCulture);
            Line(b, "dataplane_queue_packets_total", outs[q].Packets, ("queue", queue), ("direction", "out"));
            Line(b, "dataplane_queue_packets_total", ins[q].Packets, ("queue", queue), ("direction", "in"));
        }
        Family(b, "dataplane_queue_icmp_errors_total", "counter", "ICMP errors of each queue's outbound loop, sent and held back (each loop has its own token bucket).");
        for (int q = 0; q < outs.Length; q++)
        {
            string queue = q.ToString(CultureInfo.InvariantCulture);
            Line(b, "dataplane_queue_icmp_errors_total", outs[q].IcmpSent, ("queue", queue), ("result", "sent"));
            Line(b, "dataplane_queue_icmp_errors_total", outs[q].IcmpRateLimited, ("queue", queue), ("result", "rate_limited"));
        }
    }

    public static string Render(Source s)
    {
        var b = new StringBuilder(4096);
        // One read of every loop's counters: the totals are the sums of the very values the per-queue lines show.
        LoopCounters[] outs = [.. s.Engine.OutboundLoops.Select(l => LoopCounters.Sum([l.Counters]))];
        LoopCounters[] ins = [.. s.Engine.InboundLoops.Select(l => LoopCounters.Sum([l.Counters]))];
        LoopCounters o = LoopCounters.Sum(outs), i = LoopCounters.Sum(ins);
        SubnetTable table = s.Engine.Table;

        foreach (LoopCounterRow row in LoopCounters.Rows)
        {
            if (row.Help is not null)
            {
                Family(b, row.Metric, "counter", row.Help);
            }
            if (row.Loops == CounterLoops.Both)
            {
                Line(b, row.Metric, row.Field(o), ("direction", "out"));
                Line(b, row.Metric, row.Field(i), ("direction", "in"));
            }
            else
            {
                Line(b, row.Metric, row.Of(o, i), row.Label is { } label ? [label] : []);
            }
        }
        QueueLines(b, outs, ins);

        Family(b, "dataplane_peer_packets_total", "counter", "Inner packets sent to and delivered from each peer.");
        Family(b, "dataplane_peer_bytes_total", "counter", "Inner bytes sent to and delivered from each peer.");
        foreach (Peer p in table.Peers)
        {
            int slot = table.PeerSlot(p);
            if (slot >= o.PeerPackets.Length)
            {
                break;
            }
            string ip = table.Ipv4 ? Ipv4Prefix.Format(p.PublicIp) : p.Endpoint6.AddressText;
            string subnet = table.Ipv4 ? p.Subnet.ToString() : p.Ipv6Subnet.ToString()!;
            Line(b, "dataplane_peer_packets_total", o.PeerPackets[slot], ("peer", ip), ("subnet", subnet), ("direction", "out"));
            Line(b, "dataplane_peer_packets_total", i.PeerPackets[slot], ("peer", ip), ("subnet", subnet), ("direction", "in"));
            Line(b, "dataplane_peer_bytes_total", o.PeerBytes[slot], ("peer", ip), ("subnet", subnet), ("direction", "out"));
            Line(b, "dataplane_peer_bytes_total", i.PeerBytes[slot], ("peer", ip), ("subnet", subnet), ("direction", "in"));
        }

        Family(b, "dataplane_drops_total", "counter", "Packets not delivered, by reason.");
        foreach (DropReason r in Enum.GetValues<DropReason>())
        {
            Line(b, "dataplane_drops_total", o.DropsOf(r) + i.DropsOf(r), ("reason", DropReasonLabels.Of(r)));
        }
        Family(b, "dataplane_loop_allocated_bytes_total", "counter",
            "Managed-heap bytes the packet loops' threads allocated since they started, by direction: it grows while they start, not with packets.");
        Line(b, "dataplane_loop_allocated_bytes_total", o.AllocatedBytes, ("direction", "out"));
        Line(b, "dataplane_loop_allocated_bytes_total", i.AllocatedBytes, ("direction", "in"));
        Family(b, "dataplane_allocated_bytes_total", "counter", "Managed-heap bytes the whole process allocated since it started (lease store, metrics, logs and loops).");
        Line(b, "dataplane_allocated_bytes_total", GC.GetTotalAllocatedBytes(precise: false));
        Family(b, "dataplane_peers", "gauge", "Peers in the current subnet table.");
        Line(b, "dataplane_peers", table.Peers.Count);
        if (s.TablesBuilt?.Invoke() is long built)
        {
            Family(b, "dataplane_peer_tables_built_total", "counter",
                "Subnet tables built from a snapshot of the store's leases (the first one too); a store update that changes no lease builds none.");
            Line(b, "dataplane_peer_tables_built_total", built);
        }
        if (s.RejectedLeases?.Invoke() is { } rejected)
        {
            RenderRejected(b, rejected);
        }

        if (s.Edges is { Queues.Count: > 0 })
        {
            OffloadTotals t = OffloadTotals.Sum(s.Edges);
            long[] byErrno = t.SendErrorsByErrno;
            Family(b, "dataplane_socket_send_errors_total", "counter", "Datagrams the socket refused, by errno (counted, never fatal).");
            foreach (int e in NamedSendErrors)
            {
                Line(b, "dataplane_socket_send_errors_total", byErrno[e], ("errno", Errno.Name(e)));
            }
            Line(b, "dataplane_socket_send_errors_total", byErrno.Sum() - NamedSendErrors.Sum(e => byErrno[e]), ("errno", "other"));
            Family(b, "dataplane_offload_total", "counter", "Offload work: superpackets read and split, written and merged, UDP GSO sends and GRO receives.");
            Line(b, "dataplane_offload_total", t.SuperpacketsIn, ("kind", "device_superpackets_in"));
            Line(b, "dataplane_offload_total", t.SuperpacketsOut, ("kind", "device_superpackets_out"));
            Line(b, "dataplane_offload_total", t.Merged, ("kind", "device_packets_merged"));
            Line(b, "dataplane_offload_total", t.GsoSends, ("kind", "socket_gso_sends"));
            Line(b, "dataplane_offload_total", t.GroReceives, ("kind", "socket_gro_receives"));
            Line(b, "dataplane_offload_total", t.TunnelSuperpackets, ("kind", "socket_tunnel_superpackets"));
            Family(b, "dataplane_device_read_errors_total", "counter", "Device reads that failed for another reason than no data.");
            Line(b, "dataplane_device_read_errors_total", t.ReadErrors);
            Family(b, "dataplane_device_kernel_drops_total", "counter",
                "Packets the kernel dropped before the device loop read them (the packet source's socket buffer was full; a TUN's own drops show in ip -s link).");
            Line(b, "dataplane_device_kernel_drops_total", t.DeviceKernelDrops);
            Family(b, "dataplane_device_frames_skipped_total", "counter", "Frames the packet source read that were not IPv4 or IPv6, or were cut short.");
            Line(b, "dataplane_device_frames_skipped_total", t.DeviceFramesSkipped);
            Family(b, "dataplane_offload_info", "gauge", "The offloads in use (1).");
            Line(b, "dataplane_offload_info", 1, ("device", s.Edges.Device.Offloads), ("socket", s.Edges.Sockets[0].Offloads),
                ("batch", s.Batch.ToString(CultureInfo.InvariantCulture)), ("queues", s.Edges.Queues.Count.ToString(CultureInfo.InvariantCulture)));
        }
        if (s.Captures is { } captures)
        {
            Family(b, "dataplane_captures", "gauge", "Captures running.");
            Line(b, "dataplane_captures", captures.Sessions.Length);
            Family(b, "dataplane_capture_dropped_total", "counter", "Packets left out of captures because a capture's writer fell behind (never a drop on the data path).");
            Line(b, "dataplane_capture_dropped_total", captures.Dropped);
        }
        if (s.Facts.Count > 0)
        {
            Family(b, "dataplane_node_info", "gauge", "This node: network, subnet, public IP, port, device, MTU, lease source, subnet.env (1).");
            Line(b, "dataplane_node_info", 1, [.. s.Facts]);
        }
        Family(b, "dataplane_build_info", "gauge", "Version and configuration of this build (1).");
        Line(b, "dataplane_build_info", 1, ("version", Version), ("backend", s.Backend), ("device", s.Device), ("dotnet", Environment.Version.ToString()));
        return b.ToString();
    }

    /// <summary>How many leases in the store are refused now, by reason (every reason, 0 too), and each one by name.</summary>
    private static void RenderRejected(StringBuilder b, IReadOnlyList<Leases.RejectedLease> rejected)
    {
        Family(b, "dataplane_leases_rejected", "gauge", "Leases in the store that are not peers now, by reason (the node's log names each one once).");
        foreach (Leases.LeaseProblem p in Enum.GetValues<Leases.LeaseProblem>())
        {
            Line(b, "dataplane_leases_rejected", rejected.Count(r => r.Problem == p), ("reason", Leases.LeaseCheck.Label(p)));
        }
        Family(b, "dataplane_lease_rejected_info", "gauge", "Each lease refused now, by name, with its reason (1).");
        foreach (Leases.RejectedLease r in rejected.OrderBy(r => r.Name, StringComparer.Ordinal))
        {
            Line(b, "dataplane_lease_rejected_info", 1, ("lease", r.Name), ("reason", r.Reason));
        }
    }

    /// <summary>The send errors with a label of their own; the rest are "other".</summary>
    private static readonly int[] NamedSendErrors = [Errno.ENOBUFS, Errno.ECONNREFUSED, Errno.ENETUNREACH, Errno.EHOSTUNREACH, Errno.EMSGSIZE, Errno.EPERM];

    public static string Version { get; } =
        typeof(MetricsText).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0";

    private static void Family(StringBuilder b, string name, string type, string help)
    {
        b.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
        b.Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');
    }

    /// <summary>A label value as the text format escapes it: backslash, double quote, line feed.</summary>
    private static string Escape(string value) =>
        value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);

    private static void Line(StringBuilder b, string name, long value, params (string Key, string Value)[] labels)
    {
        b.Append(name);
        if (labels.Length > 0)
        {
            b.Append('{');
            for (int k = 0; k < labels.Length; k++)
            {
                if (k > 0)
                {
                    b.Append(',');
                }
                b.Append(labels[k].Key).Append("=\"").Append(Escape(labels[k].Value)).Append('"');
            }
            b.Append('}');
        }
        b.Append(' ').Append(value.ToString(CultureInfo.InvariantCulture)).Append('\n');
    }
}
