namespace Dataplane.TunTap;

/// <summary>How long a sender waits for room, and whether ENOBUFS means "full" (a packet socket's device queue) or a refusal (a UDP route's).</summary>
internal readonly record struct RoomPolicy(int Waits, int WaitMs, bool NoBuffersMeansFull);
