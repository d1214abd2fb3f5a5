using Dataplane.Engine;

namespace Dataplane.Tests;

/// <summary>A loop's verdict on a packet: pass, answered (consumed, not a drop), or a drop whose reason comes back unchanged.</summary>
public class VerdictTests
{
    [Fact]
    public void Every_drop_reason_comes_back_from_its_verdict_and_none_passes()
    {
        foreach (DropReason reason in Enum.GetValues<DropReason>())
        {
            Verdict v = reason;
            Assert.False(v.Passes);
            Assert.True(v.IsDrop(out DropReason back));
            Assert.Equal(reason, back);
        }
    }

    [Fact]
    public void Pass_and_answered_are_not_drops()
    {
        Assert.True(Verdict.Pass.Passes);
        Assert.False(Verdict.Pass.IsDrop(out _));
        Assert.False(Verdict.Answered.Passes);
        Assert.False(Verdict.Answered.IsDrop(out _));
        Assert.True(default(Verdict).Passes);
        Assert.Equal("drop NoRoute", ((Verdict)DropReason.NoRoute).ToString());
    }
}
