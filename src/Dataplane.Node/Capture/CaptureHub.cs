namespace Dataplane.Capture;

/// <summary>
/// The captures running on a node, as an immutable array the loops read once per batch: with
/// nobody capturing that is one reference read per batch and nothing per packet. Adding or
/// removing a capture publishes a new array.
/// </summary>
internal sealed class CaptureHub
{
    private readonly Lock _gate = new();
    private CaptureSession[] _sessions = [];
    private long _droppedByEnded;

    public CaptureSession[] Sessions => Volatile.Read(ref _sessions);

    /// <summary>Packets left out of captures because a writer fell behind, over all captures so far.</summary>
    public long Dropped => Interlocked.Read(ref _droppedByEnded) + Sessions.Sum(s => s.Dropped);

    public void Add(CaptureSession session)
    {
        lock (_gate)
        {
            Volatile.Write(ref _sessions, [.. _sessions, session]);
        }
    }

    public void Remove(CaptureSession session)
    {
        lock (_gate)
        {
            Volatile.Write(ref _sessions, [.. _sessions.Where(s => s != session)]);
            Interlocked.Add(ref _droppedByEnded, session.Dropped);
        }
    }

    /// <summary>Ends every capture (the node is stopping).</summary>
    public void EndAll()
    {
        foreach (CaptureSession s in Sessions)
        {
            s.End();
        }
    }
}
