using Dataplane.Encap;
using Dataplane.Engine;
using Dataplane.TunTap;
using Serilog;

namespace Dataplane.Node;

/// <summary>
/// The host-side objects of a running node: the device with flannel's address and route, and per
/// queue (<see cref="EngineQueue"/>) a device descriptor and an underlay (<see cref="UnderlaySockets"/>:
/// a bound UDP socket per family, SO_REUSEPORT when there are several queues). The IPv4 socket is
/// there unless the network is IPv6-only; the IPv6 socket when the node forwards IPv6 and has an
/// IPv6 underlay address. A dual-stack node's device also gets the IPv6 address and route flanneld
/// gives flannel-v6.1 (the IPv6 subnet's base /128; the IPv6 network, with the IPv6 underlay's MTU
/// on the route). On an IPv6-only network the device has no IPv4 address or route.
/// The device is a TUN (one descriptor per queue; closing the last deletes it), or with
/// <see cref="DeviceSource.Packet"/> a veth pair whose host end carries the device name and whose
/// other end we own with one AF_PACKET socket per queue (<see cref="PacketSocketDevice"/>).
/// A device of ours that an earlier run kept, or a crash left (<see cref="NodePlan.Existing"/>,
/// checked by the plan), is taken over: the TUN queues attach to it, the veth pair is reused, and
/// its address and route, already in place, are confirmed. Every device gets our mark
/// (<see cref="ExistingDevice.MarkOf"/>), which is how the next start knows it.
/// <see cref="Create"/> undoes its own steps if one fails. <see cref="Dispose"/> closes the
/// descriptors, then with <see cref="OnExit.Remove"/> deletes the route and the device (for a veth
/// pair, deleting one end deletes both); with <see cref="OnExit.Keep"/> it leaves them (the TUN
/// was made persistent) for the next start.
/// </summary>
internal sealed class NodeDevice : IDisposable
{
    private readonly NodePlan _plan;
    private readonly OnExit _onExit;
    private readonly ILogger _log;
    private int _index;
    // Set once Create has finished: a start that fails half-way removes what it created, whatever --on-exit says.
    private bool _created;
    // Made of a running node's descriptors (a hand-over): until the start has finished, the device is that node's.
    private bool _adopted;
    // Handed over to a successor: it owns the device now, whatever --on-exit says (who, for the log).
    private string? _successor;

    private readonly List<EngineQueue> _queues = [];
    // Every socket bound, receiving and send-only, in the order bound (for counters and disposal).
    private readonly List<UdpBatchSocket> _sockets = [];

    private NodeDevice(NodePlan plan, OnExit onExit, ILogger log)
    {
        _plan = plan;
        _onExit = onExit;
        _log = log;
    }

    public IReadOnlyList<EngineQueue> Queues => _queues;
    public IPacketDevice Device => _queues[0].Device;

    /// <summary>Queue 0's receiving underlay: the node's underlay endpoints (logs, capture names).</summary>
    public UnderlaySockets Underlay { get; private set; } = null!;

    /// <summary>Every socket of every queue, the send-only ones too (counters).</summary>
    public IReadOnlyList<UdpBatchSocket> Sockets => _sockets;

    /// <summary>The name of the veth end we own when the host's end is <paramref name="device"/>.</summary>
    public static string VethPeerName(string device) => (device.Length > 12 ? device[..12] : device) + "-dp";

    public static NodeDevice Create(NodePlan plan, bool offload, int batch, int queues, OnExit onExit, ILogger log)
    {
        var device = new NodeDevice(plan, onExit, log);
        try
        {
            if (plan.Existing is not null)
            {
                log.Information("Taking over {Device}: ours, kept by an earlier run (its address and route stay in place)", plan.DeviceName);
            }
            Func<IPacketDevice> open = plan.Source == DeviceSource.Packet
                ? device.CreateVethPair(offload)
                : () => OpenTun(plan, offload, multiQueue: queues > 1);
            for (int q = 0; q < queues; q++)
            {
                IPacketDevice queue = open();
                if (q == 0 && queue is TunDevice tun)
                {
                    // Kept: it outlives us (and a crash); removed: it goes with our last descriptor, as a fresh one would.
                    tun.SetPersistent(onExit == OnExit.Keep);
                }
                device.AddQueue(queue, batch, offload, multiQueue: queues > 1);
            }
            if (queues > 1)
            {
                device.SpreadOverQueues(batch, offload);
            }
            device.Configure();
            device._created = true;
        }
        catch
        {
            device.Dispose();
            throw;
        }
        log.Information("Offloads: device {DeviceOffloads}; socket {UdpOffloads}; batch {Batch}; queues {Queues}",
            device.Device.Offloads, device._sockets[0].Offloads, batch, queues);
        return device;
    }

