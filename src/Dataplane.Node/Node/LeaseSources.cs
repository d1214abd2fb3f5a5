using Dataplane.Leases;
using Dataplane.Leases.Etcd;
using Dataplane.Leases.Kube;
using Serilog;

namespace Dataplane.Node;

/// <summary>Picks the lease source the command line names: exactly one of the static file, etcd and the Kubernetes API.</summary>
internal static class LeaseSources
{
    public static ILeaseSource Create(string? leasesPath, EtcdOptions? etcd, KubeOptions? kube, ILogger log)
    {
        int given = (leasesPath is { Length: > 0 } ? 1 : 0) + (etcd is null ? 0 : 1) + (kube is null ? 0 : 1);
        if (given > 1)
        {
            throw new ConfigException("two lease sources: give one of --leases FILE, --etcd-endpoints URL, --kube-subnet-mgr");
        }
        return (leasesPath, etcd, kube) switch
        {
            (_, not null, _) => new EtcdLeaseSource(etcd, log),
            (_, _, not null) => new KubeLeaseSource(kube, log),
            ({ Length: > 0 } path, _, _) => new StaticLeaseSource(path, log),
            _ => throw new ConfigException("no lease source: give --leases FILE (the static cluster file), --etcd-endpoints URL, or --kube-subnet-mgr"),
        };
    }
}
