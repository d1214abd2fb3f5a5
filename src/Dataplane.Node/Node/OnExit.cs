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

/// <summary>What a node does once a successor has taken its device and sockets over (<c>run --after-handover</c>).</summary>
internal enum AfterHandover
{
    /// <summary>Exit 0 (the CLI, systemd).</summary>
    Exit,
    /// <summary>
    /// Wait for SIGTERM, holding nothing, then exit 0: a DaemonSet's old pod, which its kubelet would
    /// restart if it exited, until the DaemonSet controller deletes it (the new pod is ready).
    /// </summary>
    Wait,
}
