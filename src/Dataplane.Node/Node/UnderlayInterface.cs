using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using Dataplane.Encap;
using Serilog;

namespace Dataplane.Node;

/// <summary>
/// The underlay interface as flanneld chooses it (main.go, pkg/ipmatch LookupExtIface): each
/// <c>--iface</c> in order (a name, or an address of this host), then each <c>--iface-regex</c> in
/// order (matched against every interface's IPv4 addresses first, then against the names), then the
/// interface <c>--iface-can-reach</c>'s address is routed through; the first found wins. None of the
/// three: the default route's interface (null here; the caller takes it). Any of them given and
/// nothing found: one line saying what was tried.
/// </summary>
internal static class UnderlayInterface
{
    /// <summary>The chosen interface and, when an address chose it (an --iface IP, a regex matching an address, the route's source), that address.</summary>
    public readonly record struct Choice(string Name, uint? Address);

    public static Choice? Choose(IReadOnlyList<string> ifaces, IReadOnlyList<string> regexes, IPAddress? canReach, ILogger log)
    {
        if (ifaces.Count == 0 && regexes.Count == 0 && canReach is null)
        {
            return null;
        }
        NetworkInterface[] nics = NetworkInterface.GetAllNetworkInterfaces();
        foreach (string iface in ifaces)
        {
            if (ByNameOrAddress(nics, iface) is Choice found)
            {
                return Chosen(found, $"--iface {iface}", log);
            }
            log.Information("--iface {Iface}: no interface of that name or with that address; trying the next", iface);
        }
        foreach (string pattern in regexes)
        {
            if (ByRegex(nics, new Regex(pattern, RegexOptions.CultureInvariant)) is Choice found)
            {
                return Chosen(found, $"--iface-regex {pattern}", log);
            }
            log.Information("--iface-regex {Regex}: no interface's address or name matches; trying the next", pattern);
        }
        if (canReach is not null && RouteTo(nics, canReach) is Choice routed)
        {
            return Chosen(routed, $"--iface-can-reach {canReach}", log);
        }
        throw new ConfigException("no interface matches "
            + string.Join(", ", ifaces.Select(i => $"--iface {i}").Concat(regexes.Select(r => $"--iface-regex {r}"))
                .Concat(canReach is null ? [] : [$"--iface-can-reach {canReach} (no route from an address of this host)"])));
    }

    private static Choice Chosen(Choice c, string by, ILogger log)
    {
        log.Information("Underlay interface {Iface} ({By})", c.Name, by);
        return c;
    }

    private static Choice? ByNameOrAddress(NetworkInterface[] nics, string iface)
    {
        if (IPAddress.TryParse(iface, out IPAddress? address))
        {
            NetworkInterface? with = nics.FirstOrDefault(n => n.GetIPProperties().UnicastAddresses.Any(u => u.Address.Equals(address)));
            return with is null ? null : new Choice(with.Name, address.AddressFamily == AddressFamily.InterNetwork ? Ipv4Prefix.ToUInt32(address) : null);
        }
        return nics.Any(n => n.Name == iface) ? new Choice(iface, null) : null;
    }

    private static Choice? ByRegex(NetworkInterface[] nics, Regex regex)
    {
        foreach (NetworkInterface n in nics)
        {
            if (Ipv4Of(n).FirstOrDefault(a => regex.IsMatch(a.ToString())) is IPAddress a)
            {
                return new Choice(n.Name, Ipv4Prefix.ToUInt32(a));
            }
        }
        NetworkInterface? named = nics.FirstOrDefault(n => regex.IsMatch(n.Name));
        return named is null ? null : new Choice(named.Name, null);
    }

    /// <summary>The source address and interface the kernel's routing picks for <paramref name="target"/> (what <c>ip route get</c> says), from a connected UDP socket.</summary>
    private static Choice? RouteTo(NetworkInterface[] nics, IPAddress target)
    {
        try
        {
            using var probe = new Socket(target.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
            probe.Connect(new IPEndPoint(target, 9)); // no packet is sent: connect only routes
            IPAddress source = ((IPEndPoint)probe.LocalEndPoint!).Address;
            NetworkInterface? with = nics.FirstOrDefault(n => n.GetIPProperties().UnicastAddresses.Any(u => u.Address.Equals(source)));
            return with is null ? null : new Choice(with.Name, source.AddressFamily == AddressFamily.InterNetwork ? Ipv4Prefix.ToUInt32(source) : null);
        }
        catch (SocketException)
        {
            return null; // unreachable: no route
        }
    }

    private static IPAddress[] Ipv4Of(NetworkInterface n) =>
        [.. n.GetIPProperties().UnicastAddresses.Select(u => u.Address).Where(a => a.AddressFamily == AddressFamily.InterNetwork)];
}
