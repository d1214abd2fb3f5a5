using System.Text;

namespace Dataplane.Engine;

/// <summary>Drop reasons as they are shown everywhere (metrics labels, capture comments): snake_case, made once.</summary>
internal static class DropReasonLabels
{
    private static readonly string[] Labels = [.. Enum.GetValues<DropReason>().Select(r => SnakeCase(r.ToString()))];

    public static string Of(DropReason reason) => Labels[(int)reason];

    public static string SnakeCase(string name)
    {
        var b = new StringBuilder(name.Length + 8);
        for (int k = 0; k < name.Length; k++)
        {
            if (char.IsUpper(name[k]) && k > 0)
            {
                b.Append('_');
            }
            b.Append(char.ToLowerInvariant(name[k]));
        }
        return b.ToString();
    }
}
