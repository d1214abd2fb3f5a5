using Dataplane.TunTap.Native;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace Dataplane.TunTap;

/// <summary>
/// Gathers a batch's live slots into sendmmsg messages, with UDP_SEGMENT (GSO) when it is on, as
/// wireguard-go's <c>conn/gso_linux.go</c>: a run of consecutive slots to one peer with equal
/// lengths (the last may be shorter), at most <see cref="NativeMethods.UDP_MAX_SEGMENTS"/> and
/// 64 KiB, becomes one message with an iovec per datagram and a UDP_SEGMENT control message; the
/// kernel cuts it into the same datagrams that would have gone one by one.
/// </summary>
internal static unsafe class UdpGso
{
    private const int MaxUdpPayload = 65507;    // 65535 - 20 IPv4 - 8 UDP

    /// <summary>
    /// Fills <paramref name="tx"/> with messages for slots from <paramref name="firstSlot"/>; returns
    /// the message count. <see cref="MessageVector.MessageSlots"/> says how many datagrams each carries.
    /// Only slots addressed to the socket's family (<paramref name="ipv6"/>) are taken: a batch may
    /// hold datagrams for both underlays, and each family's socket sends its own.
    /// </summary>
    public static int Gather(PacketBatch batch, int firstSlot, MessageVector tx, bool gso, bool ipv6)
    {
        int messages = 0, iovs = 0;
        for (int i = firstSlot; i < batch.Count && iovs < tx.Capacity;)
        {
            int len = batch.Lengths[i];
            if (len == 0 || batch.Endpoints[i].IsIpv6 != ipv6)
            {
                i++;
                continue;
            }
            UdpEndpoint to = batch.Endpoints[i];
            int first = iovs;
            int total = 0;
            int start = i;
            while (i < batch.Count && iovs < tx.Capacity)
            {
                int l = batch.Lengths[i];
                if (l == 0 || batch.Endpoints[i].IsIpv6 != ipv6)
                {
                    i++;
                    continue;
                }
                bool joins = iovs == first
                    || gso && batch.Endpoints[i] == to && l <= len && iovs - first < NativeMethods.UDP_MAX_SEGMENTS
                       && total + l <= MaxUdpPayload && tx.Iov[iovs - 1].iov_len == (size_t)(ulong)len;
                if (!joins)
                {
                    break;
                }
                tx.Iov[iovs].iov_base = batch.SlotPointer(i) + batch.Offsets[i];
                tx.Iov[iovs].iov_len = (size_t)(ulong)l;
                iovs++;
                total += l;
                i++;
            }
            int count = iovs - first;
            msghdr* h = &(tx.Msgs + messages)->msg_hdr;
            h->msg_name = tx.Addr(messages);
            h->msg_namelen = (uint)to.Write(tx.Addr(messages));
            h->msg_iov = &tx.Iov[first];
            h->msg_iovlen = count;
            h->msg_flags = 0;
            if (count > 1)
            {
                SetSegmentSize(h, tx.Control + messages * MessageVector.ControlRoom, (ushort)len);
            }
            else
            {
                h->msg_control = null;
                h->msg_controllen = 0;
            }
            tx.MessageSlots[messages] = count;
            tx.MessageFirstSlot[messages] = start;
            messages++;
        }
        return messages;
    }

    /// <summary>One UDP_SEGMENT control message carrying the segment size (a u16).</summary>
    private static void SetSegmentSize(msghdr* h, byte* control, ushort size)
    {
        h->msg_control = control;
        h->msg_controllen = (uint)CMSG_SPACE(sizeof(ushort));
        new Span<byte>(control, CMSG_SPACE(sizeof(ushort))).Clear();
        cmsghdr* c = CMSG_FIRSTHDR(h);
        c->cmsg_len = (uint)NativeMethods.CMSG_LEN(sizeof(ushort));
        c->cmsg_level = NativeMethods.SOL_UDP;
        c->cmsg_type = NativeMethods.UDP_SEGMENT;
        *(ushort*)CMSG_DATA(c) = size;
    }
}
