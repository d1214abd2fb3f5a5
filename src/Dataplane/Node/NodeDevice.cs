using Dataplane.Encap;
using Dataplane.TunTap;
using Serilog;

namespace Dataplane.Node;

/// <summary>
/// The host-side objects of a running node: the TUN device with flannel's address and route, and
/// the bound UDP socket. <see cref="Create"/> undoes its own steps if one fails; <see cref="Dispose"/>
/// deletes the route and the device (closing a non-persistent TUN deletes it too).
/// </summary>
internal sealed class NodeDevice : IDisposable
{
    private readonly NodePlan _plan;
    private readonly ILogger _log;
    private int _index;

    private NodeDevice(NodePlan plan, TunDevice tun, UdpBatchSocket socket, ILogger log)
    {
        _plan = plan;
        Tun = tun;
        Socket = socket;
        _log = log;
    }

    public TunDevice Tun { get; }
    public UdpBatchSocket Socket { get; }

    public static NodeDevice Create(NodePlan plan, bool offload, int batch, ILogger log)
    {
        TunDevice tun;
        try
        {
            tun = TunDevice.Open(plan.DeviceName, offload);
        }
        catch (NativeException e) when (e.Errno == Errno.EINVAL || e.Errno == Errno.EBUSY)
        {
            throw new Leases.ConfigException($"{e.Message}: a device named {plan.DeviceName} exists and is not ours " +
                "(a kernel flannel.1, or another data plane): delete it or choose --device");
        }
        catch (NativeException e)
        {
            throw new Leases.ConfigException(e.Message);
        }
        UdpBatchSocket socket;
        try
        {
            socket = UdpBatchSocket.Bind(new UdpEndpoint(plan.Node.Lease.PublicIp, (ushort)plan.Node.Port), batch, offload);
        }
        catch (NativeException e)
        {
            tun.Dispose();
            throw new Leases.ConfigException(e.Message + (e.Errno == Errno.EADDRINUSE ? " (is flanneld or another data plane running?)" : ""));
        }
        var device = new NodeDevice(plan, tun, socket, log);
        log.Information("Offloads: device {TunOffloads}; socket {UdpOffloads}; batch {Batch}", tun.Offloads, socket.Offloads, batch);
        try
        {
            device.Configure();
        }
        catch
        {
            device.Dispose();
            throw;
        }
        return device;
    }

    private void Configure()
    {
        string name = _plan.DeviceName;
        Ipv4Prefix network = _plan.Node.Config.Network;
        using RouteNetlink nl = RouteNetlink.Open();
        _index = RouteNetlink.LinkIndex(name);
        nl.SetLinkUp(_index, _plan.DeviceMtu, $"set {name} up, mtu {_plan.DeviceMtu}");
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
        Socket.Dispose();
        Tun.Dispose();
        if (_index > 0)
        {
            _log.Information("Removed device {Device} and route {Network}", _plan.DeviceName, _plan.Node.Config.Network);
        }
    }
}
