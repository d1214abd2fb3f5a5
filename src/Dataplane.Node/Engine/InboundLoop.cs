using Dataplane.Capture;
using Dataplane.Encap;
using Dataplane.Encap.Offload;
using Dataplane.TunTap;

namespace Dataplane.Engine;

/// <summary>
/// Inbound: datagrams from peers are checked, unwrapped and written into the host stack.
///
///  1. Receive a batch of datagrams with their sources, each at <see cref="PacketBatch.Headroom"/>.
///  2. Read the subnet table once for the whole batch.
///  3. Per datagram: refuse a truncated one (it was larger than a slot) and one whose outer source
///     is not one of a current peer's public IPs (IPv4, or IPv6 on a dual-stack node).
///  4. vxlan: check flags (exactly 0x08, reserved bits zero), VNI, inner destination MAC (ours for
///     the underlay it came over: flannel.1's over IPv4, flannel-v6.1's over IPv6; broadcast only
///     for ARP, IPv6 multicast only for Neighbor Solicitation) and EtherType; answer an ARP request
///     or a Neighbor Solicitation for our VTEP address; step over the 22 header bytes. udp: the
///     payload is the packet.
///  5. Check the inner IP packet (version, lengths, IPv4 header checksum), that it came over the
///     underlay its family travels on from that peer, that its source lies in the sender's subnet
///     of its family and its destination in ours; trim link padding to the IP length.
///     A TCP/UDP checksum a kernel peer left unfinished is completed (by the kernel through the
///     device's virtio header, or here) and counted.
///  6. Write the batch to the device in one pass; send any ARP replies.
///  7. Only while someone captures: each datagram as received (a refusal with its reason) and each
///     inner packet delivered go to the captures (one reference read per batch when nobody does).
///
/// Every refusal is a counted <see cref="DropReason"/>; nothing here throws per packet.
/// </summary>
internal sealed class InboundLoop
{
    private readonly IPacketDevice _device;
    private readonly IUnderlay _underlay;
    private readonly TableHolder _table;
    private readonly EngineSettings _settings;
    private readonly PacketBatch _batch;
    private readonly PacketBatch _arp; // ARP replies and Neighbor Advertisements
    private int _ndAnswers;

    private readonly CaptureHub? _capture;

    public InboundLoop(IPacketDevice device, IUnderlay underlay, TableHolder table, EngineSettings settings, CaptureHub? capture = null)
    {
        _capture = capture;
        _device = device;
        _underlay = underlay;
        _table = table;
        _settings = settings;
        _batch = new PacketBatch(settings.BatchSize, settings.SlotSize);
        // As many reply slots as the batch has datagrams: every ARP request in a batch is answered.
        _arp = new PacketBatch(settings.BatchSize, PacketBatch.Headroom + 128);
        Counters = new LoopCounters(table.Current.SlotCount);
    }

    public LoopCounters Counters { get; }

    /// <summary>The outbound loop of the same queue, assisted after small batches (see <see cref="OutboundLoop.TryAssist"/>).</summary>
    public OutboundLoop? Partner { get; set; }

    /// <summary>
    /// Batches of at most this many datagrams, delivering at least one packet that is not a bare
    /// TCP acknowledgement, are followed by an assist: latency-bound traffic (a ping, a request)
    /// comes in small batches and expects an answer. Bulk traffic comes in full batches, and bare
    /// ACKs release more bulk data from the host: then the outbound loop's own thread works in
    /// parallel instead (assisting after ACKs cost one-stream TCP: bench/README.md, "Latency: the
    /// inbound loop's assist").
    /// </summary>
    public const int AssistMaxBatch = 8;

