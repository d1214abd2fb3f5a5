using System.Buffers.Binary;
using System.IO.Pipelines;
using Dataplane.Encap;
using Dataplane.TunTap;

namespace Dataplane.Capture;

/// <summary>
/// One running capture: the loops offer it packets (<see cref="Offer"/>), it keeps what its filter
/// matches by copying it into a pooled record, and a writer of its own streams the records as
/// pcapng into the client's connection (System.IO.Pipelines). The loops never wait for it: when
/// the writer falls behind and holds every record, a packet is left out of the capture and counted
/// (<see cref="Dropped"/>), never delayed or lost on the data path. Records go between the loops
/// and the writer through two lock-free rings (<see cref="RecordRing"/>), so a capture allocates
/// nothing on a loop's thread; the writer polls (every 2 ms when idle) rather than being woken.
/// It ends at its packet count or duration, when the client goes away, or when the node stops.
/// </summary>
internal sealed class CaptureSession
{
    public const int Overlay = 0, Underlay = 1;
    private const int QueueLength = 4096;
    // The IP and UDP headers written in front of a datagram: IPv4's, or IPv6's on the IPv6 underlay.
    private const int OuterHeaders = Ipv4Header.MinLength + 8, OuterHeaders6 = Ipv6Header.Length + 8;

    // Every record a session uses is made when it starts (on the control socket's thread, never by
    // a loop): as many as fit this budget, 64 to QueueLength. A loop that finds none free leaves the
    // packet out and counts it, as when the writer falls behind: the loops allocate nothing.
    private const int RecordBudget = 16 << 20;

    // How long the writer sleeps when it finds the queue empty: what a capture lags behind at most.
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(2);

    private readonly CaptureFilter _filter;
    private readonly int _snapLength;
    private readonly RecordRing _free;
    private readonly RecordRing _queue;
    private readonly CancellationTokenSource _end = new();
    private readonly long _count;
    private readonly TimeSpan _duration;
    private long _dropped;

    /// <param name="maxPacket">The largest packet a loop can offer (its slot size).</param>
    public CaptureSession(CaptureFilter filter, int snapLength, long count, TimeSpan duration, int maxPacket)
    {
        _filter = filter;
        _snapLength = snapLength;
        _count = count;
        _duration = duration;
        // Records as large as a packet can be here (a slot plus the outer headers written in front), or the snap length.
        int capacity = Math.Min(snapLength, maxPacket + OuterHeaders6);
        int records = Math.Clamp(RecordBudget / capacity, 64, QueueLength);
        _free = new RecordRing(records);
        _queue = new RecordRing(records);
        for (int i = 0; i < records; i++)
        {
            _free.Enqueue(new CaptureRecord(capacity));
        }
    }

    /// <summary>Packets left out because the writer fell behind.</summary>
    public long Dropped => Interlocked.Read(ref _dropped);
    public long Written { get; private set; }

    /// <summary>
    /// The inner packet a record is about, for the subnet filter: the overlay packet itself; in an
    /// underlay datagram what follows VXLAN's and Ethernet's headers (VXLAN's first byte is its
    /// flags, 0x08; an IPv4 packet's is 0x4N), else the udp backend's payload, the packet itself.
    /// </summary>
    private static ReadOnlySpan<byte> InnerPacket(int side, ReadOnlySpan<byte> data)
    {
        const int vxlanInner = VxlanHeader.Length + EthernetHeader.Length;
        return side == Underlay && data.Length > vxlanInner && data[0] == 0x08 && BinaryPrimitives.ReadUInt16BigEndian(data[(vxlanInner - 2)..]) == 0x0800
            ? data[vxlanInner..]
            : data;
    }

