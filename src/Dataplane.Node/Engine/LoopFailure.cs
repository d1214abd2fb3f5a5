namespace Dataplane.Engine;

/// <summary>
/// Why a packet loop stopped on its own: <paramref name="Reason"/> is the one line the node logs
/// ("device flannel0 is gone (deleted under us)", "loop dp-out-0 failed: ..."), and
/// <paramref name="Exception"/> the unexpected exception with its stack, when there was one.
/// </summary>
internal sealed record LoopFailure(string Loop, string Reason, Exception? Exception);
