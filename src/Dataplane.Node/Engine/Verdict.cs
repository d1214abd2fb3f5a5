namespace Dataplane.Engine;

/// <summary>
/// What a loop does with one packet: pass it on (forward it to a peer, deliver it into the device),
/// nothing more because it was answered here (an ARP request or a Neighbor Solicitation for our VTEP
/// address: consumed, not a drop), or drop it for a counted <see cref="DropReason"/>. A drop reason
/// converts to its verdict, so a check reads <c>return DropReason.NoRoute;</c>. One int: nothing is
/// allocated or boxed on the packet path.
/// </summary>
internal readonly struct Verdict
{
    private const int PassValue = 0, AnsweredValue = 1, FirstDrop = 2;
    private readonly int _value;

    private Verdict(int value) => _value = value;

    public static Verdict Pass => default;
    public static Verdict Answered => new(AnsweredValue);

    public static implicit operator Verdict(DropReason reason) => new(FirstDrop + (int)reason);

    public bool Passes => _value == PassValue;

    /// <summary>A drop, and its reason.</summary>
    public bool IsDrop(out DropReason reason)
    {
        reason = (DropReason)(_value - FirstDrop);
        return _value >= FirstDrop;
    }

    public override string ToString() => _value switch
    {
        PassValue => "pass",
        AnsweredValue => "answered",
        _ => $"drop {(DropReason)(_value - FirstDrop)}",
    };
}
