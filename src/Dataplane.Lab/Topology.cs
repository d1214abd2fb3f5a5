using System.Globalization;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

using Dataplane.Node;

namespace Dataplane.Lab;

/// <summary>
/// Hosts in network namespaces on this machine, for the demo, the bench and the integration tests. Every name
/// carries a run id; everything lives in namespaces it creates (nothing in the root namespace) and
/// <see cref="Dispose"/> kills what it started and deletes them.
///
/// Underlay: a switch namespace with a bridge; node i has <c>eth0</c> = 192.0.2.i/24 on it.
/// Pod i hangs off node i: pod <c>eth0</c> = 10.244.i.2/24, node side <c>pod0</c> = 10.244.i.1/24,
/// the pod's default route via 10.244.i.1. Nodes forward (ip_forward=1 inside the node namespace).
/// Dual-stack (<see cref="AddNode"/> with ipv6): node <c>eth0</c> also has 2001:db8:2::i/64, the pod
/// 2001:db8:244:i::2/64 with its default route via 2001:db8:244:i::1 on <c>pod0</c>, and the node
/// forwards IPv6 too (documentation prefixes only).
/// </summary>
internal sealed class Topology : IDisposable
{
    private readonly List<string> _namespaces = [];
    private readonly List<NodeProcess> _processes = [];
    private readonly string _ip;

