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

