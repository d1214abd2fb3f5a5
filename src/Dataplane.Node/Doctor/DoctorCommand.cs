using System.Globalization;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using System.Text.Json;
using Dataplane.Encap;
using Dataplane.Leases;
using Dataplane.Leases.Etcd;
using Dataplane.Metrics;
using Dataplane.Node;

namespace Dataplane.Doctor;

/// <summary>
/// <c>dataplane doctor</c>: checks a node the way an operator would, one line per check (PASS,
/// WARN or FAIL, what was found, and for every failure the command that fixes it); exit status 1
/// when anything failed. Run in the node's network namespace.
///
///  1. Ask the running node what it is (its control socket: network, subnet, device, MTU, port,
///     lease source, subnet.env, peers). Without an answer only the host-wide checks run.
///  2. The host: IPv4 forwarding, rp_filter on the device, a FORWARD policy of DROP with nothing
///     letting the pod network through, a kernel flannel.1 that would fight ours.
///  3. The device: up, its address, its MTU, the route <c>Network dev device</c>; routes that take
///     overlay addresses away from it (a <c>local</c> route in table local, as an address on
///     kube-proxy's <c>kube-ipvs0</c> leaves; a peer's subnet routed elsewhere).
///  4. The wire and the files: our UDP port held by another process; subnet.env as the node would
///     write it; the flannel CNI config's MTU not above ours; the lease source readable.
///  5. Every peer answers an echo to its device address through the overlay, with the round trip.
/// </summary>
internal static class DoctorCommand
{
    public const string DefaultCniDirectory = "/etc/cni/net.d";

    public static int Run(string controlSocket, bool json, string cniDirectory, TextWriter o)
    {
        var checks = new List<DoctorCheck>();
        NodeFacts? node = null;
        try
        {
            node = NodeFacts.Parse(StatsCommand.Read(controlSocket));
            checks.Add(node is null
                ? DoctorCheck.Fail("node", $"the node at {controlSocket} does not describe itself (an older version?)", "upgrade and restart the node")
                : DoctorCheck.Pass("node", $"running (pid {node.Pid}): {node.Backend} on {node.Device}, subnet " +
                    (node.Ipv6Only ? $"{node.Ipv6?.Subnet} of {node.Ipv6?.Network} (IPv6-only)" : $"{node.Subnet} of {node.Network}") + $", {node.Peers.Count} peers"));
        }
        catch (Exception e) when (e is SocketException or IOException)
        {
            checks.Add(DoctorCheck.Fail("node", $"no node answers on {controlSocket}", "start it (dataplane run ...), or give --control-socket"));
        }
        checks.Add(IpForward());
        checks.Add(KernelFlannelDevices(node?.Device));
        checks.AddRange(KernelVxlanChecksumOffload());
        if (node is not null)
        {
            checks.Add(RpFilter(node));
            if (node.Ipv6 is not null)
            {
                checks.Add(Ipv6Forward());
            }
            checks.Add(ForwardPolicy(node));
            if (node.Ipv6Only)
            {
                checks.Add(DoctorCheck.Warn("ipv6-only", $"{node.Device} serves an IPv6-only network ({node.Ipv6?.Subnet} of {node.Ipv6?.Network}): " +
                    "its IPv6 address and route, conflicting routes and peers are not checked yet", "check with ip -6 addr, ip -6 route and ping6 to a peer's pod"));
            }
            else
            {
                checks.AddRange(Device(node));
                checks.AddRange(ConflictingRoutes(node));
            }
            checks.Add(UdpPort(node));
            checks.Add(SubnetEnv(node));
            checks.Add(CniMtu(node, cniDirectory));
            checks.Add(LeaseSource(node));
            checks.Add(RefusedLeases(node));
            if (!node.Ipv6Only)
            {
                checks.AddRange(Peers(node));
            }
        }
        if (json)
        {
            WriteJson(checks, o);
        }
        else
        {
            foreach (DoctorCheck c in checks)
            {
                o.WriteLine(c);
            }
            int fails = checks.Count(c => c.Status == CheckStatus.Fail), warns = checks.Count(c => c.Status == CheckStatus.Warn);
            o.WriteLine($"{checks.Count} checks: {checks.Count - fails - warns} passed, {warns} warnings, {fails} failed");
        }
        return checks.Any(c => c.Status == CheckStatus.Fail) ? 1 : 0;
    }

