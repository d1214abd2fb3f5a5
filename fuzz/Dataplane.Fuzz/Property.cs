using System.Runtime.CompilerServices;

namespace Dataplane.Fuzz;

/// <summary>A harness's property: a violated one is an exception, which AFL++ records as a crash.</summary>
internal static class Property
{
    public static void Check(bool holds, string what)
    {
        if (!holds)
        {
            throw new InvalidOperationException(what);
        }
    }

    /// <summary>As above; the message is formatted only when the property does not hold (checks in per-byte loops cost nothing more).</summary>
    public static void Check(bool holds, [InterpolatedStringHandlerArgument(nameof(holds))] ref FailureMessage what)
    {
        if (!holds)
        {
            throw new InvalidOperationException(what.ToStringAndClear());
        }
    }

    [InterpolatedStringHandler]
    public ref struct FailureMessage
    {
        private DefaultInterpolatedStringHandler _text;

        public FailureMessage(int literalLength, int formattedCount, bool holds, out bool format)
        {
            format = !holds;
            _text = format ? new DefaultInterpolatedStringHandler(literalLength, formattedCount) : default;
        }

        public void AppendLiteral(string s) => _text.AppendLiteral(s);

        public void AppendFormatted<T>(T value) => _text.AppendFormatted(value);

        public void AppendFormatted<T>(T value, string? format) => _text.AppendFormatted(value, format);

        public string ToStringAndClear() => _text.ToStringAndClear();
    }
}
