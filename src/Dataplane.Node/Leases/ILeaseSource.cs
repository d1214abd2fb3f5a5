namespace Dataplane.Leases;

/// <summary>
/// Where a node's leases come from (the static cluster file, etcd, the Kubernetes API), with one
/// lifecycle, so the node never asks which it has:
///
///  1. <see cref="Start"/>: read the network config and every lease as they stand now. Nothing is
///     taken or changed yet. Unreachable stores and bad data are <see cref="ConfigException"/>s.
///  2. <see cref="Acquire"/>: once every local check has passed, our own lease: the file's
///     (found by our public IP), or one reused or taken in the store and published there.
///  3. <see cref="Watch"/>: from now on, offer every change of the leases to the node's
///     <see cref="PeerTables"/> (a new subnet table is published when the peers changed) and keep
///     our lease alive (renewal). While the store is away the last table stays.
///  4. Dispose: stop watching and close the connection. Our lease stays in the store until it
///     expires, as flanneld leaves it, so a restarted node gets the same subnet back.
///
/// <see cref="Release"/> is the other way in, for <c>dataplane uninstall --release-lease</c>: without
/// Start, it removes from the store what a node of ours on this host published there.
/// </summary>
internal interface ILeaseSource : IDisposable
{
    /// <summary>Where the leases come from, for messages: "lease file PATH", "etcd URL", "Kubernetes API URL".</summary>
    string Description { get; }

    ClusterSnapshot Start();

    LeaseRecord Acquire(ClusterSnapshot snapshot, LeaseRequest request);

    void Watch(PeerTables tables);

    /// <summary>Removes our lease from the store (not started; no node of ours runs here); one line per thing removed, none when nothing was left.</summary>
    IReadOnlyList<string> Release();
}
