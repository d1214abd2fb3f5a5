using Dataplane.Encap;
using Dataplane.TunTap;
using Serilog;

namespace Dataplane.Node;

/// <summary>
/// The host-side objects of a running node: the TUN device (one descriptor per queue) with
/// flannel's address and route, and one bound UDP socket per queue (SO_REUSEPORT when there are
/// several). <see cref="Create"/> undoes its own steps if one fails; <see cref="Dispose"/> deletes
/// the route and the device (closing a non-persistent TUN's last descriptor deletes it too).
/// </summary>
internal sealed class NodeDevice : IDisposable
{
    private readonly NodePlan _plan;
    private readonly ILogger _log;
    private int _index;

    private readonly List<(TunDevice Tun, UdpBatchSocket Socket)> _queues = [];

    private NodeDevice(NodePlan plan, ILogger log)
    {
        _plan = plan;
        _log = log;
    }

    public IReadOnlyList<(TunDevice Tun, UdpBatchSocket Socket)> Queues => _queues;
    public TunDevice Tun => _queues[0].Tun;

    public UdpBatchSocket Socket => _queues[0].Socket;

    public static NodeDevice Create(NodePlan plan, bool offload, int batch, int queues, ILogger log)
    {
        var device = new NodeDevice(plan, log);
        try
        {
            for (int q = 0; q < queues; q++)
            {
                device._queues.Add(OpenQueue(plan, offload, batch, multiQueue: queues > 1));
            }
            device.Configure();
        }
        catch
        {
            device.Dispose();
            throw;
        }
        log.Information("Offloads: device {TunOffloads}; socket {UdpOffloads}; batch {Batch}; queues {Queues}",
            device.Tun.Offloads, device.Socket.Offloads, batch, queues);
        return device;
    }

    private static (TunDevice, UdpBatchSocket) OpenQueue(NodePlan plan, bool offload, int batch, bool multiQueue)
    {
        TunDevice tun;
        try
        {
            tun = TunDevice.Open(plan.DeviceName, offload, multiQueue);
        }
        catch (NativeException e) when (e.Errno == Errno.EINVAL || e.Errno == Errno.EBUSY)
        {
            throw new ConfigException($"{e.Message}: a device named {plan.DeviceName} exists and is not ours " +
                "(a kernel flannel.1, or another data plane): delete it or choose --device");
        }
        catch (NativeException e)
        {
            throw new ConfigException(e.Message);
        }
        try
        {
            // Where inner packets sit in our datagrams: the socket splits kernel peers' tunnel superpackets by it.
            var layout = new EncapsulationLayout(plan.Node.Backend == Engine.BackendKind.Vxlan ? Overheads.VxlanPayloadPrefix : 0, plan.DeviceMtu);
            return (tun, UdpBatchSocket.Bind(new UdpEndpoint(plan.BindAddress, (ushort)plan.Node.Port), batch, offload, reusePort: multiQueue, layout));
        }
        catch (NativeException e)
        {
            tun.Dispose();
            throw new ConfigException(e.Message + (e.Errno == Errno.EADDRINUSE ? " (is flanneld or another data plane running?)" : ""));
        }
    }

    /// <summary>
    /// The device's transmit queue (the TUN's ring of packets the kernel hands us), in packets. The
    /// kernel's default for a TUN is 500: small packets at ~150 kpps overflow it in about 3 ms, for
    /// example while our outbound loop is descheduled (issue 10 measured 16,497 TX drops on it at
    /// 80 kpps). Ten times that covers scheduling gaps; TCP keeps its own window far below it.
    /// </summary>
    public const int TxQueueLength = 5000;

    private void Configure()
    {
        string name = _plan.DeviceName;
        Ipv4Prefix network = _plan.Node.Config.Network;
        using RouteNetlink nl = RouteNetlink.Open();
        _index = RouteNetlink.LinkIndex(name);
        nl.SetLinkUp(_index, _plan.DeviceMtu, $"set {name} up, mtu {_plan.DeviceMtu}, txqueuelen {TxQueueLength}", TxQueueLength);
        nl.AddAddress(_index, _plan.Node.DeviceAddress, 32, $"add address {Ipv4Prefix.Format(_plan.Node.DeviceAddress)}/32 to {name}");
        nl.ReplaceRoute(network, _index, $"route {network} dev {name}");
        _log.Information("Device {Device} up: MTU {Mtu} (underlay {Iface} {UnderlayMtu} - {Overhead}), address {Address}/32, route {Network} dev {Device}",
            name, _plan.DeviceMtu, _plan.UnderlayIface, _plan.DeviceMtu + (_plan.Node.Backend == Engine.BackendKind.Vxlan ? Overheads.VxlanBackend : Overheads.UdpBackend),
            _plan.Node.Backend == Engine.BackendKind.Vxlan ? Overheads.VxlanBackend : Overheads.UdpBackend,
            Ipv4Prefix.Format(_plan.Node.DeviceAddress), network, name);
    }

    public void Dispose()
    {
        if (_index > 0)
        {
            try
            {
                using RouteNetlink nl = RouteNetlink.Open();
                nl.DeleteRoute(_plan.Node.Config.Network, _index, $"delete route {_plan.Node.Config.Network}");
                nl.DeleteLink(_index, $"delete {_plan.DeviceName}");
            }
            catch (NativeException e)
            {
                _log.Warning("Cleanup: {Error}", e.Message);
            }
        }
        foreach (var (tun, socket) in _queues)
        {
            socket.Dispose();
            tun.Dispose();
        }
        if (_index > 0)
        {
            _log.Information("Removed device {Device} and route {Network}", _plan.DeviceName, _plan.Node.Config.Network);
        }
    }
}
