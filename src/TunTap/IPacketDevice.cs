namespace Dataplane.TunTap;

/// <summary>The device side of the data plane: plain IP packets to and from the host stack.</summary>
public interface IPacketDevice : IDisposable
{
    string Name { get; }

    /// <summary>
    /// Waits up to <paramref name="timeoutMs"/> for packets, then reads as many as are ready (up to
    /// the batch's capacity) at <see cref="PacketBatch.Headroom"/>. Returns the count (0 on timeout).
    /// With a timeout of 0 it does not wait at all: it reads what is there (no poll call).
    /// </summary>
    int ReadBatch(PacketBatch batch, int timeoutMs);

    /// <summary>
    /// Waits up to <paramref name="timeoutMs"/> until a read would find packets, without reading
    /// them: a loop waits here outside its lock, then reads with <see cref="ReadBatch"/> and a
    /// timeout of 0 under it. <see cref="Readiness.Failed"/>: the device reports an error (see
    /// <see cref="Gone"/>).
    /// </summary>
    Readiness WaitReadable(int timeoutMs);

    /// <summary>
    /// Writes the slots 0..Count-1 whose length is non-zero. Returns how many the device took.
    /// Safe to call from the inbound and the outbound loop of a queue at once.
    /// </summary>
    int WriteBatch(PacketBatch batch);

    /// <summary>What the kernel accepted of the device's offloads: "off", or for example "csum tso4 tso6 uso4 uso6".</summary>
    string Offloads => "off";

    /// <summary>Superpackets split and merged, errors, frames skipped and dropped before we read them (reports).</summary>
    DeviceCounters Counters => default;

    /// <summary>The device went away under us (deleted): nothing will ever be read again.</summary>
    bool Gone => false;

    /// <summary>
    /// Slots flagged <see cref="PacketBatch.FlagNeedsChecksum"/> are written so the kernel completes
    /// their TCP/UDP checksum (a virtio-net header); otherwise the engine completes them itself.
    /// </summary>
    bool CompletesChecksums => false;

    /// <summary>
    /// Wakes a loop waiting in <see cref="ReadBatch"/> on another thread (it returns 0 at once), and
    /// makes every later wait return at once too: the node (or this queue) is stopping.
    /// </summary>
    void StopWaiting();

    /// <summary>
    /// Undoes <see cref="StopWaiting"/>: waits block again, so a loop can run on this edge once more
    /// (a queue whose hand-over to a successor did not finish resumes).
    /// </summary>
    void ResumeWaiting();
}
