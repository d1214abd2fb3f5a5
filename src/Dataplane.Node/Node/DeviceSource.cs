namespace Dataplane.Node;

/// <summary>Where the node's device side comes from (<c>run --source</c>).</summary>
internal enum DeviceSource
{
    /// <summary>tun when /dev/net/tun opens, else packet.</summary>
    Auto,
    /// <summary>A TUN device (/dev/net/tun).</summary>
    Tun,
    /// <summary>A veth pair: the host's end carries the device name, we read and write the other with AF_PACKET.</summary>
    Packet,
}

/// <summary>What a node does with its device when it stops without a successor (<c>run --on-exit</c>).</summary>
internal enum OnExit
{
    /// <summary>Delete the device, its address and route, and the --ip-masq rules (the CLI, the demo).</summary>
    Remove,
    /// <summary>
    /// Keep them (as flanneld keeps flannel.1), the TUN persistent: the next start, or the same node
    /// after a crash, takes the device over with its address and route in place (the DaemonSet, systemd).
    /// </summary>
    Keep,
}