    /// <summary>
    /// From a loop: keep this packet if the filter matches. <paramref name="data"/> is the inner IP
    /// packet (overlay) or the UDP payload (underlay, whose IPv4 or IPv6 and UDP headers are written
    /// in front from <paramref name="from"/> and <paramref name="to"/>, as they were on the wire).
    /// </summary>
    public void Offer(int side, bool inbound, ReadOnlySpan<byte> data, UdpEndpoint from, UdpEndpoint to, uint peer, string? dropReason)
    {
        ReadOnlySpan<byte> inner = InnerPacket(side, data);
        uint innerSource = inner.Length >= Ipv4Header.MinLength && inner[0] >> 4 == 4 ? BinaryPrimitives.ReadUInt32BigEndian(inner[12..]) : 0;
        uint innerDestination = inner.Length >= Ipv4Header.MinLength && inner[0] >> 4 == 4 ? BinaryPrimitives.ReadUInt32BigEndian(inner[16..]) : 0;
        if (!_filter.Matches(peer, innerSource, innerDestination, dropReason is not null) || _end.IsCancellationRequested)
        {
            return;
        }
        if (!_free.TryDequeue(out CaptureRecord? r))
        {
            Interlocked.Increment(ref _dropped); // every record is queued: the writer is behind
            return;
        }
        Span<byte> b = r.Buffer;
        int header = 0;
        if (side == Underlay)
        {
            int ip;
            if (from.IsIpv6 || to.IsIpv6)
            {
                header = OuterHeaders6;
                ip = Ipv6Header.Length;
                Ipv6Header.Write(b, 8 + data.Length, Ipv4Header.ProtocolUdp, 64, from.Ipv6Address, to.Ipv6Address);
            }
            else
            {
                header = OuterHeaders;
                ip = Ipv4Header.MinLength;
                Ipv4Header.Write(b, OuterHeaders + data.Length, 0, 0x4000, 64, Ipv4Header.ProtocolUdp, from.Address, to.Address);
            }
            BinaryPrimitives.WriteUInt16BigEndian(b[ip..], from.Port);
            BinaryPrimitives.WriteUInt16BigEndian(b[(ip + 2)..], to.Port);
            BinaryPrimitives.WriteUInt16BigEndian(b[(ip + 4)..], (ushort)(8 + data.Length));
            // No UDP checksum: common for VXLAN over IPv4; over IPv6 the kernel computes one we do not
            // see here, and readers of the capture are told so by it being zero.
            BinaryPrimitives.WriteUInt16BigEndian(b[(ip + 6)..], 0);
        }
        int copy = Math.Min(data.Length, b.Length - header);
        data[..copy].CopyTo(b[header..]);
        r.Length = header + copy;
        r.OriginalLength = header + data.Length;
        r.Interface = side;
        r.Inbound = inbound;
        r.Microseconds = (DateTime.UtcNow.Ticks - DateTime.UnixEpoch.Ticks) / 10;
        r.Comment = dropReason;
        _queue.Enqueue(r);
    }

    /// <summary>Ends the capture (node stopping, client gone); the writer finishes what it has.</summary>
    public void End() => _end.Cancel();

    /// <summary>The writer: streams pcapng into <paramref name="output"/> until the capture ends. Returns the packets written.</summary>
    public async Task<long> WriteAsync(Stream output, string overlayName, string underlayName)
    {
        PipeWriter w = PipeWriter.Create(output);
        using var timer = new CancellationTokenSource(_duration > TimeSpan.Zero ? _duration : Timeout.InfiniteTimeSpan);
        using var ended = CancellationTokenSource.CreateLinkedTokenSource(_end.Token, timer.Token);
        try
        {
            PcapNg.WriteSectionHeader(w);
            PcapNg.WriteInterface(w, overlayName, _snapLength);
            PcapNg.WriteInterface(w, underlayName, _snapLength);
            await w.FlushAsync(ended.Token).ConfigureAwait(false);
            while (_count <= 0 || Written < _count)
            {
                if (!_queue.TryDequeue(out CaptureRecord? r))
                {
                    // Nothing queued: flush, and look again shortly. The loops signal nothing (a
                    // signal takes a lock, and a lock allocates on a loop's thread when contended).
                    await w.FlushAsync(ended.Token).ConfigureAwait(false);
                    await Task.Delay(PollInterval, ended.Token).ConfigureAwait(false);
                    continue;
                }
                PcapNg.WritePacket(w, r.Interface, r.Microseconds, r.Buffer.AsSpan(0, r.Length), r.OriginalLength,
                    r.Inbound ? PcapNg.FlagInbound : PcapNg.FlagOutbound, r.Comment);
                _free.Enqueue(r);
                Written++;
            }
            await w.FlushAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or ObjectDisposedException)
        {
            // Ended (count, duration, node stopping) or the client went away.
        }
        finally
        {
            _end.Cancel();
            while (_queue.TryDequeue(out CaptureRecord? r))
            {
                _free.Enqueue(r);
            }
            try
            {
                await w.FlushAsync(CancellationToken.None).ConfigureAwait(false); // what was written before the end
                await w.CompleteAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException)
            {
            }
        }
        return Written;
    }
}
