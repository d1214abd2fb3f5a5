using Microsoft.Extensions.ObjectPool;

namespace Dataplane.Capture;

/// <summary>One captured packet on its way from a loop to a capture's writer; pooled and reused.</summary>
internal sealed class CaptureRecord(int capacity)
{
    public byte[] Buffer { get; } = new byte[capacity];
    public int Length { get; set; }
    public int OriginalLength { get; set; }
    /// <summary>0: the overlay side (inner packets), 1: the underlay side (outer datagrams).</summary>
    public int Interface { get; set; }
    public bool Inbound { get; set; }
    public long Microseconds { get; set; }
    /// <summary>The drop reason, for a packet that was dropped.</summary>
    public string? Comment { get; set; }

    /// <summary>Makes records of one capacity and takes them back as they are (nothing to reset: every use sets every field).</summary>
    public sealed class Policy(int capacity) : PooledObjectPolicy<CaptureRecord>
    {
        public override CaptureRecord Create() => new(capacity);
        public override bool Return(CaptureRecord record) => true;
    }
}
