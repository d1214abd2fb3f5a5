using System.CommandLine;
using System.CommandLine.Parsing;

namespace Dataplane.Cli;

/// <summary>
/// Typed options with checks that say what is wrong in one line, <c>--FLAG VALUE: what it must be</c>,
/// the way every configuration error of this program reads, and the remark in each flag's help
/// whether flanneld has it (<see cref="Flanneld"/>, <see cref="NotInFlanneld"/>): a flag is declared
/// once, with its help, its check and its remark together (as Garnet's Options.cs keeps them).
/// </summary>
internal static class TypedOptions
{
    /// <summary>An option whose text is parsed by <paramref name="parse"/>; null from it is an error with <paramref name="expected"/>.</summary>
    public static Option<T?> Parsed<T>(string name, string description, Func<string, T?> parse, string expected) where T : class => new(name)
    {
        Description = description,
        CustomParser = r => Parse(r, name, parse, expected),
    };

    /// <summary>The same for a value type (addresses as structs, enums with their own names).</summary>
    public static Option<T?> ParsedValue<T>(string name, string description, Func<string, T?> parse, string expected) where T : struct => new(name)
    {
        Description = description,
        CustomParser = r => Parse(r, name, parse, expected),
    };

    private static T? Parse<T>(ArgumentResult r, string name, Func<string, T?> parse, string expected)
    {
        string text = r.Tokens.Count > 0 ? r.Tokens[0].Value : "";
        T? value = parse(text);
        if (value is null)
        {
            r.AddError($"{name} {text}: {expected}");
        }
        return value;
    }

    /// <summary>Adds a check that the value lies in <paramref name="min"/>..<paramref name="max"/>.</summary>
    public static Option<T> InRange<T>(this Option<T> option, T min, T max, string message) where T : IComparable<T>
    {
        option.Validators.Add(r =>
        {
            T value = r.GetValueOrDefault<T>();
            if (value.CompareTo(min) < 0 || value.CompareTo(max) > 0)
            {
                r.AddError($"{option.Name} {value}: {message}");
            }
        });
        return option;
    }

    /// <summary>flanneld has this flag, with the same name and meaning: "[flanneld: the same]".</summary>
    public static T Flanneld<T>(this T option) where T : Option
    {
        option.Description += " [flanneld: the same]";
        return option;
    }

    /// <summary>flanneld has no such flag: "[not in flanneld]", or "[not in flanneld: why]".</summary>
    public static T NotInFlanneld<T>(this T option, string? why = null) where T : Option
    {
        option.Description += why is null ? " [not in flanneld]" : $" [not in flanneld: {why}]";
        return option;
    }
}
