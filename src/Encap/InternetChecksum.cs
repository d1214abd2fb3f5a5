using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Dataplane.Encap;

/// <summary>
/// The Internet checksum (RFC 1071): the ones' complement of the ones' complement sum of
/// 16-bit big-endian words. The sum does not depend on byte order until the end (RFC 1071 1.2.B),
/// so words are added in native order, 32 bytes at a time with 256-bit vectors (16-bit lanes
/// widened into 32-bit accumulators), else 16 at a time with 128-bit ones (SSE2, AdvSimd: what a
/// NativeAOT binary has without an instruction-set option, where 256-bit vectors report no
/// acceleration), else 8 bytes at a time, and the folded result is swapped once.
/// </summary>
public static class InternetChecksum
{
    /// <summary>The checksum of <paramref name="data"/>, ready to store big-endian.</summary>
    public static ushort Compute(ReadOnlySpan<byte> data) => Finish(Sum(data, 0));

    /// <summary>Adds the bytes of <paramref name="data"/> to a running sum (not yet folded).</summary>
    public static ulong Sum(ReadOnlySpan<byte> data, ulong initial) => SumWith(data, initial, VectorWidth);

    /// <summary>Widest vectors this machine accelerates, in bytes (32, 16, or 0 for none): what <see cref="Sum"/> uses.</summary>
    public static int VectorWidth => Vector256.IsHardwareAccelerated ? 32 : Vector128.IsHardwareAccelerated ? 16 : 0;

    /// <summary><see cref="Sum"/> with vectors of <paramref name="vectorWidth"/> bytes (32, 16, or 0: none); tests compare the three.</summary>
    public static ulong SumWith(ReadOnlySpan<byte> data, ulong initial, int vectorWidth)
    {
        ulong sum = initial;
        ulong swappedSum = 0;
        int vectorBytes = 0;
        if (vectorWidth == 32 && data.Length >= 64)
        {
            swappedSum = SumVector256(data, default, out vectorBytes);
        }
        else if (vectorWidth == 16 && data.Length >= 32)
        {
            swappedSum = SumVector128(data, default, out vectorBytes);
        }
        // Eight bytes at a time; the words are read in native (little-endian) order, which
        // the ones' complement sum tolerates: the folded result is byte-swapped once at the end.
        ReadOnlySpan<ulong> words = MemoryMarshal.Cast<byte, ulong>(data[vectorBytes..]);
        foreach (ulong w in words)
        {
            ulong lo = w & 0xFFFF_FFFF;
            ulong hi = w >> 32;
            swappedSum += lo + hi;
        }
        int i = vectorBytes + words.Length * 8;
        if (i > 0)
        {
            sum += ToNetworkOrder(swappedSum);
        }
        for (; i + 1 < data.Length; i += 2)
        {
            sum += BinaryPrimitives.ReadUInt16BigEndian(data[i..]);
        }
        if (i < data.Length)
        {
            sum += (ulong)data[i] << 8;
        }
        return sum;
    }

    /// <summary>Folds a sum of native-order (little-endian) words to 16 bits and swaps it to network order.</summary>
    private static ulong ToNetworkOrder(ulong nativeSum)
    {
        ulong s = nativeSum;
        s = (s & 0xFFFF_FFFF) + (s >> 32);
        s = (s & 0xFFFF_FFFF) + (s >> 32);
        s = (s & 0xFFFF) + (s >> 16);
        s = (s & 0xFFFF) + (s >> 16);
        s = (s & 0xFFFF) + (s >> 16);
        return BinaryPrimitives.ReverseEndianness((ushort)s);
    }

    /// <summary>
    /// Copies <paramref name="source"/> to the start of <paramref name="destination"/> and adds its
    /// bytes to a running sum in the same pass (each vector loaded once, stored and added): what a
    /// segment's payload costs when it is both moved and checksummed. Equal to a copy followed by
    /// <see cref="Sum"/> of the copy. The two may not overlap.
    /// </summary>
    public static ulong CopyAndSum(ReadOnlySpan<byte> source, Span<byte> destination, ulong initial) =>
        CopyAndSumWith(source, destination, initial, VectorWidth);

    /// <summary><see cref="CopyAndSum"/> with vectors of <paramref name="vectorWidth"/> bytes (32, 16, or 0: a copy, then <see cref="SumWith"/>).</summary>
    public static ulong CopyAndSumWith(ReadOnlySpan<byte> source, Span<byte> destination, ulong initial, int vectorWidth)
    {
        if (destination.Length < source.Length)
        {
            throw new ArgumentException("destination is shorter than source", nameof(destination));
        }
        int vectorBytes = 0;
        ulong sum = initial;
        if (vectorWidth == 32 && source.Length >= 64)
        {
            sum += ToNetworkOrder(SumVector256(source, destination, out vectorBytes));
        }
        else if (vectorWidth == 16 && source.Length >= 32)
        {
            sum += ToNetworkOrder(SumVector128(source, destination, out vectorBytes));
        }
        // The rest (under one vector, or all without vectors): copied, then summed from the copy.
        // vectorBytes is even, so the rest's words line up with the whole's.
        source[vectorBytes..].CopyTo(destination[vectorBytes..]);
        return SumWith(destination[vectorBytes..source.Length], sum, vectorWidth);
    }

