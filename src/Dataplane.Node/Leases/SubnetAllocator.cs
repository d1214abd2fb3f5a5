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
}