    private static DoctorCheck IpForward() => HostView.Sysctl("net.ipv4.ip_forward") switch
    {
        "1" => DoctorCheck.Pass("ip-forward", "net.ipv4.ip_forward = 1"),
        string v => DoctorCheck.Fail("ip-forward", $"net.ipv4.ip_forward = {v}: pods' packets are not routed into the overlay", "sysctl -w net.ipv4.ip_forward=1"),
        null => DoctorCheck.Fail("ip-forward", "no /proc/sys/net/ipv4/ip_forward", "mount /proc/sys"),
    };

    /// <summary>A dual-stack node's pods reach the overlay only if the host forwards IPv6 too.</summary>
    private static DoctorCheck Ipv6Forward() => HostView.Sysctl("net.ipv6.conf.all.forwarding") switch
    {
        "1" => DoctorCheck.Pass("ipv6-forward", "net.ipv6.conf.all.forwarding = 1"),
        string v => DoctorCheck.Fail("ipv6-forward", $"net.ipv6.conf.all.forwarding = {v}: pods' IPv6 packets are not routed into the overlay", "sysctl -w net.ipv6.conf.all.forwarding=1"),
        null => DoctorCheck.Fail("ipv6-forward", "no /proc/sys/net/ipv6/conf/all/forwarding (IPv6 disabled in this kernel?)", "boot with IPv6 enabled (no ipv6.disable=1)"),
    };

    private static DoctorCheck RpFilter(NodeFacts n)
    {
        string? all = HostView.DeviceSysctl("all", "rp_filter"), dev = HostView.DeviceSysctl(n.Device, "rp_filter");
        int effective = Math.Max(int.TryParse(all, out int a) ? a : 0, int.TryParse(dev, out int d) ? d : 0);
        return effective == 1
            ? DoctorCheck.Warn("rp-filter", $"strict on {n.Device} (all {all}, device {dev}): packets from an overlay source routed elsewhere are dropped",
                $"sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.{n.Device}.rp_filter=2")
            : DoctorCheck.Pass("rp-filter", $"{(effective == 2 ? "loose" : "off")} on {n.Device} (all {all}, device {dev})");
    }

    private static DoctorCheck ForwardPolicy(NodeFacts n)
    {
        string[]? rules = HostView.IptablesRules("FORWARD");
        if (rules is null)
        {
            return DoctorCheck.Warn("forward-policy", "iptables is not installed or not usable: the FORWARD chain was not checked");
        }
        bool drop = rules.Any(r => r is "-P FORWARD DROP" or "-P FORWARD REJECT");
        if (!drop)
        {
            return DoctorCheck.Pass("forward-policy", "FORWARD policy ACCEPT");
        }
        string net = n.Network.ToString();
        bool letThrough = rules.Any(r => r.Contains("-j FLANNEL-FWD", StringComparison.Ordinal)
            || r.StartsWith("-A FORWARD", StringComparison.Ordinal) && r.EndsWith("-j ACCEPT", StringComparison.Ordinal)
               && (r.Contains($"-s {net}", StringComparison.Ordinal) || r.Contains($"-d {net}", StringComparison.Ordinal)));
        return letThrough
            ? DoctorCheck.Pass("forward-policy", $"FORWARD policy DROP, with rules letting {net} through")
            : DoctorCheck.Fail("forward-policy", $"FORWARD policy DROP and no rule lets {net} through: pod traffic is dropped",
                $"iptables -A FORWARD -s {net} -j ACCEPT && iptables -A FORWARD -d {net} -j ACCEPT (or run the node with --iptables-forward-rules, its default)");
    }

