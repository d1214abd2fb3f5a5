namespace Dataplane.Doctor;

/// <summary>How a check came out.</summary>
internal enum CheckStatus
{
    Pass,
    Warn,
    Fail,
}

/// <summary>One line of the doctor's report: what was checked, how it came out, what was found, and for a failure the command that fixes it.</summary>
internal sealed record DoctorCheck(string Name, CheckStatus Status, string Found, string? Fix = null)
{
    public static DoctorCheck Pass(string name, string found) => new(name, CheckStatus.Pass, found);
    public static DoctorCheck Warn(string name, string found, string? fix = null) => new(name, CheckStatus.Warn, found, fix);
    public static DoctorCheck Fail(string name, string found, string fix) => new(name, CheckStatus.Fail, found, fix);

    public override string ToString() =>
        $"{Status.ToString().ToUpperInvariant(),-4}  {Name,-22} {Found}{(Fix is null ? "" : $"  (fix: {Fix})")}";
}
