using Dataplane.Capture;
using Dataplane.Encap;
using Dataplane.TunTap;

namespace Dataplane.Engine;

/// <summary>
/// Outbound: packets the host routed into the device go to the node that owns their destination.
///
///  1. Read a batch of IP packets from the device, each at <see cref="PacketBatch.Headroom"/>.
///  2. Read the subnet table once for the whole batch.
///  3. Per packet: classify by IP version, take the destination, look up the owning peer (IPv4
///     and, on a dual-stack node, IPv6 subnets: each a shift and a load).
///  4. No owner: drop, and (unless the packet is itself an ICMP error, a non-first fragment or
///     multicast, or the loop's ICMP token bucket is empty) queue an ICMP "net unreachable"
///     back into the device. Its source is the base
///     address of the unreachable subnet, never one of our own addresses, so the kernel does not
///     drop it as a martian and it reaches the sender (a pod or the node itself).
///  5. Owner: write the encapsulation in front of the packet (vxlan: 8 VXLAN + 14 Ethernet; udp:
///     nothing, the packet is the payload) and address the slot to the peer: IPv4 packets to its
///     IPv4 endpoint with its VtepMAC, IPv6 packets to its IPv6 endpoint (the IPv6 underlay, as
///     kernel flannel-v6.1) with its v6 VtepMAC. The underlay sends each family's slots on its own socket.
///  6. Send the batch to the peers in one call; write the queued ICMP errors to the device.
///  7. Only while someone captures: each packet as read (a drop with its reason) and each datagram
///     as sent go to the captures (one reference read per batch when nobody does).
///
/// TTL is left alone: this is a link, as kernel VXLAN is; the nodes' routing decrements it.
/// </summary>
internal sealed class OutboundLoop
{
    private readonly IPacketDevice _device;
    private readonly IUnderlay _underlay;
    private readonly TableHolder _table;
    private readonly EngineSettings _settings;
    private readonly PacketBatch _batch;
    // What an assist reads at most: a few packets (a reply, an ACK). The rest of a superpacket stays
    // pending in the device for this loop's own thread, so bulk work never moves to the inbound loop.
    private readonly PacketBatch _assistBatch;
    private readonly PacketBatch _icmp;
    private readonly TokenBucket _icmpBudget;

    private readonly CaptureHub? _capture;
    // Whoever holds the turn reads the device and processes the batch: this loop's thread, or the
    // inbound loop of the same queue assisting (see TryAssist). Never held while waiting.
    private readonly Lock _turn = new();
    // True while this loop's thread sleeps in its wait: only then is an assist worth it (a busy
    // loop finds the packets itself, and bulk traffic keeps both threads working in parallel).
    private volatile bool _waiting = true; // a loop not running (yet) is idle too

    public OutboundLoop(IPacketDevice device, IUnderlay underlay, TableHolder table, EngineSettings settings, CaptureHub? capture = null)
    {
        _capture = capture;
        _device = device;
        _underlay = underlay;
        _table = table;
        _settings = settings;
        _batch = new PacketBatch(settings.BatchSize, settings.SlotSize);
        _assistBatch = new PacketBatch(Math.Min(settings.BatchSize, AssistBatch), settings.SlotSize);
        _icmp = new PacketBatch(settings.BatchSize, PacketBatch.Headroom + IcmpErrors.Ipv6MaxErrorLength);
        _icmpBudget = new TokenBucket(settings.IcmpRate, settings.IcmpBurst);
        Counters = new LoopCounters(table.Current.SlotCount);
    }

    public LoopCounters Counters { get; }

