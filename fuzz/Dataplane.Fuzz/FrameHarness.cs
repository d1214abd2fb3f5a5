using System.Buffers.Binary;
using Dataplane.Encap;
using Dataplane.Encap.Offload;
using Dataplane.Engine;
using Dataplane.TunTap;

using static Dataplane.Fuzz.Property;

namespace Dataplane.Fuzz;

/// <summary>
/// The packet source's frame reader: one input is what a packet socket with <c>PACKET_VNET_HDR</c>
/// hands over (a virtio-net header whose offsets count from the Ethernet header, the Ethernet
/// header, the packet), taken exactly as <see cref="PacketSocketDevice"/> takes it into a real
/// batch (64 slots of the engine's size), pending segments emitted until none are left. What
/// comes out must fit its slot, sit at the headroom, and be a segment with a valid IPv4 header
/// checksum when the frame was an IPv4 superpacket.
/// </summary>
internal static class FrameHarness
{
    private static readonly VnetOffload Offload = new(TunDevice.MaxWriteBatch);
    private static readonly PacketBatch Batch = new(64, EngineSettings.DefaultSlotSize);
    private static readonly byte[] Frame = GC.AllocateArray<byte>(VnetOffload.FrameRoom, pinned: true);

    public static void Run(byte[] input)
    {
        int length = Math.Min(input.Length, Frame.Length);
        input.AsSpan(0, length).CopyTo(Frame);
        if (length <= VirtioNetHeader.Length || !PacketSocketDevice.IsIp(Frame.AsSpan(VirtioNetHeader.Length), length - VirtioNetHeader.Length))
        {
            return;
        }
        bool superpacket = VirtioNetHeader.Read(Frame).GsoType != VirtioNetHeader.GsoNone;
        bool ipv4 = (Frame[VirtioNetHeader.Length + 14] >> 4) == 4;
        long errorsBefore = Offload.SegmentationErrors;
        int n = 0;
        bool complete = Offload.Take(Frame, 0, length, 14, Batch, ref n);
        int emitted = 0;
        for (int round = 0; ; round++)
        {
            Check(n <= Batch.Capacity, $"{n} slots filled of {Batch.Capacity}");
            for (int i = 0; i < n; i++)
            {
                Check(Batch.Offsets[i] == PacketBatch.Headroom, "a packet not at the headroom");
                Check(Batch.Lengths[i] is > 0 && Batch.Lengths[i] <= Batch.SlotSize - PacketBatch.Headroom, $"a packet of {Batch.Lengths[i]} bytes in a slot");
                if (superpacket && ipv4)
                {
                    int ihl = (Batch.Packet(i)[0] & 0x0F) * 4; // options included
                    Check(ihl >= 20 && InternetChecksum.Compute(Batch.Packet(i)[..ihl]) == 0, "a segment's IPv4 header checksum does not verify");
                    Check(BinaryPrimitives.ReadUInt16BigEndian(Batch.Packet(i)[2..]) == Batch.Lengths[i], "a segment's IPv4 total length is not its length");
                }
            }
            emitted += n;
            if (!Offload.HasPending)
            {
                break;
            }
            Check(!complete, "Take said done with segments pending");
            Check(round < 1100, "segments never stop coming");
            n = Offload.EmitPending(Batch, 0);
        }
        Check(emitted > 0 || Offload.SegmentationErrors > errorsBefore || length <= VirtioNetHeader.Length + 14,
            "a frame neither delivered nor counted as a segmentation error");
    }
}
