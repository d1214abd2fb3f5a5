using System.Buffers.Binary;

namespace Dataplane.Encap.Offload;

/// <summary>
/// <c>struct virtio_net_hdr</c> (&lt;linux/virtio_net.h&gt;, 10 bytes, little-endian on the hosts we
/// run on): what a TUN opened with IFF_VNET_HDR puts in front of every packet it hands us and
/// expects in front of every packet we write. It says whether the packet is a segmentation
/// superpacket (<see cref="GsoType"/>, <see cref="GsoSize"/>) and whether a checksum is still to be
/// finished (<see cref="FlagNeedsChecksum"/> at <see cref="ChecksumStart"/> + <see cref="ChecksumOffset"/>).
/// </summary>
public readonly record struct VirtioNetHeader(byte Flags, byte GsoType, ushort HeaderLength, ushort GsoSize, ushort ChecksumStart, ushort ChecksumOffset)
{
    public const int Length = 10;

    public const byte FlagNeedsChecksum = 1; // VIRTIO_NET_HDR_F_NEEDS_CSUM
    public const byte FlagDataValid = 2;     // VIRTIO_NET_HDR_F_DATA_VALID

    public const byte GsoNone = 0;   // VIRTIO_NET_HDR_GSO_NONE
    public const byte GsoTcpV4 = 1;  // VIRTIO_NET_HDR_GSO_TCPV4
    public const byte GsoUdp = 3;    // VIRTIO_NET_HDR_GSO_UDP (UFO, not enabled)
    public const byte GsoTcpV6 = 4;  // VIRTIO_NET_HDR_GSO_TCPV6
    public const byte GsoUdpL4 = 5;  // VIRTIO_NET_HDR_GSO_UDP_L4 (USO)
    public const byte GsoEcn = 0x80; // VIRTIO_NET_HDR_GSO_ECN

    public bool NeedsChecksum => (Flags & FlagNeedsChecksum) != 0;

    public static VirtioNetHeader Read(ReadOnlySpan<byte> b) => new(
        b[0], b[1],
        BinaryPrimitives.ReadUInt16LittleEndian(b[2..]),
        BinaryPrimitives.ReadUInt16LittleEndian(b[4..]),
        BinaryPrimitives.ReadUInt16LittleEndian(b[6..]),
        BinaryPrimitives.ReadUInt16LittleEndian(b[8..]));

    public void Write(Span<byte> b)
    {
        b[0] = Flags;
        b[1] = GsoType;
        BinaryPrimitives.WriteUInt16LittleEndian(b[2..], HeaderLength);
        BinaryPrimitives.WriteUInt16LittleEndian(b[4..], GsoSize);
        BinaryPrimitives.WriteUInt16LittleEndian(b[6..], ChecksumStart);
        BinaryPrimitives.WriteUInt16LittleEndian(b[8..], ChecksumOffset);
    }

    /// <summary>The header of a plain, complete packet: no segmentation, checksums done.</summary>
    public static void WriteNone(Span<byte> b) => b[..Length].Clear();
}