    /// <summary>
    /// Runs batches until <paramref name="stop"/> is cancelled (the device's wait is woken then).
    /// Returns why it stopped on its own (the device is gone), or null when it was asked to stop.
    /// </summary>
    public string? Run(CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            _waiting = true;
            Readiness r = _device.WaitReadable(EngineSettings.WaitTimeoutMs);
            _waiting = false;
            if (r == Readiness.Ready)
            {
                EnterTurn();
                try
                {
                    // No waiting under the turn: an assist may have taken what woke us.
                    if (_device.ReadBatch(_batch, 0) > 0)
                    {
                        ProcessBatch(_batch);
                    }
                }
                finally
                {
                    _turn.Exit();
                }
            }
            Volatile.Write(ref Counters.AllocatedBytes, GC.GetAllocatedBytesForCurrentThread());
            if (_device.Gone)
            {
                return $"device {_device.Name} is gone (deleted under us)";
            }
        }
        return null;
    }

    /// <summary>
    /// Takes the turn, spinning while an assist holds it (a few packets' work): never a blocking
    /// wait, whose first use would make the lock allocate its wait event on the packet path.
    /// </summary>
    private void EnterTurn()
    {
        var spin = new SpinWait();
        while (!_turn.TryEnter())
        {
            spin.SpinOnce(sleep1Threshold: -1);
        }
    }

    /// <summary>
    /// Called by the inbound loop of this queue right after it wrote a few packets into the
    /// device: what the host answers to them (an echo reply, a TCP ACK) is often already queued in
    /// the device when that write returns, because the kernel delivers and answers within the
    /// writer's system call. Reading it here, on the thread that is already running, saves waking
    /// this loop's thread (on an idle path, one of the four sleeping threads a round trip wakes).
    /// Only while this loop sleeps: if it is busy, it will find the packets itself (and under bulk
    /// traffic the two threads should keep working in parallel); nothing waits for the turn.
    /// </summary>
    public void TryAssist()
    {
        if (!_waiting || !_turn.TryEnter())
        {
            return;
        }
        try
        {
            if (_device.ReadBatch(_assistBatch, 0) > 0)
            {
                ProcessBatch(_assistBatch);
                Counters.Assists++;
            }
        }
        finally
        {
            _turn.Exit();
        }
    }

    /// <summary>Packets an assist takes at most.</summary>
    public const int AssistBatch = 8;

    /// <summary>Steps 2-6 for the packets just read into <paramref name="batch"/> (tests reach it through <see cref="RunOnce"/>).</summary>
    private void ProcessBatch(PacketBatch batch)
    {
        SubnetTable table = _table.Current;
        CaptureSession[] captures = _capture?.Sessions ?? [];
        LoopCounters c = Counters;
        _icmp.Count = 0;
        int live = 0;
        c.Batches++;
        for (int i = 0; i < batch.Count; i++)
        {
            Span<byte> packet = batch.Packet(i);
            int innerOffset = batch.Offsets[i];
            c.Packets++;
            c.Bytes += packet.Length;
            Verdict verdict = Forward(table, batch, i, packet);
            if (captures.Length != 0)
            {
                Capture(captures, batch, i, innerOffset, packet.Length, verdict);
            }
            if (verdict.Passes)
            {
                live++;
            }
            else
            {
                if (verdict.IsDrop(out DropReason reason))
                {
                    c.Drop(reason);
                }
                batch.Lengths[i] = 0;
            }
        }
        if (live > 0)
        {
            int sent = _underlay.SendBatch(batch);
            if (sent < live)
            {
                c.Drops[(int)DropReason.UdpSendFailed] += live - sent;
            }
        }
        if (_icmp.Count > 0)
        {
            c.IcmpSent += _device.WriteBatch(_icmp);
        }
    }

    /// <summary>
    /// Step 7 (only while someone captures): the inner packet as read (with its drop reason, if
    /// dropped) and, if it goes out, the datagram as sent, with its IPv4/UDP headers.
    /// </summary>
    private void Capture(CaptureSession[] captures, PacketBatch batch, int i, int innerOffset, int innerLength, Verdict verdict)
    {
        ReadOnlySpan<byte> inner = batch.Slot(i).Slice(innerOffset, innerLength);
        bool forwarded = verdict.Passes;
        UdpEndpoint to = forwarded ? batch.Endpoints[i] : default, local = _underlay.LocalEndpointOf(to.IsIpv6);
        string? reason = verdict.IsDrop(out DropReason r) ? DropReasonLabels.Of(r) : null;
        foreach (CaptureSession s in captures)
        {
            s.Offer(CaptureSession.Overlay, inbound: false, inner, local, to, to.Address, reason);
            if (forwarded)
            {
                s.Offer(CaptureSession.Underlay, inbound: false, batch.Packet(i), local, to, to.Address, null);
            }
        }
    }

    /// <summary>Addresses the packet to its peer (<see cref="Verdict.Pass"/>), or says why it is dropped (counted by the caller).</summary>
    private Verdict Forward(SubnetTable table, PacketBatch batch, int i, Span<byte> packet)
    {
        int version = packet.Length > 0 ? packet[0] >> 4 : 0;
        if (version == 4)
        {
            if (packet.Length < Ipv4Header.MinLength)
            {
                return DropReason.MalformedOutbound;
            }
            uint dst = Ipv4Header.ReadDestination(packet);
            Peer? peer = table.Lookup(dst);
            if (peer is null)
            {
                return table.Ipv4 ? NoRouteIpv4(table, packet, dst) : DropReason.NoRoute; // an IPv6-only network routes no IPv4
            }
            Counters.CountPeer(table.PeerSlot(peer), packet.Length);
            Encapsulate(batch, i, peer.Endpoint, peer.VtepMac, _settings.OurVtepMac, EthernetHeader.EtherTypeIpv4);
            return Verdict.Pass;
        }
        if (version == 6)
        {
            if (packet.Length < Ipv6Header.Length)
            {
                return DropReason.MalformedOutbound;
            }
            UInt128 dst = Ipv6Header.ReadDestination(packet);
            Peer? peer = table.Lookup6(dst);
            if (peer is null)
            {
                return NoRouteIpv6(table, packet, dst);
            }
            Counters.CountPeer(table.PeerSlot(peer), packet.Length);
            Encapsulate(batch, i, peer.Endpoint6, peer.VtepMacV6, _settings.OurVtepMacV6, EthernetHeader.EtherTypeIpv6);
            return Verdict.Pass;
        }
        return DropReason.BadIpVersion;
    }

    private void Encapsulate(PacketBatch batch, int i, UdpEndpoint to, MacAddress peerMac, MacAddress ourMac, ushort etherType)
    {
        if (_settings.Backend == BackendKind.Vxlan)
        {
            int start = VxlanFrame.Encapsulate(batch.Slot(i), batch.Offsets[i], _settings.Vni, peerMac, ourMac, etherType);
            batch.Lengths[i] += batch.Offsets[i] - start;
            batch.Offsets[i] = start;
        }
        batch.Endpoints[i] = to;
    }

    private DropReason NoRouteIpv4(SubnetTable table, Span<byte> packet, uint dst)
    {
        if (table.OurSubnet.Contains(dst))
        {
            return DropReason.OwnSubnet;
        }
        if ((dst >> 28) == 0xE)
        {
            return DropReason.Multicast;
        }
        if (Ipv4Header.TryRead(packet, out Ipv4Header header, verifyChecksum: false) == IpParseResult.Ok
            && IcmpErrors.ShouldAnswerIpv4(packet, header)
            && TryTakeIcmpSlot(out int slot, out Span<byte> target))
        {
            _icmp.Lengths[slot] = IcmpErrors.WriteIpv4NetUnreachable(target, packet, header, table.SubnetBase(dst));
        }
        return DropReason.NoRoute;
    }

    /// <summary>A free slot for an ICMP error, if the batch has room and the token bucket a token.</summary>
    private bool TryTakeIcmpSlot(out int slot, out Span<byte> target)
    {
        slot = -1;
        target = default;
        if (_icmp.Count == _icmp.Capacity)
        {
            return false;
        }
        if (!_icmpBudget.TryTake())
        {
            Counters.IcmpRateLimited++;
            return false;
        }
        slot = _icmp.Count++;
        target = _icmp.Slot(slot)[PacketBatch.Headroom..];
        _icmp.Offsets[slot] = PacketBatch.Headroom;
        return true;
    }

    private DropReason NoRouteIpv6(SubnetTable table, Span<byte> packet, UInt128 dst)
    {
        if ((dst >> 120) == 0xFF)
        {
            return DropReason.Multicast;
        }
        if (table.OurIpv6Subnet is Ipv6Prefix ours && ours.Contains(dst))
        {
            return DropReason.OwnSubnet;
        }
        if (Ipv6Header.TryRead(packet, out Ipv6Header header) == IpParseResult.Ok
            && IcmpErrors.ShouldAnswerIpv6(packet, header)
            && TryTakeIcmpSlot(out int slot, out Span<byte> target))
        {
            // From the /64 of the unreachable destination: not one of ours, so not a martian.
            UInt128 source = header.Destination & (UInt128.MaxValue << 64);
            _icmp.Lengths[slot] = IcmpErrors.WriteIpv6NoRoute(target, packet, header, source);
        }
        return DropReason.NoRoute;
    }

    /// <summary>One read-and-process step without the loop (engine tests, benchmarks).</summary>
    public int RunOnce(int timeoutMs)
    {
        int n = _device.ReadBatch(_batch, timeoutMs);
        if (n > 0)
        {
            ProcessBatch(_batch);
        }
        return n;
    }
}
