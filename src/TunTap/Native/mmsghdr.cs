using System.Runtime.InteropServices;
using Tmds.Linux;

namespace Dataplane.TunTap.Native;

/// <summary>
/// <c>struct mmsghdr</c> from &lt;sys/socket.h&gt; (64 bytes on 64-bit Linux). Declared here because
/// Tmds.LibC exposes <c>msg_hdr</c> as a property, and the batch code needs its address.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
#pragma warning disable IDE1006, CS8981 // C names kept verbatim
internal struct mmsghdr
{
    public msghdr msg_hdr;
    public uint msg_len;
}
#pragma warning restore IDE1006, CS8981
