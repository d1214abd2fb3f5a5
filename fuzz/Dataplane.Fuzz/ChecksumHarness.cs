using System.Buffers.Binary;
using Dataplane.Encap;
using Dataplane.Encap.Offload;
using Dataplane.Engine;
using Dataplane.TunTap;

using static Dataplane.Fuzz.Property;

namespace Dataplane.Fuzz;

/// <summary>
/// Checksum completion on its own: one input is an inner IP packet as a kernel peer may send it.
/// An unfinished checksum (the folded pseudo-header sum) is completed in software and must then
/// verify; handed to a device with <see cref="PacketBatch.FlagNeedsChecksum"/>, the virtio header
/// written for it must point inside the packet, and finishing it there as the kernel does
/// (sum from csum_start to the end, stored at csum_start + csum_offset) must verify too. A
/// checksum that is merely wrong is never "completed". Split into pieces, the packets also go
/// through the TCP coalescer with the flag, as the inbound loop hands them over.
/// </summary>
internal static class ChecksumHarness
{
    private static readonly VnetOffload Offload = new(TunDevice.MaxWriteBatch);
    private static readonly PacketBatch Batch = new(8, EngineSettings.DefaultSlotSize);
    private static readonly CheckingSink Sink = new();

    public static void Run(byte[] input)
    {
        if (input.Length == 0 || input.Length > Batch.SlotSize - PacketBatch.Headroom)
        {
            return;
        }
        bool unfinished = UnfinishedChecksum.IsUnfinished(input, out int start, out int offset);
        if (unfinished)
        {
            byte[] completed = (byte[])input.Clone();
            Check(UnfinishedChecksum.Complete(completed, start, offset), "an unfinished checksum could not be completed");
            Check(UnfinishedChecksum.TryLocate(completed, out _, out _, out int length, out ulong pseudo)
                && InternetChecksum.Finish(InternetChecksum.Sum(completed.AsSpan(start, length), pseudo)) == 0, "a completed checksum does not verify");
        }
        else if (UnfinishedChecksum.TryLocate(input, out int s, out _, out int length, out ulong pseudo)
            && InternetChecksum.Finish(InternetChecksum.Sum(input.AsSpan(s, length), pseudo)) != 0)
        {
            Check(!UnfinishedChecksum.IsUnfinished(input, out _, out _), "a wrong checksum taken for an unfinished one");
        }

        // Through the device's write path with the flag (the inbound loop sets it only for unfinished ones).
        Batch.Set(0, input);
        Batch.Flags[0] = unfinished ? PacketBatch.FlagNeedsChecksum : 0;
        Batch.Count = 1;
        Sink.Expect(unfinished);
        Offload.Write(Batch, Sink);

        // Pieces of it as a batch, flagged alike: the coalescer must treat a completed checksum as valid.
        int pieces = Math.Min(Batch.Capacity, 1 + input[0] % Batch.Capacity);
        for (int i = 0; i < pieces; i++)
        {
            Batch.Set(i, input);
            Batch.Flags[i] = Batch.Flags[0];
        }
        Batch.Count = pieces;
        Sink.Expect(null);
        Offload.Write(Batch, Sink);
    }

    /// <summary>Checks every header the offload code writes and finishes flagged checksums as the kernel would.</summary>
    private sealed unsafe class CheckingSink : VnetOffload.IFrameSink
    {
        private bool? _expectNeedsChecksum;

        public void Expect(bool? needsChecksum) => _expectNeedsChecksum = needsChecksum;

        public bool Add(in VirtioNetHeader header, byte* packet, int length, int segments)
        {
            if (_expectNeedsChecksum is bool expected && segments == 1)
            {
                Check(header.NeedsChecksum == expected, $"NEEDS_CSUM {header.NeedsChecksum} for a packet whose checksum is {(expected ? "" : "not ")}unfinished");
            }
            if (!header.NeedsChecksum)
            {
                return true;
            }
            Check(header.ChecksumStart + header.ChecksumOffset + 2 <= length, "csum_start + csum_offset beyond the packet");
            var p = new Span<byte>(packet, length).ToArray();
            if (segments == 1)
            {
                // As the kernel finishes it: ip_rcv first trims the packet to the IP length, then the
                // field (the pseudo-header sum) is folded with everything from csum_start to the end.
                int ipLength = (p[0] >> 4) == 4 ? BinaryPrimitives.ReadUInt16BigEndian(p.AsSpan(2)) : 40 + BinaryPrimitives.ReadUInt16BigEndian(p.AsSpan(4));
                Check(ipLength <= length && header.ChecksumStart + header.ChecksumOffset + 2 <= ipLength, "csum_start + csum_offset beyond the IP length");
                ushort sum = InternetChecksum.Compute(p.AsSpan(header.ChecksumStart, ipLength - header.ChecksumStart));
                p[header.ChecksumStart + header.ChecksumOffset] = (byte)(sum >> 8);
                p[header.ChecksumStart + header.ChecksumOffset + 1] = (byte)sum;
                Check(UnfinishedChecksum.TryLocate(p, out int s, out _, out int l, out ulong pseudo)
                    && InternetChecksum.Finish(InternetChecksum.Sum(p.AsSpan(s, l), pseudo)) == 0, "the kernel's completion of our NEEDS_CSUM header would not verify");
            }
            return true;
        }

        public int Flush() => 0;
    }
}
