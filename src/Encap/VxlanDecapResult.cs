namespace Dataplane.Encap;

public enum VxlanDecapResult
{
    Ok,
    TooShort,
    BadFlags,
    WrongVni,
    BadEtherType,
    NotOurMac,
}
