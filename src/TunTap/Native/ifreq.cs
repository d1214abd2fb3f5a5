using System.Runtime.InteropServices;

namespace Dataplane.TunTap.Native;

/// <summary>
/// <c>struct ifreq</c> from &lt;net/if.h&gt; (40 bytes on 64-bit Linux): the interface name and a
/// union of which we use <c>ifr_flags</c> (short), <c>ifr_mtu</c> (int) and <c>ifr_hwaddr</c>, all at offset 16.
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = 40)]
#pragma warning disable IDE1006, CS8981 // C names kept verbatim
internal unsafe struct ifreq
{
    public const int IFNAMSIZ = 16;

    [FieldOffset(0)] public fixed byte ifr_name[IFNAMSIZ];
    [FieldOffset(16)] public short ifr_flags;
    [FieldOffset(16)] public int ifr_mtu;
    [FieldOffset(16)] public int ifr_ifindex;
    /// <summary><c>ifr_data</c>: SIOCETHTOOL's argument.</summary>
    [FieldOffset(16)] public void* ifr_data;
    /// <summary><c>ifr_hwaddr.sa_data</c>: the hardware address (after the 2-byte sa_family at 16).</summary>
    [FieldOffset(18)] public fixed byte ifr_hwaddr_data[14];
}
#pragma warning restore IDE1006, CS8981