    private static IEnumerable<DoctorCheck> Device(NodeFacts n)
    {
        var link = HostView.Ip("link", "show", "dev", n.Device).FirstOrDefault();
        if (link.ValueKind != JsonValueKind.Object)
        {
            yield return DoctorCheck.Fail("device", $"{n.Device} does not exist", "restart the node (it creates its device)");
            yield break;
        }
        bool up = link.TryGetProperty("flags", out JsonElement flags) && flags.EnumerateArray().Any(f => f.GetString() == "UP");
        int mtu = HostView.Int(link, "mtu");
        yield return !up
            ? DoctorCheck.Fail("device", $"{n.Device} is down", $"ip link set {n.Device} up")
            : mtu != n.Mtu
                ? DoctorCheck.Fail("device", $"{n.Device} has MTU {mtu}, the node set {n.Mtu}", $"ip link set {n.Device} mtu {n.Mtu}")
                : DoctorCheck.Pass("device", $"{n.Device} up, MTU {mtu}");
        string address = Ipv4Prefix.Format(n.Subnet.Address);
        bool hasAddress = HostView.Ip("addr", "show", "dev", n.Device).SelectMany(l => l.TryGetProperty("addr_info", out JsonElement ai) ? ai.EnumerateArray() : [])
            .Any(a => HostView.Str(a, "local") == address);
        yield return hasAddress
            ? DoctorCheck.Pass("device-address", $"{address}/32 on {n.Device}")
            : DoctorCheck.Fail("device-address", $"{n.Device} lacks {address}/32", $"ip addr add {address}/32 dev {n.Device}");
        bool route = HostView.Ip("route", "show", "table", "main").Any(r => HostView.Destination(r) == n.Network && HostView.Str(r, "dev") == n.Device);
        yield return route
            ? DoctorCheck.Pass("network-route", $"{n.Network} dev {n.Device}")
            : DoctorCheck.Fail("network-route", $"no route {n.Network} dev {n.Device}", $"ip route replace {n.Network} dev {n.Device}");
    }

    private static IEnumerable<DoctorCheck> ConflictingRoutes(NodeFacts n)
    {
        var found = new List<DoctorCheck>();
        // An overlay address outside our own subnet bound to another device puts a local route in
        // table local, which wins over every route of table main: that address is black-holed on
        // this node. (Our own subnet's addresses on local devices, the CNI bridge's gateway, are normal.)
        foreach (JsonElement r in HostView.Ip("route", "show", "table", "local"))
        {
            if (HostView.Str(r, "type") == "local" && HostView.Destination(r) is Ipv4Prefix dst && n.Network.Contains(dst.Address)
                && !n.Subnet.Contains(dst.Address) && HostView.Str(r, "dev") is string dev && dev != n.Device)
            {
                found.Add(DoctorCheck.Fail("conflicting-route", $"local {dst} dev {dev} in table local takes an overlay address away from {n.Device}" +
                    (dev == "kube-ipvs0" ? " (an address on kube-proxy's kube-ipvs0)" : ""),
                    $"ip route del table local local {Ipv4Prefix.Format(dst.Address)} dev {dev}"));
            }
        }
        // A peer's subnet (or part of it) routed through another device.
        foreach (JsonElement r in HostView.Ip("route", "show", "table", "main"))
        {
            if (HostView.Destination(r) is Ipv4Prefix dst && dst.Length > n.Network.Length && HostView.Str(r, "dev") is string dev && dev != n.Device
                && n.Peers.FirstOrDefault(p => p.Subnet.Overlaps(dst)) is { PublicIp: not null } peer)
            {
                found.Add(DoctorCheck.Fail("conflicting-route", $"{dst} dev {dev} takes peer subnet {peer.Subnet} (via {peer.PublicIp}) away from {n.Device}",
                    $"ip route del {dst} dev {dev}"));
            }
        }
        if (found.Count == 0)
        {
            found.Add(DoctorCheck.Pass("conflicting-route", $"no route takes an overlay address away from {n.Device}"));
        }
        return found;
    }

    private static DoctorCheck KernelFlannelDevices(string? ours)
    {
        var kernel = HostView.Ip("-d", "link", "show")
            .Where(l => HostView.Str(l, "ifname") is "flannel.1" or "flannel-v6.1"
                && l.TryGetProperty("linkinfo", out JsonElement li) && HostView.Str(li, "info_kind") == "vxlan")
            .Select(l => HostView.Str(l, "ifname")).ToList();
        return kernel.Count == 0
            ? DoctorCheck.Pass("kernel-flannel", "no kernel flannel.1 or flannel-v6.1")
            : DoctorCheck.Fail("kernel-flannel", $"kernel VXLAN device {string.Join(", ", kernel)} on this node"
                + $"{(ours is null ? "" : $" beside ours ({ours})")}: flanneld and this data plane would fight over the overlay",
                $"stop flanneld, then ip link del {kernel[0]}");
    }

