namespace Dataplane.Encap;

/// <summary>Why an IP packet view refused a buffer (or <see cref="Ok"/>).</summary>
public enum IpParseResult
{
    Ok,
    TooShort,
    BadVersion,
    BadHeaderLength,
    BadTotalLength,
    BadHeaderChecksum,
}
