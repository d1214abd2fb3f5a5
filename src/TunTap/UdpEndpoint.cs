using System.Buffers.Binary;
using Dataplane.Encap;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace Dataplane.TunTap;

/// <summary>An IPv4 UDP endpoint: host-order address and port.</summary>
public readonly record struct UdpEndpoint(uint Address, ushort Port)
{
    public override string ToString() => $"{Ipv4Prefix.Format(Address)}:{Port}";

    /// <summary>Writes this endpoint as a <c>sockaddr_in</c> (network byte order).</summary>
    internal unsafe void Write(sockaddr_in* addr)
    {
        addr->sin_family = AF_INET;
        addr->sin_port = BinaryPrimitives.ReverseEndianness(Port);
        *(uint*)&addr->sin_addr = BinaryPrimitives.ReverseEndianness(Address);
    }

    /// <summary>Reads a <c>sockaddr_in</c> the kernel filled in.</summary>
    internal static unsafe UdpEndpoint Read(sockaddr_in* addr) =>
        new(BinaryPrimitives.ReverseEndianness(*(uint*)&addr->sin_addr), BinaryPrimitives.ReverseEndianness(addr->sin_port));
}
