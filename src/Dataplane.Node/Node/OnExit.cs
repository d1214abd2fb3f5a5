namespace Dataplane.Node;

/// <summary>What a node does with its device when it stops without a successor (<c>run --on-exit</c>).</summary>
internal enum OnExit
{
    /// <summary>Delete the device, its address and route, and the --ip-masq rules (the CLI, the demo).</summary>
    Remove,
    /// <summary>
    /// Keep them (as flanneld keeps flannel.1), the TUN persistent: the next start, or the same node
    /// after a crash, takes the device over with its address and route in place (the DaemonSet, systemd).
    /// </summary>
    Keep,
}
