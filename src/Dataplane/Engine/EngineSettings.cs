using Dataplane.Encap;

namespace Dataplane.Engine;

/// <summary>What the loops need to know that does not change while they run.</summary>
internal sealed record EngineSettings(BackendKind Backend, uint Vni, MacAddress OurVtepMac, int BatchSize = 64)
{
    /// <summary>ICMP errors a loop may generate per second (0: none), and the burst it may save up.</summary>
    public double IcmpRate { get; init; } = 1000;
    public double IcmpBurst { get; init; } = 50;

    /// <summary>The largest batch the edges take (the TUN coalescer tracks this many packets).</summary>
    public const int MaxBatch = 256;

    /// <summary>Slot size: headroom plus the largest datagram an underlay with a 1500-9000 MTU delivers.</summary>
    public int SlotSize { get; init; } = TunTap.PacketBatch.Headroom + 9216;
}
