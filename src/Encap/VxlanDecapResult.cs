namespace Dataplane.Encap;

/// <summary>Why a VXLAN payload was refused (or <see cref="Ok"/>): the VXLAN header's and the inner Ethernet header's checks in one list.</summary>
public enum VxlanDecapResult
{
    Ok,
    TooShort,
    BadFlags,
    WrongVni,
    BadEtherType,
    NotOurMac,
}
