using System.Globalization;
using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using Dataplane.Encap;

namespace Dataplane.Node;

/// <summary>Read-only facts about this host (its namespace): interfaces, addresses, default route, capabilities.</summary>
internal static class HostInfo
{
    private const int CapNetAdmin = 12;

    /// <summary>The interface of the IPv4 default route (/proc/net/route), or null.</summary>
    public static string? DefaultRouteInterface()
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/net/route").Skip(1))
            {
                string[] f = line.Split('\t', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                if (f.Length > 7 && f[1] == "00000000" && f[7] == "00000000")
                {
                    return f[0];
                }
            }
        }
        catch (IOException)
        {
        }
        return null;
    }

    /// <summary>The first IPv4 address of <paramref name="iface"/>, or null.</summary>
    public static uint? Ipv4AddressOf(string iface)
    {
        NetworkInterface? nic = NetworkInterface.GetAllNetworkInterfaces().FirstOrDefault(n => n.Name == iface);
        IPAddress? a = nic?.GetIPProperties().UnicastAddresses
            .Select(u => u.Address).FirstOrDefault(x => x.AddressFamily == AddressFamily.InterNetwork);
        return a is null ? null : Ipv4Prefix.ToUInt32(a);
    }

    /// <summary>Every address of this host's interfaces, IPv4 and IPv6 (IPv6 link-local ones left out).</summary>
    public static (HashSet<uint> Ipv4, HashSet<UInt128> Ipv6) LocalAddresses()
    {
        var v4 = new HashSet<uint>();
        var v6 = new HashSet<UInt128>();
        foreach (IPAddress a in NetworkInterface.GetAllNetworkInterfaces().SelectMany(n => n.GetIPProperties().UnicastAddresses).Select(u => u.Address))
        {
            if (a.AddressFamily == AddressFamily.InterNetwork)
            {
                v4.Add(Ipv4Prefix.ToUInt32(a));
            }
            else if (a.AddressFamily == AddressFamily.InterNetworkV6 && !a.IsIPv6LinkLocal)
            {
                v6.Add(ToUInt128(a));
            }
        }
        return (v4, v6);
    }

    /// <summary>The interface that holds <paramref name="address"/>, or null.</summary>
    public static string? InterfaceWith(uint address)
    {
        IPAddress ip = Ipv4Prefix.ToIPAddress(address);
        return NetworkInterface.GetAllNetworkInterfaces()
            .FirstOrDefault(n => n.GetIPProperties().UnicastAddresses.Any(u => u.Address.Equals(ip)))?.Name;
    }

    /// <summary>The first global IPv6 address of <paramref name="iface"/> (not link-local, not loopback), or null.</summary>
    public static UInt128? Ipv6AddressOf(string iface)
    {
        NetworkInterface? nic = NetworkInterface.GetAllNetworkInterfaces().FirstOrDefault(n => n.Name == iface);
        IPAddress? a = nic?.GetIPProperties().UnicastAddresses.Select(u => u.Address)
            .FirstOrDefault(x => x.AddressFamily == AddressFamily.InterNetworkV6 && !x.IsIPv6LinkLocal && !IPAddress.IsLoopback(x) && !x.IsIPv4MappedToIPv6);
        return a is null ? null : ToUInt128(a);
    }

    /// <summary>The interface that holds IPv6 <paramref name="address"/>, or null.</summary>
    public static string? InterfaceWith(UInt128 address)
    {
        IPAddress ip = IPAddress.Parse(Ipv6Prefix.Format(address));
        return NetworkInterface.GetAllNetworkInterfaces()
            .FirstOrDefault(n => n.GetIPProperties().UnicastAddresses.Any(u => u.Address.Equals(ip)))?.Name;
    }

    /// <summary>An IPv6 address as the 128-bit number the rest of the code uses.</summary>
    public static UInt128 ToUInt128(IPAddress address)
    {
        Span<byte> bytes = stackalloc byte[16];
        address.TryWriteBytes(bytes, out _);
        return System.Buffers.Binary.BinaryPrimitives.ReadUInt128BigEndian(bytes);
    }


    /// <summary>Whether the effective capability set holds CAP_NET_ADMIN (/proc/self/status CapEff).</summary>
    public static bool HasNetAdmin()
    {
        try
        {
            string? line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("CapEff:", StringComparison.Ordinal));
            return line is not null
                && ulong.TryParse(line.AsSpan(7).Trim(), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out ulong caps)
                && (caps & (1UL << CapNetAdmin)) != 0;
        }
        catch (IOException)
        {
            return false;
        }
    }
}
