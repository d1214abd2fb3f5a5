using System.Runtime.InteropServices;

namespace Dataplane.TunTap.Native;

/// <summary><c>struct sockaddr_ll</c> from &lt;linux/if_packet.h&gt; (20 bytes): a packet socket's link-level address.</summary>
[StructLayout(LayoutKind.Sequential)]
#pragma warning disable IDE1006, CS8981 // C names kept verbatim
internal unsafe struct sockaddr_ll
{
    public ushort sll_family;
    /// <summary>Network byte order (htons(ETH_P_ALL)).</summary>
    public ushort sll_protocol;
    public int sll_ifindex;
    public ushort sll_hatype;
    public byte sll_pkttype;
    public byte sll_halen;
    public fixed byte sll_addr[8];
}

/// <summary><c>struct tpacket_stats</c> from &lt;linux/if_packet.h&gt;: what <c>PACKET_STATISTICS</c> returns (and resets).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct tpacket_stats
{
    public uint tp_packets;
    public uint tp_drops;
}

/// <summary><c>struct ethtool_value</c> from &lt;linux/ethtool.h&gt;: one on/off feature for SIOCETHTOOL.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct ethtool_value
{
    public uint cmd;
    public uint data;
}
#pragma warning restore IDE1006, CS8981
