namespace Dataplane.Engine;

/// <summary>flannel's backend names: <c>udp</c> (raw IP in UDP, port 8285) and <c>vxlan</c> (port 8472).</summary>
internal enum BackendKind
{
    Udp,
    Vxlan,
}
