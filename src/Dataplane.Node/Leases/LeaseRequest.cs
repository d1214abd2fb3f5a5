using Dataplane.Engine;

namespace Dataplane.Leases;

/// <summary>What a node asks of its lease source: a lease for this public IP, for this backend (vxlan leases carry a VTEP MAC and the VNI).</summary>
internal sealed record LeaseRequest(uint PublicIp, BackendKind Backend, uint Vni);
