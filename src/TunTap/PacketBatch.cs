using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Dataplane.TunTap;

/// <summary>
/// A fixed set of packet slots, all in one pinned array allocated once. Every edge reads into
/// and writes from a batch, even when it carries one packet (the batch shape of wireguard-go's
/// <c>Read(bufs, sizes, offset)</c>). A slot holds its packet at <see cref="Offsets"/>[i] for
/// <see cref="Lengths"/>[i] bytes; packets are read at <see cref="Headroom"/> so encapsulation can
/// write its headers in front without copying. A slot whose length is 0 is skipped by the edges:
/// that is how the engine drops a packet from a batch.
/// </summary>
public sealed class PacketBatch
{
    /// <summary>Room in front of every packet for headers: 22 VXLAN + Ethernet, rounded up for alignment.</summary>
    public const int Headroom = 64;

    private readonly byte[] _memory;

    public PacketBatch(int capacity, int slotSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(slotSize, Headroom + 64);
        Capacity = capacity;
        SlotSize = slotSize;
        _memory = GC.AllocateArray<byte>(capacity * slotSize, pinned: true);
        Offsets = new int[capacity];
        Lengths = new int[capacity];
        Endpoints = new UdpEndpoint[capacity];
        Flags = new int[capacity];
    }

    public int Capacity { get; }
    public int SlotSize { get; }
    /// <summary>How many slots the last read filled.</summary>
    public int Count { get; set; }
    public int[] Offsets { get; }
    public int[] Lengths { get; }
    /// <summary>Datagrams: the source after a receive, the destination for a send.</summary>
    public UdpEndpoint[] Endpoints { get; }
    /// <summary>Per-slot flags an edge reports (for example <see cref="FlagTruncated"/>).</summary>
    public int[] Flags { get; }

    /// <summary>The datagram was larger than the slot: the kernel cut it (MSG_TRUNC).</summary>
    public const int FlagTruncated = 1;

    /// <summary>
    /// Inbound: the packet's TCP/UDP checksum is unfinished (the pseudo-header sum) and a device that
    /// <see cref="IPacketDevice.CompletesChecksums"/> has the kernel complete it (<c>NEEDS_CSUM</c>).
    /// </summary>
    public const int FlagNeedsChecksum = 2;

    /// <summary>The whole slot, for writing headers into the headroom.</summary>
    public Span<byte> Slot(int i) => _memory.AsSpan(i * SlotSize, SlotSize);

    /// <summary>The packet in slot <paramref name="i"/>.</summary>
    public Span<byte> Packet(int i) => _memory.AsSpan(i * SlotSize + Offsets[i], Lengths[i]);

    /// <summary>The packet in slot <paramref name="i"/> as memory (for consumers that keep it across calls within a batch).</summary>
    public Memory<byte> PacketMemory(int i) => _memory.AsMemory(i * SlotSize + Offsets[i], Lengths[i]);

    /// <summary>Address of the first byte of slot <paramref name="i"/>; the memory is pinned for the batch's life.</summary>
    internal unsafe byte* SlotPointer(int i) =>
        (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_memory)) + (nint)i * SlotSize;

    /// <summary>Puts a copy of <paramref name="packet"/> in slot <paramref name="i"/> at the headroom (tests, builders).</summary>
    public void Set(int i, ReadOnlySpan<byte> packet, UdpEndpoint endpoint = default)
    {
        packet.CopyTo(Slot(i)[Headroom..]);
        Offsets[i] = Headroom;
        Lengths[i] = packet.Length;
        Endpoints[i] = endpoint;
        Flags[i] = 0;
    }
}
