namespace Dataplane.Encap;

public enum VxlanReadResult
{
    Ok,
    TooShort,
    /// <summary>Flags other than exactly 0x08, or a reserved bit set.</summary>
    BadFlags,
}
