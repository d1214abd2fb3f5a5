namespace Dataplane.Capture;

/// <summary>One captured packet on its way from a loop to a capture's writer; made when the capture starts and reused.</summary>
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
}