    /// <summary>
    /// Native-order sum of the 32-byte blocks of <paramref name="data"/>; <paramref name="consumed"/> says how far it got.
    /// Each block is also stored to <paramref name="copyTo"/> unless it is empty (one load for both).
    /// </summary>
    private static ulong SumVector256(ReadOnlySpan<byte> data, Span<byte> copyTo, out int consumed)
    {
        ref byte start = ref MemoryMarshal.GetReference(data);
        ref byte to = ref MemoryMarshal.GetReference(copyTo);
        bool copy = !copyTo.IsEmpty;
        int blocks = data.Length / 32;
        ulong total = 0;
        int done = 0;
        while (done < blocks)
        {
            // 16-bit lanes widened into 32-bit accumulators: 2^15 blocks cannot overflow them.
            int chunk = Math.Min(blocks - done, 1 << 15);
            Vector256<uint> a = Vector256<uint>.Zero, b = Vector256<uint>.Zero;
            for (int k = 0; k < chunk; k++)
            {
                nuint at = (nuint)((done + k) * 32);
                Vector256<byte> v = Vector256.LoadUnsafe(ref start, at);
                if (copy)
                {
                    v.StoreUnsafe(ref to, at);
                }
                (Vector256<uint> lo, Vector256<uint> hi) = Vector256.Widen(v.AsUInt16());
                a += lo;
                b += hi;
            }
            (Vector256<ulong> a0, Vector256<ulong> a1) = Vector256.Widen(a);
            (Vector256<ulong> b0, Vector256<ulong> b1) = Vector256.Widen(b);
            total += Vector256.Sum(a0 + a1 + b0 + b1);
            done += chunk;
        }
        consumed = blocks * 32;
        return total;
    }

    /// <summary>
    /// Native-order sum of the 16-byte blocks of <paramref name="data"/>; <paramref name="consumed"/> says how far it got.
    /// Each block is also stored to <paramref name="copyTo"/> unless it is empty (one load for both).
    /// </summary>
    private static ulong SumVector128(ReadOnlySpan<byte> data, Span<byte> copyTo, out int consumed)
    {
        ref byte start = ref MemoryMarshal.GetReference(data);
        ref byte to = ref MemoryMarshal.GetReference(copyTo);
        bool copy = !copyTo.IsEmpty;
        int blocks = data.Length / 16;
        ulong total = 0;
        int done = 0;
        while (done < blocks)
        {
            // As the 256-bit path: 2^15 blocks of 16-bit lanes cannot overflow 32-bit accumulators.
            int chunk = Math.Min(blocks - done, 1 << 15);
            Vector128<uint> a = Vector128<uint>.Zero, b = Vector128<uint>.Zero;
            for (int k = 0; k < chunk; k++)
            {
                nuint at = (nuint)((done + k) * 16);
                Vector128<byte> v = Vector128.LoadUnsafe(ref start, at);
                if (copy)
                {
                    v.StoreUnsafe(ref to, at);
                }
                (Vector128<uint> lo, Vector128<uint> hi) = Vector128.Widen(v.AsUInt16());
                a += lo;
                b += hi;
            }
            (Vector128<ulong> a0, Vector128<ulong> a1) = Vector128.Widen(a);
            (Vector128<ulong> b0, Vector128<ulong> b1) = Vector128.Widen(b);
            total += Vector128.Sum(a0 + a1 + b0 + b1);
            done += chunk;
        }
        consumed = blocks * 16;
        return total;
    }

    /// <summary>Folds a running sum to 16 bits and returns its ones' complement.</summary>
    public static ushort Finish(ulong sum)
    {
        sum = (sum & 0xFFFF_FFFF) + (sum >> 32);
        sum = (sum & 0xFFFF_FFFF) + (sum >> 32);
        sum = (sum & 0xFFFF) + (sum >> 16);
        sum = (sum & 0xFFFF) + (sum >> 16);
        sum = (sum & 0xFFFF) + (sum >> 16);
        return (ushort)~sum;
    }

    /// <summary>The pseudo-header sum of TCP/UDP over IPv4 (RFC 793/768).</summary>
    public static ulong PseudoHeaderIpv4(uint source, uint destination, byte protocol, int length) =>
        (source >> 16) + (source & 0xFFFF) + (destination >> 16) + (destination & 0xFFFF) + protocol + (ulong)length;

    /// <summary>The pseudo-header sum of an upper layer over IPv6 (RFC 8200 section 8.1).</summary>
    public static ulong PseudoHeaderIpv6(ReadOnlySpan<byte> source16, ReadOnlySpan<byte> destination16, byte nextHeader, int length)
    {
        ulong sum = Sum(source16, 0);
        sum = Sum(destination16, sum);
        return sum + (uint)length + nextHeader;
    }
}