    public Topology(string? id = null)
    {
        _ip = ProcessRunner.Which("ip") ?? throw new InvalidOperationException("iproute2 ('ip') is not installed: apt-get install iproute2");
        Id = id ?? Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(3));
        WorkDir = Directory.CreateTempSubdirectory($"dataplane-{Id}-").FullName;
        Switch = $"dp{Id}sw";
        AddNamespace(Switch);
        Ip(Switch, "link", "add", "br0", "type", "bridge");
        Ip(Switch, "link", "set", "br0", "up");
    }

    public string Id { get; }
    public string Switch { get; }
    /// <summary>A temporary folder for lease files, subnet.env files and logs; deleted with the topology.</summary>
    public string WorkDir { get; }

    public string Node(int i) => $"dp{Id}n{i}";
    public string Pod(int i) => $"dp{Id}p{i}";
    public static string UnderlayIp(int i) => string.Create(CultureInfo.InvariantCulture, $"192.0.2.{i}");
    public static string PodIp(int i) => string.Create(CultureInfo.InvariantCulture, $"10.244.{i}.2");
    public static string UnderlayIpv6(int i) => string.Create(CultureInfo.InvariantCulture, $"2001:db8:2::{i:x}");
    public static string PodIpv6(int i) => string.Create(CultureInfo.InvariantCulture, $"2001:db8:244:{i:x}::2");
    /// <summary>Node i's IPv6 subnet in the dual-stack cluster files: 2001:db8:244:i::/64.</summary>
    public static string SubnetIpv6(int i) => string.Create(CultureInfo.InvariantCulture, $"2001:db8:244:{i:x}::/64");

    /// <summary>Adds node i on the underlay (192.0.2.i, and 2001:db8:2::i with <paramref name="ipv6"/>) and its pod (10.244.i.2, 2001:db8:244:i::2).</summary>
    public void AddNode(int i, bool withPod = true, bool ipv6 = false)
    {
        string node = Node(i);
        AddNamespace(node);
        if (ipv6)
        {
            NoDuplicateAddressDetection(node);
        }
        Ip(node, "link", "set", "lo", "up");
        Ip(node, "link", "add", "eth0", "type", "veth", "peer", "name", $"s{i}", "netns", Switch);
        Ip(node, "addr", "add", $"{UnderlayIp(i)}/24", "dev", "eth0");
        Ip(node, "link", "set", "eth0", "up");
        Ip(Switch, "link", "set", $"s{i}", "master", "br0");
        Ip(Switch, "link", "set", $"s{i}", "up");
        ProcessRunner.Check(_ip, "netns", "exec", node, "/bin/sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward");
        if (ipv6)
        {
            Ip(node, "addr", "add", $"{UnderlayIpv6(i)}/64", "dev", "eth0", "nodad");
            ProcessRunner.Check(_ip, "netns", "exec", node, "/bin/sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/forwarding");
        }
        if (!withPod)
        {
            return;
        }
        string pod = Pod(i);
        AddNamespace(pod);
        if (ipv6)
        {
            NoDuplicateAddressDetection(pod);
        }
        Ip(pod, "link", "set", "lo", "up");
        Ip(node, "link", "add", "pod0", "type", "veth", "peer", "name", "eth0", "netns", pod);
        Ip(node, "addr", "add", string.Create(CultureInfo.InvariantCulture, $"10.244.{i}.1/24"), "dev", "pod0");
        Ip(node, "link", "set", "pod0", "up");
        Ip(pod, "addr", "add", $"{PodIp(i)}/24", "dev", "eth0");
        Ip(pod, "link", "set", "eth0", "up");
        Ip(pod, "route", "add", "default", "via", string.Create(CultureInfo.InvariantCulture, $"10.244.{i}.1"));
        if (ipv6)
        {
            string gateway = string.Create(CultureInfo.InvariantCulture, $"2001:db8:244:{i:x}::1");
            Ip(node, "addr", "add", $"{gateway}/64", "dev", "pod0", "nodad");
            Ip(pod, "addr", "add", $"{PodIpv6(i)}/64", "dev", "eth0", "nodad");
            Ip(pod, "-6", "route", "add", "default", "via", gateway);
        }
    }

    /// <summary>
    /// Nodes <paramref name="a"/> and <paramref name="b"/> (added by <see cref="AddNode"/>) wired to
    /// each other by one veth pair instead of the switch's bridge: each <c>eth0</c> is the other's
    /// peer, with the same addresses, default offloads and nothing between them (so a kernel
    /// sender's GSO superpackets reach the other node as they left). Call it before anything is
    /// bound to <c>eth0</c> (a kernel VXLAN device goes with its lower device).
    /// </summary>
    public void ConnectDirectly(int a, int b)
    {
        bool ipv6 = Ip(Node(a), "-6", "addr", "show", "dev", "eth0").Contains(UnderlayIpv6(a), StringComparison.Ordinal);
        Ip(Node(a), "link", "del", "eth0");
        Ip(Node(b), "link", "del", "eth0");
        Ip(Node(a), "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", Node(b));
        foreach (int i in new[] { a, b })
        {
            Ip(Node(i), "addr", "add", $"{UnderlayIp(i)}/24", "dev", "eth0");
            if (ipv6)
            {
                Ip(Node(i), "addr", "add", $"{UnderlayIpv6(i)}/64", "dev", "eth0", "nodad");
            }
            Ip(Node(i), "link", "set", "eth0", "up");
        }
    }

    /// <summary>
    /// Pod i's namespace with nothing in it but <c>lo</c>, for a CNI plugin to give it its interface
    /// and address (as a container runtime hands the plugin a new pod's namespace).
    /// </summary>
    public void AddEmptyPod(int i)
    {
        AddNamespace(Pod(i));
        Ip(Pod(i), "link", "set", "lo", "up");
    }

    /// <summary>
    /// Node i as a kernel VXLAN node programmed exactly as flanneld programs one:
    /// <c>flannel.1 type vxlan id 1 dstport 8472 nolearning</c> with its VtepMAC, MTU 1450, address
    /// &lt;subnet&gt;.0/32, and per peer a permanent neighbour, an FDB entry and an onlink route.
    /// </summary>
    public void AddKernelVxlan(int i, string mac, IEnumerable<(int Node, string Mac)> peers)
    {
        string n = Node(i);
        Ip(n, "link", "add", "flannel.1", "type", "vxlan", "id", "1", "local", UnderlayIp(i), "dev", "eth0", "dstport", "8472", "nolearning");
        Ip(n, "link", "set", "flannel.1", "address", mac, "mtu", "1450");
        Ip(n, "addr", "add", string.Create(CultureInfo.InvariantCulture, $"10.244.{i}.0/32"), "dev", "flannel.1");
        Ip(n, "link", "set", "flannel.1", "up");
        string bridge = ProcessRunner.Which("bridge") ?? throw new InvalidOperationException("'bridge' (iproute2) is missing");
        foreach (var (peer, peerMac) in peers)
        {
            string vtep = string.Create(CultureInfo.InvariantCulture, $"10.244.{peer}.0");
            Ip(n, "neigh", "replace", vtep, "lladdr", peerMac, "dev", "flannel.1", "nud", "permanent");
            ProcessRunner.Check(bridge, "-n", n, "fdb", "replace", peerMac, "dev", "flannel.1", "dst", UnderlayIp(peer), "self", "permanent");
            Ip(n, "route", "replace", string.Create(CultureInfo.InvariantCulture, $"10.244.{peer}.0/24"), "via", vtep, "dev", "flannel.1", "onlink");
        }
    }

    /// <summary>
    /// Links created in the namespace from now on skip duplicate address detection (its own sysctl,
    /// not the host's): otherwise the link-local addresses of fresh veths stay tentative for a
    /// second or two, and neighbour discovery, hence the first IPv6 packets, waits for them.
    /// </summary>
    private void NoDuplicateAddressDetection(string netns) =>
        ProcessRunner.Check(_ip, "netns", "exec", netns, "/bin/sh", "-c", "echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad; echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad");

    /// <summary>
    /// Node i's IPv6 half as a kernel node programmed exactly as flanneld programs a dual-stack one:
    /// <c>flannel-v6.1 type vxlan id 1 local 2001:db8:2::i dstport 8472 nolearning</c> with its v6
    /// VtepMAC (the kernel's MTU for an IPv6 underlay: 70 bytes under eth0's), address
    /// &lt;v6 subnet&gt;::/128, and per peer a permanent neighbour, an FDB entry and an onlink route.
    /// </summary>
    public void AddKernelVxlanV6(int i, string mac, IEnumerable<(int Node, string Mac)> peers)
    {
        string n = Node(i);
        Ip(n, "link", "add", "flannel-v6.1", "type", "vxlan", "id", "1", "local", UnderlayIpv6(i), "dev", "eth0", "dstport", "8472", "nolearning");
        Ip(n, "link", "set", "flannel-v6.1", "address", mac);
        Ip(n, "-6", "addr", "add", string.Create(CultureInfo.InvariantCulture, $"2001:db8:244:{i:x}::/128"), "dev", "flannel-v6.1", "nodad");
        Ip(n, "link", "set", "flannel-v6.1", "up");
        string bridge = ProcessRunner.Which("bridge") ?? throw new InvalidOperationException("'bridge' (iproute2) is missing");
        foreach (var (peer, peerMac) in peers)
        {
            string vtep = string.Create(CultureInfo.InvariantCulture, $"2001:db8:244:{peer:x}::");
            Ip(n, "-6", "neigh", "replace", vtep, "lladdr", peerMac, "dev", "flannel-v6.1", "nud", "permanent");
            ProcessRunner.Check(bridge, "-n", n, "fdb", "replace", peerMac, "dev", "flannel-v6.1", "dst", UnderlayIpv6(peer), "self", "permanent");
            Ip(n, "-6", "route", "replace", SubnetIpv6(peer), "via", vtep, "dev", "flannel-v6.1", "onlink");
        }
    }

    /// <summary><c>ip -n NS ARGS</c>, throwing with stderr on failure.</summary>
    public string Ip(string netns, params string[] args) => ProcessRunner.Check(_ip, ["-n", netns, .. args]);

    /// <summary>Runs a command inside a namespace and returns its result (no throw).</summary>
    public ProcessRunner.Result Exec(string netns, IEnumerable<string> command, int timeoutMs = 60_000) =>
        ProcessRunner.Run(_ip, ["netns", "exec", netns, .. command], timeoutMs);

    /// <summary>Starts a long-running command inside a namespace (null: this process's own); it is killed on <see cref="Dispose"/>.</summary>
    public NodeProcess Start(string? netns, IEnumerable<string> command, string label, TextWriter? echo = null)
    {
        NodeProcess p = NodeProcess.Start(netns, command, label, echo);
        lock (_processes)
        {
            _processes.Add(p);
        }
        return p;
    }

    /// <summary>
    /// Ctrl-C and SIGTERM for the commands that build a topology: the returned scope's token is
    /// cancelled and everything started in the namespaces is killed at once; the command's steps
    /// notice, unwind, and the topology is removed on the way out as at a normal end.
    /// </summary>
    public InterruptScope CancelOnSignals() => new(this);

    internal sealed class InterruptScope : IDisposable
    {
        private readonly CancellationTokenSource _cts = new();
        private readonly PosixSignalRegistration _sigint;
        private readonly PosixSignalRegistration _sigterm;

        public InterruptScope(Topology topology)
        {
            void Interrupt(PosixSignalContext c)
            {
                c.Cancel = true;
                _cts.Cancel();
                topology.KillAll();
            }
            _sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, Interrupt);
            _sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Interrupt);
        }

        public CancellationToken Token => _cts.Token;

        public void Dispose()
        {
            _sigint.Dispose();
            _sigterm.Dispose();
            _cts.Dispose();
        }
    }

    /// <summary>Kills everything started in the namespaces at once (an interrupt); safe from any thread.</summary>
    public void KillAll()
    {
        lock (_processes)
        {
            foreach (NodeProcess p in _processes)
            {
                p.Kill();
            }
        }
    }

    private void AddNamespace(string name)
    {
        ProcessRunner.Check(_ip, "netns", "add", name);
        _namespaces.Add(name);
    }

    public void Dispose()
    {
        lock (_processes)
        {
            foreach (NodeProcess p in _processes)
            {
                try
                {
                    p.Stop(TimeSpan.FromSeconds(5));
                }
                catch (Exception e) when (e is InvalidOperationException or TimeoutException)
                {
                }
                p.Dispose();
            }
            _processes.Clear();
        }
        foreach (string ns in Enumerable.Reverse(_namespaces))
        {
            ProcessRunner.Run(_ip, ["netns", "del", ns]);
        }
        _namespaces.Clear();
        try
        {
            Directory.Delete(WorkDir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
