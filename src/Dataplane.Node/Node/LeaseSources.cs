using Dataplane.Leases;
using Dataplane.Leases.Etcd;
using Serilog;

namespace Dataplane.Node;

/// <summary>Picks the lease source the command line names: exactly one of the static file and etcd.</summary>
internal static class LeaseSources
{
    public static ILeaseSource Create(string? leasesPath, EtcdOptions? etcd, ILogger log) => (leasesPath, etcd) switch
    {
        ({ Length: > 0 }, not null) => throw new ConfigException("two lease sources: give --leases FILE or --etcd-endpoints URL, not both"),
        (_, not null) => new EtcdLeaseSource(etcd, log),
        ({ Length: > 0 } path, null) => new StaticLeaseSource(path, log),
        _ => throw new ConfigException("no lease source: give --leases FILE (the static cluster file) or --etcd-endpoints URL"),
    };
}
