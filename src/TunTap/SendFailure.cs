namespace Dataplane.TunTap;

/// <summary>What a failed sendmmsg means to the edge that sent (see <see cref="MessageSender.Classify"/>).</summary>
internal enum SendFailure
{
    /// <summary>EINTR: a signal came first; call again.</summary>
    Interrupted,
    /// <summary>EAGAIN (for a packet socket ENOBUFS too): the socket buffer or the device's queue is full; wait briefly for room, then call again.</summary>
    NoRoom,
    /// <summary>EIO on a UDP_SEGMENT message: the path below cannot segment; send plain datagrams from here on.</summary>
    SegmentationUnsupported,
    /// <summary>Anything else (ECONNREFUSED, ENETUNREACH, EMSGSIZE, a UDP socket's ENOBUFS, or still no room after waiting): this message is refused; skip it and count it.</summary>
    MessageRefused,
}