    /// <summary>
    /// The device as a running node passes it in a hand-over (<paramref name="from"/>): every
    /// queue's TUN descriptor or packet socket and its UDP sockets, adopted as they were made
    /// (offloads, source-port steering, send ports), with the packets queued in them. Then the
    /// device's settings, address and route are confirmed as for a device taken over. Until the
    /// start has finished, a failure leaves the device to the running node.
    /// </summary>
    public static NodeDevice Adopt(NodePlan plan, HandoverSuccessor from, int batch, OnExit onExit, ILogger log) =>
        Adopt(plan, from.TakeQueues(), (from.Offer.Offload, from.Offer.TunFlags), from.Predecessor, batch, onExit, log);

    /// <summary>As <see cref="Adopt(NodePlan, HandoverSuccessor, int, OnExit, ILogger)"/>, from the descriptors systemd kept (<see cref="DescriptorStore"/>).</summary>
    public static NodeDevice Adopt(NodePlan plan, StoredDescriptors stored, int batch, OnExit onExit, ILogger log) =>
        Adopt(plan, stored.Queues, (stored.Offload, stored.TunFlags), "systemd's descriptor store", batch, onExit, log);

    private static NodeDevice Adopt(NodePlan plan, IReadOnlyList<HandedQueue> handed, (bool On, uint TunFlags) offload, string from, int batch, OnExit onExit, ILogger log)
    {
        var device = new NodeDevice(plan, onExit, log) { _adopted = true };
        try
        {
            var layout = new EncapsulationLayout(plan.Node.Profile.PayloadPrefix, plan.DeviceMtu);
            UdpBatchSocket? Socket(HandedQueue q, string role) =>
                q.Take(role) is int fd ? device.Keep(UdpBatchSocket.Adopt(fd, batch, layout)) : null;
            foreach (HandedQueue q in handed)
            {
                int fd = q.Take(HandedQueue.Device)!.Value;
                IPacketDevice queue = plan.Source == DeviceSource.Packet
                    ? PacketSocketDevice.Adopt(fd, plan.DeviceName, VethPeerName(plan.DeviceName), offload.On)
                    : TunDevice.Adopt(fd, plan.DeviceName, offload.On, offload.TunFlags);
                var receiver = new UnderlaySockets(Socket(q, HandedQueue.Receive4), Socket(q, HandedQueue.Receive6));
                UdpBatchSocket? send4 = Socket(q, HandedQueue.Send4), send6 = Socket(q, HandedQueue.Send6);
                device.Underlay ??= receiver;
                device._queues.Add(new EngineQueue(queue, receiver, send4 is null && send6 is null ? receiver : new UnderlaySockets(send4, send6)));
                if (q.Index == 0 && queue is TunDevice tun)
                {
                    tun.SetPersistent(onExit == OnExit.Keep);
                }
            }
            device.Configure();
            device._created = true;
        }
        catch (NativeException e)
        {
            device.Dispose();
            throw new ConfigException($"taking over from {from}: {e.Message}");
        }
        catch
        {
            device.Dispose();
            throw;
        }
        log.Information("Offloads: device {DeviceOffloads}; socket {UdpOffloads}; batch {Batch}; queues {Queues} (as passed by {From})",
            device.Device.Offloads, device._sockets[0].Offloads, batch, device._queues.Count, from);
        return device;
    }

    /// <summary>
    /// Queue <paramref name="q"/>'s descriptors for a successor, in the roles
    /// <see cref="HandedQueue"/> names: the device's, the receiving sockets', and the send-only
    /// ones when the queue has its own send ports. They stay ours until we exit.
    /// </summary>
    public (string Roles, int[] Descriptors) HandoverDescriptors(int q)
    {
        EngineQueue queue = _queues[q];
        var pairs = new List<(string Role, int Fd)>
        {
            (HandedQueue.Device, queue.Device switch
            {
                TunDevice tun => tun.DescriptorNumber,
                PacketSocketDevice packet => packet.DescriptorNumber,
                _ => throw new InvalidOperationException($"queue {q}'s device cannot be handed over"),
            }),
        };
        var receiver = (UnderlaySockets)queue.Receiver;
        AddSockets(pairs, receiver, HandedQueue.Receive4, HandedQueue.Receive6);
        if (!ReferenceEquals(queue.Sender, queue.Receiver))
        {
            AddSockets(pairs, (UnderlaySockets)queue.Sender, HandedQueue.Send4, HandedQueue.Send6);
        }
        return (string.Join(',', pairs.Select(p => p.Role)), [.. pairs.Select(p => p.Fd)]);
    }

