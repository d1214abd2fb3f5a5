namespace Dataplane.Encap.Tests;

public class InternetChecksumTests
{
    [Fact]
    public void Rfc1071_example_sums_to_ddf2()
    {
        // RFC 1071 section 3: the bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2 (checksum = ~ddf2 = 220d).
        byte[] data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        Assert.Equal(0x220d, InternetChecksum.Compute(data));
    }

    [Fact]
    public void Known_ipv4_header_checksum()
    {
        // The classic example header 4500 0073 0000 4000 4011 [b861] c0a8 0001 c0a8 00c7.
        byte[] header = Convert.FromHexString("450000730000400040110000c0a80001c0a800c7");
        Assert.Equal(0xb861, InternetChecksum.Compute(header));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(8)]
    [InlineData(9)]
    [InlineData(20)]
    [InlineData(1499)]
    [InlineData(1500)]
    [InlineData(65535)]
    public void Matches_the_naive_sum_for_every_length_and_alignment(int length)
    {
        var rng = new Random(length);
        byte[] data = new byte[length + 3];
        rng.NextBytes(data);
        for (int start = 0; start < 3; start++)
        {
            ReadOnlySpan<byte> s = data.AsSpan(start, length);
            Assert.Equal(TestPackets.NaiveChecksum(s), InternetChecksum.Compute(s));
        }
    }

    [Fact]
    public void All_ones_data_does_not_overflow()
    {
        byte[] data = Enumerable.Repeat((byte)0xFF, 65536).ToArray();
        Assert.Equal(TestPackets.NaiveChecksum(data), InternetChecksum.Compute(data));
        foreach (int width in new[] { 0, 16, 32 })
        {
            Assert.Equal(TestPackets.NaiveChecksum(data), InternetChecksum.Finish(InternetChecksum.SumWith(data, 0, width)));
        }
    }

    /// <summary>
    /// The 256-bit, 128-bit and scalar paths agree with the naive sum on every length and
    /// alignment: the JIT here takes the 256-bit path, a NativeAOT binary the 128-bit one.
    /// </summary>
    [Fact]
    public void Every_vector_width_matches_the_naive_sum()
    {
        var rng = new Random(1071);
        byte[] data = new byte[9000 + 3];
        rng.NextBytes(data);
        foreach (int length in new[] { 0, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 1448, 1500, 9000 })
        {
            for (int start = 0; start < 3; start++)
            {
                ReadOnlySpan<byte> s = data.AsSpan(start, length);
                ushort expected = TestPackets.NaiveChecksum(s);
                foreach (int width in new[] { 0, 16, 32 })
                {
                    Assert.Equal(expected, InternetChecksum.Finish(InternetChecksum.SumWith(s, 0, width)));
                }
            }
        }
    }

    /// <summary>
    /// Copy-and-sum gives the naive checksum and an exact copy, on every vector width, length and
    /// alignment of source and destination, with a running sum carried in (a 12-byte pseudo-header's,
    /// so the result must be the naive checksum of the pseudo-header and the data together), and
    /// writes nothing past the copy.
    /// </summary>
    [Fact]
    public void Copy_and_sum_copies_exactly_and_sums_as_the_naive_checksum()
    {
        var rng = new Random(793);
        byte[] data = new byte[9000 + 3];
        rng.NextBytes(data);
        byte[] pseudo = new byte[12];
        rng.NextBytes(pseudo);
        foreach (int length in new[] { 0, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 1398, 1448, 9000 })
        {
            for (int start = 0; start < 3; start++)
            {
                ReadOnlySpan<byte> s = data.AsSpan(start, length);
                foreach (int width in new[] { 0, 16, 32 })
                {
                    foreach (int at in new[] { 0, 1 })
                    {
                        byte[] target = new byte[length + 8];
                        Array.Fill(target, (byte)0xA5);
                        ulong initial = InternetChecksum.Sum(pseudo, 0);
                        ulong sum = InternetChecksum.CopyAndSumWith(s, target.AsSpan(at), initial, width);
                        Assert.Equal(TestPackets.NaiveChecksum([.. pseudo, .. s]), InternetChecksum.Finish(sum));
                        Assert.True(s.SequenceEqual(target.AsSpan(at, length)), $"copy differs: length {length}, width {width}");
                        Assert.All(target.AsSpan(at + length).ToArray(), b => Assert.Equal(0xA5, b));
                        Assert.All(target.AsSpan(0, at).ToArray(), b => Assert.Equal(0xA5, b));
                    }
                }
            }
        }
        Assert.Throws<ArgumentException>(() => InternetChecksum.CopyAndSum(new byte[10], new byte[9], 0));
    }

    [Fact]
    public void A_packet_with_its_checksum_verifies_to_zero()
    {
        byte[] p = TestPackets.Ipv4Echo();
        Assert.Equal(0, InternetChecksum.Compute(p.AsSpan(0, 20)));
        Assert.Equal(0, InternetChecksum.Compute(p.AsSpan(20)));
    }
}