    /// <summary>
    /// flannel #1279: a kernel VXLAN device with <c>tx-checksum-ip-generic</c> off sends packets whose
    /// checksums some paths corrupt or drop; flannel turns it on. Checked on every VXLAN link here.
    /// </summary>
    private static IEnumerable<DoctorCheck> KernelVxlanChecksumOffload()
    {
        foreach (string name in HostView.Ip("-d", "link", "show")
            .Where(l => l.TryGetProperty("linkinfo", out JsonElement li) && HostView.Str(li, "info_kind") == "vxlan")
            .Select(l => HostView.Str(l, "ifname")))
        {
            string? ethtool = ProcessRunner.Which("ethtool");
            if (ethtool is null)
            {
                yield return DoctorCheck.Warn("vxlan-tx-checksum", $"{name}: ethtool is not installed, tx-checksum-ip-generic not checked");
                continue;
            }
            string? line = ProcessRunner.Run(ethtool, ["-k", name], 10_000).Stdout.Split('\n')
                .FirstOrDefault(l => l.TrimStart().StartsWith("tx-checksum-ip-generic:", StringComparison.Ordinal));
            yield return line?.Contains(": on", StringComparison.Ordinal) == true
                ? DoctorCheck.Pass("vxlan-tx-checksum", $"{name}: tx-checksum-ip-generic on")
                : DoctorCheck.Warn("vxlan-tx-checksum", $"{name}: tx-checksum-ip-generic {(line?.Split(':')[1].Trim() ?? "unknown")} (flannel #1279)",
                    $"ethtool -K {name} tx-checksum-ip-generic on");
        }
    }

    private static DoctorCheck UdpPort(NodeFacts n)
    {
        var others = HostView.UdpPortHolders(n.Port).Where(h => h.Pid != n.Pid).ToList();
        return others.Count == 0
            ? DoctorCheck.Pass("udp-port", $"port {n.Port} is the node's alone")
            : DoctorCheck.Fail("udp-port", $"port {n.Port} is also held by {string.Join(", ", others.Select(h => $"{h.Name} (pid {h.Pid})"))}: peers' datagrams may go there",
                $"stop {others[0].Name} (kill {others[0].Pid}), or give every node another --port");
    }

    private static DoctorCheck SubnetEnv(NodeFacts n)
    {
        string expected = SubnetEnvFile.Format(n.Ipv6Only ? null : (n.Network, n.Subnet), n.Mtu, n.IpMasq, n.Ipv6);
        if (!File.Exists(n.SubnetFile))
        {
            return DoctorCheck.Fail("subnet-env", $"{n.SubnetFile} is missing: the CNI plugin cannot configure pods", "restart the node (it writes the file)");
        }
        string actual = File.ReadAllText(n.SubnetFile);
        return actual == expected
            ? DoctorCheck.Pass("subnet-env", $"{n.SubnetFile} as the node writes it")
            : DoctorCheck.Fail("subnet-env", $"{n.SubnetFile} differs from what the node writes ({actual.ReplaceLineEndings(" ").Trim()})",
                "restart the node (it rewrites the file)");
    }

    private static DoctorCheck CniMtu(NodeFacts n, string directory)
    {
        if (!Directory.Exists(directory))
        {
            return DoctorCheck.Warn("cni-config", $"no {directory}: no CNI configuration yet");
        }
        foreach (string file in Directory.EnumerateFiles(directory).Where(f => f.EndsWith(".conflist", StringComparison.Ordinal) || f.EndsWith(".conf", StringComparison.Ordinal)).Order())
        {
            JsonDocument doc;
            try
            {
                doc = JsonDocument.Parse(File.ReadAllBytes(file));
            }
            catch (JsonException)
            {
                continue;
            }
            using (doc)
            {
                JsonElement root = doc.RootElement;
                IEnumerable<JsonElement> plugins = root.TryGetProperty("plugins", out JsonElement list) && list.ValueKind == JsonValueKind.Array ? list.EnumerateArray() : [root];
                foreach (JsonElement p in plugins)
                {
                    if (HostView.Str(p, "type") != "flannel")
                    {
                        continue;
                    }
                    int mtu = p.TryGetProperty("delegate", out JsonElement d) ? HostView.Int(d, "mtu") : 0;
                    mtu = mtu == 0 ? HostView.Int(p, "mtu") : mtu;
                    return mtu > n.Mtu
                        ? DoctorCheck.Fail("cni-config", $"{file} sets MTU {mtu}, above the device's {n.Mtu}: large packets from pods are lost",
                            $"set \"mtu\": {n.Mtu} in {file} (or leave it out: the plugin takes FLANNEL_MTU from subnet.env)")
                        : DoctorCheck.Pass("cni-config", $"{file}: flannel plugin, MTU {(mtu == 0 ? $"from subnet.env ({n.Mtu})" : mtu.ToString(CultureInfo.InvariantCulture))}");
                }
            }
        }
        return DoctorCheck.Warn("cni-config", $"no flannel CNI configuration in {directory} (install the CNI config before pods are scheduled)");
    }

