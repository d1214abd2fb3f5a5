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
/// checksum when the frame was an IPv4 superpacket. A superpacket cut without an error comes out
/// whole: every segment's TCP or UDP checksum verifies, and their payloads, one after another,
/// are the superpacket's payload, every byte once and in order.
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
        Payload.SetLength(0);
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
                if (superpacket)
                {
                    Segment(Batch.Packet(i));
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
        if (superpacket && emitted > 0 && Offload.SegmentationErrors == errorsBefore)
        {
            ReadOnlySpan<byte> packet = Frame.AsSpan(VirtioNetHeader.Length + 14, length - VirtioNetHeader.Length - 14);
            int headers = Headers(packet);
            Check(Payload.Length == packet.Length - headers && Payload.GetBuffer().AsSpan(0, (int)Payload.Length).SequenceEqual(packet[headers..]),
                $"the segments carry {Payload.Length} payload bytes, not the superpacket's {packet.Length - headers} in order");
        }
    }

    // The payloads of the segments of one frame, in the order they came out.
    private static readonly MemoryStream Payload = new();

    /// <summary>One segment: its TCP or UDP checksum verifies; its payload is kept for the whole.</summary>
    private static void Segment(ReadOnlySpan<byte> segment)
    {
        int l4 = segment[0] >> 4 == 4 ? (segment[0] & 0x0F) * 4 : Ipv6Header.Length;
        Check(SegmentCheck.L4ChecksumVerifies(segment, l4), $"a segment's {(SegmentCheck.Protocol(segment) == Ipv4Header.ProtocolTcp ? "TCP" : "UDP")} checksum does not verify");
        Payload.Write(segment[Headers(segment)..]);
    }

    /// <summary>IP and TCP or UDP headers' length.</summary>
    private static int Headers(ReadOnlySpan<byte> ip)
    {
        int l4 = ip[0] >> 4 == 4 ? (ip[0] & 0x0F) * 4 : Ipv6Header.Length;
        return l4 + (SegmentCheck.Protocol(ip) == Ipv4Header.ProtocolTcp ? (ip[l4 + 12] >> 4) * 4 : 8);
    }
}