    private static void AddSockets(List<(string Role, int Fd)> pairs, UnderlaySockets sockets, string ipv4, string ipv6)
    {
        if (sockets.Ipv4 is UdpBatchSocket v4)
        {
            pairs.Add((ipv4, v4.DescriptorNumber));
        }
        if (sockets.Ipv6 is UdpBatchSocket v6)
        {
            pairs.Add((ipv6, v6.DescriptorNumber));
        }
    }

    /// <summary>A successor took every queue: at <see cref="Dispose"/> close our descriptors only, whatever --on-exit says.</summary>
    public void LeaveTo(string successor) => _successor = successor;

    /// <summary>One queue: its device descriptor and an underlay of its own (a socket per family the node forwards, SO_REUSEPORT with several queues).</summary>
    private void AddQueue(IPacketDevice queue, int batch, bool offload, bool multiQueue)
    {
        try
        {
            Leases.NodeIdentity node = _plan.Node;
            UdpBatchSocket? ipv4 = !node.ForwardsIpv4 ? null
                : Keep(BindSocket(_plan, new UdpEndpoint(_plan.BindAddress, (ushort)node.Port), batch, offload, multiQueue));
            UdpBatchSocket? ipv6 = node.ForwardsIpv6 && node.PublicIpv6 is UInt128 v6
                ? Keep(BindSocket(_plan, UdpEndpoint.Ipv6(v6, (ushort)node.Port), batch, offload, multiQueue))
                : null;
            var underlay = new UnderlaySockets(ipv4, ipv6);
            Underlay ??= underlay;
            _queues.Add(new EngineQueue(queue, underlay));
        }
        catch
        {
            queue.Dispose(); // its sockets, if any, are kept and disposed with the device
            throw;
        }
    }

    private UdpBatchSocket Keep(UdpBatchSocket socket)
    {
        _sockets.Add(socket);
        return socket;
    }

    /// <summary>
    /// With several queues: each queue's outbound loop gets a send-only socket on a port of its own
    /// (consecutive ports, per underlay family), and the queues' receiving sockets choose by the
    /// source port (<see cref="UdpBatchSocket.SteerBySourcePort"/>). Between two of our nodes, a
    /// flow's datagrams then reach the receiver's queue of the same number as the sender's, and the
    /// TUN, which sends a flow out through the queue its inbound packets were written by, keeps both
    /// directions there: flows spread over the queues instead of one peer's traffic on one queue
    /// (one outer 4-tuple). Either step that the kernel refuses is skipped with a warning.
    /// </summary>
    private void SpreadOverQueues(int batch, bool offload)
    {
        // Queue 0's receiving socket of each family stands for its SO_REUSEPORT group; send ports
        // are bound to the same address.
        UdpBatchSocket[] groups = [.. Underlay.Sockets];
        var senders = new List<UdpBatchSocket[]>(); // per family, one per queue
        bool steered = true;
        try
        {
            foreach (UdpBatchSocket group in groups)
            {
                try
                {
                    group.SteerBySourcePort(_queues.Count);
                }
                catch (NativeException e)
                {
                    steered = false;
                    _log.Warning("Queues: datagrams to {Endpoint} are spread by the kernel's hash, not by source port ({Error})", group.LocalEndpoint, e.Message);
                }
                senders.Add(UdpBatchSocket.BindSendPorts(group.LocalEndpoint with { Port = 0 }, _queues.Count, batch, offload));
            }
        }
        catch (NativeException e)
        {
            senders.ForEach(a => Array.ForEach(a, s => s.Dispose()));
            _log.Warning("Queues: every queue sends from {Endpoint} ({Error})", Underlay, e.Message);
            return;
        }
        for (int q = 0; q < _queues.Count; q++)
        {
            UdpBatchSocket[] own = [.. senders.Select(block => Keep(block[q]))];
            _queues[q] = _queues[q] with
            {
                Sender = new UnderlaySockets(own.FirstOrDefault(s => !s.LocalEndpoint.IsIpv6), own.FirstOrDefault(s => s.LocalEndpoint.IsIpv6)),
            };
        }
        _log.Information("Queues: each sends from its own port ({Ports}), received by {Steering}",
            string.Join(", ", senders.Select(a => $"{a[0].LocalEndpoint.AddressText} {a[0].LocalEndpoint.Port}-{a[^1].LocalEndpoint.Port}")),
            steered ? "source port" : "the kernel's hash");
    }