    private static DoctorCheck LeaseSource(NodeFacts n)
    {
        const string file = "lease file ";
        const string etcd = "etcd ";
        if (n.LeaseSource.StartsWith(file, StringComparison.Ordinal))
        {
            string path = n.LeaseSource[file.Length..];
            try
            {
                ClusterSnapshot s = ClusterFile.Load(path);
                return s.Leases.Any(l => l.Subnet == n.Subnet && l.PublicIpText == n.PublicIp)
                    ? DoctorCheck.Pass("lease-source", $"{path} readable, our lease {n.Subnet} via {n.PublicIp} in it")
                    : DoctorCheck.Fail("lease-source", $"{path} no longer holds our lease {n.Subnet} via {n.PublicIp}", $"restore our lease in {path}, or restart the node");
            }
            catch (ConfigException e)
            {
                return DoctorCheck.Fail("lease-source", e.Message, $"fix {path} (the node keeps the last good table meanwhile)");
            }
        }
        if (n.LeaseSource.StartsWith(etcd, StringComparison.Ordinal))
        {
            var failures = new List<string>();
            foreach (string endpoint in n.LeaseSource[etcd.Length..].Split(','))
            {
                if (!Uri.TryCreate(endpoint, UriKind.Absolute, out Uri? uri))
                {
                    failures.Add($"{endpoint}: not a URL");
                    continue;
                }
                if (EtcdStore.CanConnect(uri, TimeSpan.FromSeconds(2)) is string failure)
                {
                    failures.Add(failure);
                }
            }
            return failures.Count == 0
                ? DoctorCheck.Pass("lease-source", $"{n.LeaseSource} accepts connections")
                : DoctorCheck.Fail("lease-source", $"etcd not reachable: {string.Join("; ", failures)} (the node forwards on its last table meanwhile)",
                    "check etcd and the route to it");
        }
        return DoctorCheck.Warn("lease-source", $"{n.LeaseSource}: not checked");
    }

    /// <summary>Leases in the store the node does not route to (each named once in its log with the whole reason).</summary>
    private static DoctorCheck RefusedLeases(NodeFacts n) => n.RefusedLeases.Count == 0
        ? DoctorCheck.Pass("leases", "every lease in the store is usable")
        : DoctorCheck.Warn("leases", $"{n.RefusedLeases.Count} refused, their subnets unreachable from here: " +
            string.Join("; ", n.RefusedLeases.Select(r => $"{r.Lease} ({r.Reason})")),
            "the node's log says why each was refused (\"Lease refused\"); fix or delete them in the store");

    private static IEnumerable<DoctorCheck> Peers(NodeFacts n)
    {
        if (n.Peers.Count == 0)
        {
            yield return DoctorCheck.Warn("peers", "no peers in the table yet");
            yield break;
        }
        using var ping = new Ping();
        foreach ((Ipv4Prefix subnet, string publicIp) in n.Peers.OrderBy(p => p.Subnet.Address))
        {
            // Kernel flannel.1 nodes and ours both answer echo on their device address (the subnet's base).
            var target = new System.Net.IPAddress(System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(subnet.Address));
            PingReply? reply = null;
            for (int attempt = 0; attempt < 2 && reply?.Status != IPStatus.Success; attempt++)
            {
                try
                {
                    reply = ping.Send(target, 1000);
                }
                catch (PingException)
                {
                }
            }
            yield return reply?.Status == IPStatus.Success
                ? DoctorCheck.Pass("peer", $"{subnet} via {publicIp}: {target} answers in {reply.RoundtripTime} ms")
                : DoctorCheck.Fail("peer", $"{subnet} via {publicIp}: {target} does not answer through the overlay",
                    $"check the node at {publicIp} (is its data plane running? does UDP port {n.Port} reach it?)");
        }
    }

    private static void WriteJson(List<DoctorCheck> checks, TextWriter o)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteBoolean("ok", checks.All(c => c.Status != CheckStatus.Fail));
            w.WriteStartArray("checks");
            foreach (DoctorCheck c in checks)
            {
                w.WriteStartObject();
                w.WriteString("check", c.Name);
                w.WriteString("status", c.Status.ToString().ToUpperInvariant());
                w.WriteString("found", c.Found);
                if (c.Fix is not null)
                {
                    w.WriteString("fix", c.Fix);
                }
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        o.WriteLine(System.Text.Encoding.UTF8.GetString(stream.ToArray()));
    }
}
