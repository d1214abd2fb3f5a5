using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Dataplane.Encap;

namespace Dataplane.Leases;

/// <summary>
/// Which subnets a new node may take, as flanneld chooses: every /SubnetLen between SubnetMin and
/// SubnetMax that no lease holds, in random order, so nodes starting together rarely try the
/// same one (a lost race moves on to the next candidate).
/// </summary>
internal static class SubnetAllocator
{
    public static List<Ipv4Prefix> FreeSubnets(NetworkConfig config, IEnumerable<LeaseRecord> leases)
    {
        var taken = leases.Select(l => l.Subnet.Address).ToHashSet();
        ulong step = 1ul << (32 - config.SubnetLength);
        var free = new List<Ipv4Prefix>();
        for (ulong a = config.SubnetMin; a <= config.SubnetMax; a += step)
        {
            if (!taken.Contains((uint)a))
            {
                free.Add(new Ipv4Prefix((uint)a, config.SubnetLength));
            }
        }
        RandomNumberGenerator.Shuffle(CollectionsMarshal.AsSpan(free));
        return free;
    }

    /// <summary>
    /// The IPv6 subnets a new dual-stack node may take, as flanneld's allocateSubnet picks them: the
    /// first 100 free /IPv6SubnetLen from IPv6SubnetMin up to IPv6SubnetMax, in random order.
    /// </summary>
    public static List<Ipv6Prefix> FreeIpv6Subnets(NetworkConfig config, IEnumerable<LeaseRecord> leases)
    {
        const int Candidates = 100;
        var taken = leases.Where(l => l.Ipv6Subnet is not null).Select(l => l.Ipv6Subnet!.Value.Address).ToHashSet();
        UInt128 step = UInt128.One << (128 - config.Ipv6SubnetLength);
        var free = new List<Ipv6Prefix>();
        for (UInt128 a = config.Ipv6SubnetMin; a <= config.Ipv6SubnetMax && free.Count < Candidates; a += step)
        {
            if (!taken.Contains(a))
            {
                free.Add(new Ipv6Prefix(a, config.Ipv6SubnetLength));
            }
            if (a > UInt128.MaxValue - step)
            {
                break;
            }
        }
        RandomNumberGenerator.Shuffle(CollectionsMarshal.AsSpan(free));
        return free;
    }
}