    private static TunDevice OpenTun(NodePlan plan, bool offload, bool multiQueue)
    {
        try
        {
            return TunDevice.Open(plan.DeviceName, offload, multiQueue);
        }
        catch (NativeException e) when (e.Errno == Errno.EINVAL || e.Errno == Errno.EBUSY)
        {
            throw NotOurs(plan.DeviceName, e.Message);
        }
        catch (NativeException e)
        {
            throw new ConfigException(e.Message);
        }
    }

    private static ConfigException NotOurs(string name, string what) =>
        new($"{what}: a device named {name} exists and is not ours (a kernel flannel.1, or another data plane): delete it or choose --device");

    /// <summary>
    /// The packet source's device: a veth pair, new, or ours as an earlier run kept it (or a SIGKILL
    /// left it: a veth pair outlives its process) and the plan checked. Returns how to open one more
    /// queue on our end.
    /// </summary>
    private Func<IPacketDevice> CreateVethPair(bool offload)
    {
        string name = _plan.DeviceName, peer = VethPeerName(name);
        using RouteNetlink nl = RouteNetlink.Open();
        try
        {
            _index = _plan.Existing is { Kind: "veth" } ? RouteNetlink.LinkIndex(name) : nl.AddVethPair(name, peer, $"create veth pair {name}/{peer}");
            int peerIndex = RouteNetlink.LinkIndex(peer);
            try
            {
                nl.SetNoIpv6LinkLocal(peerIndex, $"set {peer} addrgenmode none");
            }
            catch (NativeException e) when (e.Errno is Errno.EAFNOSUPPORT or Errno.EOPNOTSUPP)
            {
                // No IPv6 in this kernel: nothing to keep quiet.
            }
            nl.SetLinkUp(peerIndex, _plan.DeviceMtu, $"set {peer} up, mtu {_plan.DeviceMtu}");
            if (!offload)
            {
                PacketSocketDevice.TurnOffOffloads(name);
            }
            byte[] hostMac = RouteNetlink.GetMac(name), ourMac = RouteNetlink.GetMac(peer);
            _log.Information("Source: packet socket on {Peer}, the other end of {Device} (veth pair; {Device} is NOARP, so the kernel never routes what we read)",
                peer, name, name);
            return () => PacketSocketDevice.Open(name, peer, hostMac, ourMac, offload, fanoutGroup: peerIndex);
        }
        catch (NativeException e)
        {
            throw new ConfigException(e.Errno == Errno.EEXIST
                ? $"{e.Message}: {peer} exists and is not ours: delete it or choose --device"
                : e.Message);
        }
    }

    /// <summary>A veth pair whose other end is <paramref name="peer"/> (sysfs names a veth's peer by its index).</summary>
    internal static bool IsOurVethPair(string name, string peer)
    {
        int peerIndex = RouteNetlink.LinkIndex(peer);
        if (peerIndex <= 0)
        {
            return false;
        }
        try
        {
            return int.Parse(File.ReadAllText($"/sys/class/net/{name}/iflink").Trim(), System.Globalization.CultureInfo.InvariantCulture) == peerIndex;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            return true; // no sysfs to ask: the pair of names is ours
        }
    }

    private static UdpBatchSocket BindSocket(NodePlan plan, UdpEndpoint local, int batch, bool offload, bool multiQueue)
    {
        try
        {
            // Where inner packets sit in our datagrams: the socket splits kernel peers' tunnel superpackets by it.
            var layout = new EncapsulationLayout(plan.Node.Profile.PayloadPrefix, plan.DeviceMtu);
            return UdpBatchSocket.Bind(local, batch, offload, reusePort: multiQueue, layout);
        }
        catch (NativeException e)
        {
            throw new ConfigException(e.Message + (e.Errno == Errno.EADDRINUSE ? " (is flanneld or another data plane running?)" : ""));
        }
    }

    /// <summary>
    /// The device's transmit queue (the TUN's ring of packets the kernel hands us), in packets. The
    /// kernel's default for a TUN is 500: small packets overflow it within milliseconds while our
    /// outbound loop is descheduled. Ten times that covers scheduling gaps; TCP keeps its own window
    /// far below it (measured: bench/README.md, "Small packets: the device's transmit ring").
    /// </summary>
    public const int TxQueueLength = 5000;

