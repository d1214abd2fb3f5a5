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

/// <summary>How a <see cref="DeviceSource"/> is written in flags, marks, offers and descriptor names: "tun", "packet".</summary>
internal static class DeviceSourceNames
{
    public static string Name(this DeviceSource source) => source.ToString().ToLowerInvariant();
}

