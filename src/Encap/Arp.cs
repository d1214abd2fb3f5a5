using System.Buffers.Binary;

namespace Dataplane.Encap;

/// <summary>
/// ARP for Ethernet and IPv4 (RFC 826), the 28-byte body after the Ethernet header. A VXLAN
/// endpoint answers requests for its own VTEP address; kernel peers programmed by flanneld use
/// permanent neighbour entries and normally never ask.
/// </summary>
public static class Arp
{
    public const int Length = 28; // htype 2, ptype 2, hlen 1, plen 1, oper 2, sha 6, spa 4, tha 6, tpa 4
    public const ushort OperationRequest = 1;
    public const ushort OperationReply = 2;

    public static bool TryReadRequest(ReadOnlySpan<byte> body, out MacAddress senderMac, out uint senderIp, out uint targetIp)
    {
        senderMac = default;
        senderIp = targetIp = 0;
        if (body.Length < Length
            || BinaryPrimitives.ReadUInt16BigEndian(body) != 1
            || BinaryPrimitives.ReadUInt16BigEndian(body[2..]) != EthernetHeader.EtherTypeIpv4
            || body[4] != 6 || body[5] != 4
            || BinaryPrimitives.ReadUInt16BigEndian(body[6..]) != OperationRequest)
        {
            return false;
        }
        senderMac = MacAddress.Read(body[8..]);
        senderIp = BinaryPrimitives.ReadUInt32BigEndian(body[14..]);
        targetIp = BinaryPrimitives.ReadUInt32BigEndian(body[24..]);
        return true;
    }

    public static void Write(Span<byte> body, ushort operation, MacAddress senderMac, uint senderIp, MacAddress targetMac, uint targetIp)
    {
        BinaryPrimitives.WriteUInt16BigEndian(body, 1);
        BinaryPrimitives.WriteUInt16BigEndian(body[2..], EthernetHeader.EtherTypeIpv4);
        body[4] = 6;
        body[5] = 4;
        BinaryPrimitives.WriteUInt16BigEndian(body[6..], operation);
        senderMac.Write(body[8..]);
        BinaryPrimitives.WriteUInt32BigEndian(body[14..], senderIp);
        targetMac.Write(body[18..]);
        BinaryPrimitives.WriteUInt32BigEndian(body[24..], targetIp);
    }
}