    private void Configure()
    {
        string name = _plan.DeviceName;
        Ipv4Prefix network = _plan.Node.Config.Network;
        using RouteNetlink nl = RouteNetlink.Open();
        _index = RouteNetlink.LinkIndex(name);
        bool veth = _plan.Source == DeviceSource.Packet;
        // A veth end has no transmit ring of its own (noqueue): the length only matters for a TUN.
        nl.SetLinkUp(_index, _plan.DeviceMtu, $"set {name} up, mtu {_plan.DeviceMtu}" + (veth ? ", arp off" : $", txqueuelen {TxQueueLength}"),
            veth ? 0 : TxQueueLength, noArp: veth);
        nl.SetAlias(_index, ExistingDevice.MarkOf(_plan.Source, _queues.Count), $"mark {name} as ours (alias)");
        if (!_plan.Node.ForwardsIpv4)
        {
            _log.Information("Device {Device} up: MTU {Mtu} (underlay {Iface}, IPv6-only: no IPv4 address or route)", name, _plan.DeviceMtu, _plan.UnderlayIface);
        }
        else
        {
            nl.AddAddress(_index, _plan.Node.DeviceAddress, 32, $"add address {Ipv4Prefix.Format(_plan.Node.DeviceAddress)}/32 to {name}");
            nl.ReplaceRoute(network, _index, $"route {network} dev {name}");
            _log.Information("Device {Device} up: MTU {Mtu} (underlay {Iface} {UnderlayMtu} - {Overhead}), address {Address}/32, route {Network} dev {Device}",
                name, _plan.DeviceMtu, _plan.UnderlayIface, _plan.DeviceMtu + _plan.Node.Profile.Overhead(ipv6Underlay: false),
                _plan.Node.Profile.Overhead(ipv6Underlay: false),
                Ipv4Prefix.Format(_plan.Node.DeviceAddress), network, name);
        }
        if (_plan.Node.Ipv6Subnet is Ipv6Prefix subnet6 && _plan.Node.Config.Ipv6Network is Ipv6Prefix network6)
        {
            nl.AddAddress6(_index, subnet6.Address, 128, $"add address {Ipv6Prefix.Format(subnet6.Address)}/128 to {name}");
            nl.ReplaceRoute6(network6, _index, _plan.Ipv6RouteMtu, $"route {network6} dev {name} mtu {_plan.Ipv6RouteMtu}");
            _log.Information("Device {Device} IPv6: address {Address}/128, route {Network} dev {Device} mtu {Mtu} (IPv6 may travel over the IPv6 underlay, 20 bytes more)",
                name, Ipv6Prefix.Format(subnet6.Address), network6, name, _plan.Ipv6RouteMtu);
        }
    }

    /// <summary>
    /// Keep the device at Dispose: a successor has it; a start adopting it from a running node did
    /// not finish (it is still that node's); --on-exit keep after a complete start, or a device we
    /// took over (left as found).
    /// </summary>
    private bool Keeps => _successor is not null || _adopted && !_created || _onExit == OnExit.Keep && (_created || _plan.Existing is not null);

    public void Dispose()
    {
        if (_successor is not null)
        {
            _log.Information("Left device {Device} with its address and route to {Successor}", _plan.DeviceName, _successor);
        }
        else if (_index > 0 && _adopted && !_created)
        {
            _log.Information("Left device {Device} to the running node", _plan.DeviceName);
        }
        else if (_index > 0 && Keeps)
        {
            _log.Information("Kept device {Device} with its address and route (--on-exit keep): the next start takes it over", _plan.DeviceName);
        }
        else if (_index > 0)
        {
            try
            {
                using RouteNetlink nl = RouteNetlink.Open();
                if (_plan.Node.ForwardsIpv4) // never "delete 0.0.0.0/0": an IPv6-only node has no IPv4 route of its own
                {
                    nl.DeleteRoute(_plan.Node.Config.Network, _index, $"delete route {_plan.Node.Config.Network}");
                }
                if (_plan.Node.Ipv6Subnet is not null && _plan.Node.Config.Ipv6Network is Ipv6Prefix network6)
                {
                    nl.DeleteRoute6(network6, _index, $"delete route {network6}");
                }
                nl.DeleteLink(_index, $"delete {_plan.DeviceName}");
            }
            catch (NativeException e)
            {
                _log.Warning("Cleanup: {Error}", e.Message);
            }
        }
        foreach (UdpBatchSocket s in _sockets)
        {
            s.Dispose();
        }
        foreach (EngineQueue q in _queues)
        {
            q.Device.Dispose();
        }
        if (_index > 0 && !Keeps)
        {
            _log.Information("Removed device {Device} and route {Network}", _plan.DeviceName,
                _plan.Node.ForwardsIpv4 ? _plan.Node.Config.Network.ToString() : _plan.Node.Config.Ipv6Network.ToString());
        }
    }
}
