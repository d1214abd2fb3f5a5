namespace Dataplane.TunTap.Tests;

public class KernelReleaseTests
{
    [Theory]
    [InlineData("6.18.44-cloud-amd64", 6, 2, true)]
    [InlineData("6.2.0", 6, 2, true)]
    [InlineData("6.1.0-28-amd64", 6, 2, false)]
    [InlineData("5.15.0-91-generic", 6, 2, false)]
    [InlineData("7.0", 6, 2, true)]
    [InlineData("6.10rc1", 6, 2, true)]
    [InlineData("6", 6, 2, false)]
    [InlineData("", 6, 2, false)]
    [InlineData("linux", 6, 2, false)]
    [InlineData(null, 6, 2, false)]
    public void Compares_major_and_minor_and_refuses_what_it_cannot_parse(string? release, int major, int minor, bool expected) =>
        Assert.Equal(expected, KernelRelease.AtLeast(release, major, minor));

    [Fact]
    public void The_running_kernel_parses() =>
        Assert.True(KernelRelease.AtLeast(2, 6), File.ReadAllText("/proc/sys/kernel/osrelease"));
}
