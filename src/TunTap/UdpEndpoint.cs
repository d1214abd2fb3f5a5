using System.Buffers.Binary;
using Dataplane.Encap;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace Dataplane.TunTap;

/// <summary>
/// A UDP endpoint of either family: an IPv4 address (host order, <see cref="Address"/>) or an IPv6
/// one (<see cref="Ipv6Address"/>, big-endian as a number), and a port. The default value is
/// 0.0.0.0:0. Equality compares family, address and port (the loops compare endpoints to batch
/// datagrams to one peer).
/// </summary>
public readonly record struct UdpEndpoint
{
    private readonly UInt128 _address; // IPv4: the low 32 bits; IPv6: all of it

    /// <summary>An IPv4 endpoint.</summary>
    public UdpEndpoint(uint address, ushort port)
    {
        _address = address;
        Port = port;
    }

    private UdpEndpoint(UInt128 address, ushort port, bool ipv6)
    {
        _address = address;
        Port = port;
        IsIpv6 = ipv6;
    }

    /// <summary>An IPv6 endpoint.</summary>
    public static UdpEndpoint Ipv6(UInt128 address, ushort port) => new(address, port, ipv6: true);

    public ushort Port { get; init; }
    public bool IsIpv6 { get; }

    /// <summary>The IPv4 address (host order); 0 for an IPv6 endpoint.</summary>
    public uint Address => IsIpv6 ? 0 : (uint)_address;

    /// <summary>The IPv6 address; 0 for an IPv4 endpoint.</summary>
    public UInt128 Ipv6Address => IsIpv6 ? _address : UInt128.Zero;

    /// <summary>Same family and address as <paramref name="other"/>, whatever the ports.</summary>
    public bool SameAddress(UdpEndpoint other) => IsIpv6 == other.IsIpv6 && _address == other._address;

    /// <summary>The address alone, as text (192.0.2.1, 2001:db8::1).</summary>
    public string AddressText => IsIpv6 ? Ipv6Prefix.Format(_address) : Ipv4Prefix.Format((uint)_address);

    public override string ToString() => IsIpv6 ? $"[{AddressText}]:{Port}" : $"{AddressText}:{Port}";

    /// <summary>Room for a socket address of either family (a <c>sockaddr_in6</c>: 28 bytes).</summary>
    internal static int StorageSize => sizeof_sockaddr_in6;

    // struct sockaddr_in6: family u16, port u16 (network order), flowinfo u32, addr[16], scope_id u32.
    private const int sizeof_sockaddr_in6 = 28;

    /// <summary>Writes this endpoint as a <c>sockaddr_in</c> or <c>sockaddr_in6</c> (network byte order); returns its length.</summary>
    internal unsafe int Write(void* storage)
    {
        if (!IsIpv6)
        {
            var addr = (sockaddr_in*)storage;
            addr->sin_family = AF_INET;
            addr->sin_port = BinaryPrimitives.ReverseEndianness(Port);
            *(uint*)&addr->sin_addr = BinaryPrimitives.ReverseEndianness((uint)_address);
            return sizeof(sockaddr_in);
        }
        var span = new Span<byte>(storage, sizeof_sockaddr_in6);
        span.Clear();
        BinaryPrimitives.WriteUInt16LittleEndian(span, (ushort)AF_INET6);
        BinaryPrimitives.WriteUInt16BigEndian(span[2..], Port);
        BinaryPrimitives.WriteUInt128BigEndian(span[8..], _address);
        return sizeof_sockaddr_in6;
    }

    /// <summary>Reads a <c>sockaddr_in</c> or <c>sockaddr_in6</c> the kernel filled in (by its family).</summary>
    internal static unsafe UdpEndpoint Read(void* storage)
    {
        var span = new ReadOnlySpan<byte>(storage, sizeof_sockaddr_in6);
        ushort port = BinaryPrimitives.ReadUInt16BigEndian(span[2..]);
        if (BinaryPrimitives.ReadUInt16LittleEndian(span) == AF_INET6)
        {
            return Ipv6(BinaryPrimitives.ReadUInt128BigEndian(span[8..]), port);
        }
        return new UdpEndpoint(BinaryPrimitives.ReadUInt32BigEndian(span[4..]), port);
    }
}