    /// <summary>
    /// Runs batches until <paramref name="stop"/> is cancelled (the underlay's wait is woken then).
    /// Returns why it stopped on its own, or null when it was asked to stop; the inbound loop has no
    /// reason of its own today (a socket does not go away), but reports the same way as the outbound one.
    /// </summary>
    public string? Run(CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            if (_underlay.ReceiveBatch(_batch, EngineSettings.WaitTimeoutMs) > 0)
            {
                ProcessBatch();
            }
            Volatile.Write(ref Counters.AllocatedBytes, GC.GetAllocatedBytesForCurrentThread());
        }
        return null;
    }

    public int RunOnce(int timeoutMs)
    {
        int n = _underlay.ReceiveBatch(_batch, timeoutMs);
        if (n > 0)
        {
            ProcessBatch();
        }
        return n;
    }

    private void ProcessBatch()
    {
        SubnetTable table = _table.Current;
        CaptureSession[] captures = _capture?.Sessions ?? [];
        PacketBatch batch = _batch;
        LoopCounters c = Counters;
        _arp.Count = 0;
        _ndAnswers = 0;
        int live = 0;
        c.Batches++;
        for (int i = 0; i < batch.Count; i++)
        {
            c.Packets++;
            c.Bytes += batch.Lengths[i];
            int outerOffset = batch.Offsets[i], outerLength = batch.Lengths[i];
            Verdict verdict = Accept(table, batch, i);
            if (captures.Length != 0)
            {
                Capture(captures, batch, i, outerOffset, outerLength, verdict);
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
                batch.Lengths[i] = 0; // dropped, or answered (the reply goes out with the ARP batch)
            }
        }
        if (live > 0)
        {
            int written = _device.WriteBatch(batch);
            if (written < live)
            {
                c.Drops[(int)DropReason.TunWriteFailed] += live - written;
            }
        }
        if (_arp.Count > 0)
        {
            int sent = _underlay.SendBatch(_arp);
            c.NdReplies += Math.Min(sent, _ndAnswers);
            c.ArpReplies += sent - Math.Min(sent, _ndAnswers);
        }
        if (live > 0 && batch.Count <= AssistMaxBatch && Partner is OutboundLoop partner && ExpectsAnswer(batch))
        {
            partner.TryAssist();
        }
    }

    /// <summary>A delivered packet (length non-zero) of the batch is something other than a bare TCP ACK.</summary>
    private static bool ExpectsAnswer(PacketBatch batch)
    {
        for (int i = 0; i < batch.Count; i++)
        {
            if (batch.Lengths[i] > 0 && !IsBareTcpAck(batch.Packet(i)))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>A TCP segment with no payload (IPv4 or IPv6 without extension headers): an acknowledgement, nothing to answer.</summary>
    internal static bool IsBareTcpAck(ReadOnlySpan<byte> ip)
    {
        if (ip.Length >= Ipv4Header.MinLength && ip[0] >> 4 == 4 && ip[Ipv4Header.ProtocolOffset] == Ipv4Header.ProtocolTcp)
        {
            int ihl = (ip[0] & 0x0F) * 4;
            return ip.Length >= ihl + 20 && ihl + (ip[ihl + 12] >> 4) * 4 == ip.Length;
        }
        if (ip.Length >= Ipv6Header.Length + 20 && ip[0] >> 4 == 6 && ip[Ipv6Header.NextHeaderOffset] == Ipv4Header.ProtocolTcp)
        {
            return Ipv6Header.Length + (ip[Ipv6Header.Length + 12] >> 4) * 4 == ip.Length;
        }
        return false;
    }

    /// <summary>
    /// Step 7 (only while someone captures): the datagram as received, with its IPv4/UDP headers and
    /// its drop reason if refused, and the inner packet delivered.
    /// </summary>
    private void Capture(CaptureSession[] captures, PacketBatch batch, int i, int outerOffset, int outerLength, Verdict verdict)
    {
        ReadOnlySpan<byte> outer = batch.Slot(i).Slice(outerOffset, outerLength);
        UdpEndpoint from = batch.Endpoints[i], local = _underlay.LocalEndpointOf(from.IsIpv6);
        string? label = verdict.IsDrop(out DropReason r) ? DropReasonLabels.Of(r) : null;
        foreach (CaptureSession s in captures)
        {
            s.Offer(CaptureSession.Underlay, inbound: true, outer, from, local, from.Address, label);
            if (verdict.Passes)
            {
                s.Offer(CaptureSession.Overlay, inbound: true, batch.Packet(i), from, local, from.Address, null);
            }
        }
    }

    /// <summary>Checks slot <paramref name="i"/> and leaves its offset/length on the inner IP packet (<see cref="Verdict.Pass"/>: deliver it).</summary>
    private Verdict Accept(SubnetTable table, PacketBatch batch, int i)
    {
        if ((batch.Flags[i] & PacketBatch.FlagTruncated) != 0)
        {
            return DropReason.Truncated;
        }
        UdpEndpoint from = batch.Endpoints[i];
        Peer? sender = table.PeerAt(from);
        if (sender is null)
        {
            return DropReason.UnknownPeer;
        }
        if (_settings.Backend == BackendKind.Vxlan)
        {
            VxlanDecapResult r = VxlanFrame.Decapsulate(batch.Packet(i), _settings.Vni, from.IsIpv6 ? _settings.OurVtepMacV6 : _settings.OurVtepMac,
                out int inner, out ushort etherType, out MacAddress innerSource);
            if (r != VxlanDecapResult.Ok)
            {
                return r switch
                {
                    VxlanDecapResult.TooShort => DropReason.TooShort,
                    VxlanDecapResult.BadFlags => DropReason.BadVxlanFlags,
                    VxlanDecapResult.WrongVni => DropReason.WrongVni,
                    VxlanDecapResult.NotOurMac => DropReason.NotOurMac,
                    _ => DropReason.BadEtherType,
                };
            }
            batch.Offsets[i] += inner;
            batch.Lengths[i] -= inner;
            if (etherType == EthernetHeader.EtherTypeArp)
            {
                return AnswerArp(table, sender, batch.Packet(i), innerSource);
            }
            Span<byte> ip = batch.Packet(i);
            if (etherType == EthernetHeader.EtherTypeIpv6 && ip.Length >= Ipv6Header.Length && ip[Ipv6Header.DestinationOffset] == 0xFF)
            {
                return AnswerNeighborSolicitation(table, sender, from, ip, innerSource);
            }
        }
        return CheckInnerPacket(table, sender, from, batch, i, Counters);
    }

    private Verdict CheckInnerPacket(SubnetTable table, Peer sender, UdpEndpoint from, PacketBatch batch, int i, LoopCounters counters)
    {
        Span<byte> packet = batch.Packet(i);
        int version = packet.Length > 0 ? packet[0] >> 4 : 0;
        if (version == 4)
        {
            IpParseResult r = Ipv4Header.TryRead(packet, out Ipv4Header h);
            if (r != IpParseResult.Ok)
            {
                return r == IpParseResult.BadHeaderChecksum ? DropReason.BadInnerChecksum : DropReason.MalformedInner;
            }
            if (from.IsIpv6)
            {
                return DropReason.WrongUnderlayFamily; // IPv4 travels over IPv4, from every kind of peer
            }
            if (!sender.Subnet.Contains(h.Source))
            {
                // A node with two leases (a stale one beside its own) sends from whichever of them holds the source (off the fast path).
                if (table.Lookup(h.Source) is not Peer owner || owner.PublicIp != from.Address)
                {
                    return DropReason.InnerSourceNotPeerSubnet;
                }
                sender = owner;
            }
            if (!table.OurSubnet.Contains(h.Destination))
            {
                return DropReason.InnerDestinationNotOurSubnet;
            }
            batch.Lengths[i] = h.TotalLength; // drop link-layer padding
            CompleteUnfinishedChecksum(batch, i, counters);
            counters.CountPeer(table.PeerSlot(sender), h.TotalLength);
            return Verdict.Pass;
        }
        if (version == 6)
        {
            if (Ipv6Header.TryRead(packet, out Ipv6Header h) != IpParseResult.Ok)
            {
                return DropReason.MalformedInner;
            }
            if (sender.Ipv6Subnet is not Ipv6Prefix theirs || !theirs.Contains(h.Source))
            {
                return DropReason.InnerSourceNotPeerSubnet;
            }
            if (table.OurIpv6Subnet is not Ipv6Prefix ours || !ours.Contains(h.Destination))
            {
                return DropReason.InnerDestinationNotOurSubnet;
            }
            if (!from.SameAddress(sender.Endpoint6))
            {
                return DropReason.WrongUnderlayFamily;
            }
            batch.Lengths[i] = h.TotalLength;
            CompleteUnfinishedChecksum(batch, i, counters);
            counters.CountPeer(table.PeerSlot(sender), h.TotalLength);
            return Verdict.Pass;
        }
        return DropReason.MalformedInner;
    }

    /// <summary>
    /// Step 5b: a TCP/UDP checksum a kernel peer left unfinished (<see cref="UnfinishedChecksum"/>)
    /// is completed: by the kernel when the device takes a virtio-net header (the slot is flagged),
    /// else here. Counted, never dropped; a checksum that is simply wrong is left for the pod's stack.
    /// </summary>
    private void CompleteUnfinishedChecksum(PacketBatch batch, int i, LoopCounters counters)
    {
        Span<byte> packet = batch.Packet(i);
        if (!UnfinishedChecksum.IsUnfinished(packet, out int start, out int offset))
        {
            return;
        }
        counters.ChecksumCompleted++;
        if (_device.CompletesChecksums)
        {
            batch.Flags[i] |= PacketBatch.FlagNeedsChecksum;
        }
        else
        {
            UnfinishedChecksum.Complete(packet, start, offset);
        }
    }

    /// <summary>
    /// A Neighbor Solicitation for our IPv6 VTEP address (our IPv6 subnet's base, as flannel-v6.1
    /// holds it) is answered with an advertisement carrying our v6 VTEP MAC, back over the underlay
    /// it came from; any other IPv6 packet to a multicast address is dropped.
    /// </summary>
    private Verdict AnswerNeighborSolicitation(SubnetTable table, Peer sender, UdpEndpoint from, ReadOnlySpan<byte> packet, MacAddress requesterMac)
    {
        if (table.OurIpv6Subnet is not Ipv6Prefix ours
            || !NeighborDiscovery.TryReadSolicitation(packet, out UInt128 solicitor, out UInt128 target)
            || target != ours.Address
            || _arp.Count == _arp.Capacity)
        {
            return DropReason.NdNotForUs;
        }
        int slot = _arp.Count++;
        Span<byte> s = _arp.Slot(slot);
        int offset = PacketBatch.Headroom;
        int length = NeighborDiscovery.WriteAdvertisement(s[(offset + Overheads.VxlanPayloadPrefix)..], target, _settings.OurVtepMacV6, solicitor);
        int start = VxlanFrame.Encapsulate(s, offset + Overheads.VxlanPayloadPrefix, _settings.Vni, requesterMac, _settings.OurVtepMacV6, EthernetHeader.EtherTypeIpv6);
        _arp.Offsets[slot] = start;
        _arp.Lengths[slot] = Overheads.VxlanPayloadPrefix + length;
        _arp.Endpoints[slot] = from.IsIpv6 ? sender.Endpoint6 : sender.Endpoint; // its listening port, not the source port
        _ndAnswers++;
        return Verdict.Answered;
    }

    private Verdict AnswerArp(SubnetTable table, Peer sender, ReadOnlySpan<byte> body, MacAddress requesterMac)
    {
        uint ourVtep = table.OurSubnet.Address;
        if (!Arp.TryReadRequest(body, out MacAddress senderMac, out uint senderIp, out uint targetIp) || targetIp != ourVtep)
        {
            return DropReason.ArpNotForUs;
        }
        int slot = _arp.Count++;
        Span<byte> s = _arp.Slot(slot);
        int offset = PacketBatch.Headroom;
        Arp.Write(s[(offset + Overheads.VxlanPayloadPrefix)..], Arp.OperationReply, _settings.OurVtepMac, ourVtep, senderMac, senderIp);
        int start = VxlanFrame.Encapsulate(s, offset + Overheads.VxlanPayloadPrefix, _settings.Vni, requesterMac, _settings.OurVtepMac, EthernetHeader.EtherTypeArp);
        _arp.Offsets[slot] = start;
        _arp.Lengths[slot] = Overheads.VxlanPayloadPrefix + Arp.Length;
        _arp.Endpoints[slot] = sender.Endpoint;
        return Verdict.Answered;
    }
}
