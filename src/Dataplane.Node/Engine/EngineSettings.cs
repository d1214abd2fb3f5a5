using Dataplane.Encap;

namespace Dataplane.Engine;

/// <summary>What the loops need to know that does not change while they run.</summary>
internal sealed record EngineSettings(BackendKind Backend, uint Vni, MacAddress OurVtepMac, int BatchSize = EngineSettings.DefaultBatch)
{
    /// <summary>Our VTEP MAC for IPv6 frames (flannel-v6.1's, from our lease's BackendV6Data); the IPv4 one unless set.</summary>
    public MacAddress OurVtepMacV6 { get; init; } = OurVtepMac;

    /// <summary>Packets per system call at most, unless told otherwise.</summary>
    public const int DefaultBatch = 64;

    /// <summary>ICMP errors a loop may generate per second (0: none), and the burst it may save up (as Linux: 1000/s, 50).</summary>
    public double IcmpRate { get; init; } = DefaultIcmpRate;
    public double IcmpBurst { get; init; } = DefaultIcmpBurst;
    public const double DefaultIcmpRate = 1000;
    public const double DefaultIcmpBurst = 50;

    /// <summary>The inbound loop reads what the host answered right after its write (<see cref="OutboundLoop.TryAssist"/>).</summary>
    public bool Assist { get; init; } = true;

    /// <summary>
    /// How long a loop waits for packets before it looks at its stop token again. Stopping wakes the
    /// wait at once (<see cref="TunTap.IPacketDevice.StopWaiting"/>); this is only a safety net.
    /// </summary>
    public const int WaitTimeoutMs = 1000;

    /// <summary>The largest batch the edges take (the TUN coalescer tracks this many packets).</summary>
    public const int MaxBatch = 256;

    /// <summary>Slot size: headroom plus the largest datagram an underlay with a 1500-9000 MTU delivers.</summary>
    public int SlotSize { get; init; } = DefaultSlotSize;

    public const int DefaultSlotSize = TunTap.PacketBatch.Headroom + 9216;
}
