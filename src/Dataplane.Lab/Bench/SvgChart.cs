using System.Globalization;
using System.Text;

namespace Dataplane.Lab.Bench;

/// <summary>A grouped bar chart of each configuration's ratio to kernel VXLAN, as a self-contained SVG.</summary>
internal static class SvgChart
{
    public static string Render(IReadOnlyList<BenchResult> results, BenchResult kernel, string title)
    {
        (string Name, Func<BenchResult, double> Value, bool LowerIsBetter)[] metrics =
        [
            ("TCP 1 stream", r => r.Tcp1Gbps, false),
            ("TCP 4 streams", r => r.Tcp4Gbps, false),
            ("UDP 64 B, full load", r => r.Udp64FullPps, false),
            ("UDP 64 B, <=5% loss", r => r.Udp64Pps, false),
            ("ping (inverse)", r => r.RttMs, true),
            ("ping-pong avg (inverse)", r => r.PingPongAvgUs, true),
        ];
        string[] colors = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1", "#edc948", "#9c755f", "#bab0ac"];
        const int width = 900, height = 420, left = 60, right = 20, top = 50, bottom = 90;
        double plotW = width - left - right, plotH = height - top - bottom;
        double max = 0.5;
        var ratios = new double[results.Count, metrics.Length];
        for (int r = 0; r < results.Count; r++)
        {
            for (int m = 0; m < metrics.Length; m++)
            {
                double v = metrics[m].Value(results[r]), k = metrics[m].Value(kernel);
                double ratio = metrics[m].LowerIsBetter ? k / v : v / k;
                ratios[r, m] = double.IsFinite(ratio) ? ratio : 0;
                max = Math.Max(max, ratios[r, m]);
            }
        }
        max = Math.Ceiling(max * 2) / 2;
        var svg = new StringBuilder();
        string F(double d) => d.ToString("0.#", CultureInfo.InvariantCulture);
        svg.Append(CultureInfo.InvariantCulture, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n");
        svg.Append(CultureInfo.InvariantCulture, $"<rect width=\"{width}\" height=\"{height}\" fill=\"white\"/>\n");
        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{width / 2}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">{Escape(title)}</text>\n");
        for (double g = 0; g <= max + 1e-9; g += 0.5)
        {
            double y = top + plotH - g / max * plotH;
            svg.Append(CultureInfo.InvariantCulture, $"<line x1=\"{left}\" x2=\"{width - right}\" y1=\"{F(y)}\" y2=\"{F(y)}\" stroke=\"{(Math.Abs(g - 1) < 1e-9 ? "#333" : "#ddd")}\"/>\n");
            svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{left - 6}\" y=\"{F(y + 4)}\" text-anchor=\"end\">{g:0.0}x</text>\n");
        }
        double groupW = plotW / metrics.Length;
        double barW = groupW * 0.8 / results.Count;
        for (int m = 0; m < metrics.Length; m++)
        {
            double gx = left + m * groupW + groupW * 0.1;
            for (int r = 0; r < results.Count; r++)
            {
                double h = ratios[r, m] / max * plotH;
                double x = gx + r * barW;
                svg.Append(CultureInfo.InvariantCulture, $"<rect x=\"{F(x)}\" y=\"{F(top + plotH - h)}\" width=\"{F(barW - 2)}\" height=\"{F(h)}\" fill=\"{colors[r % colors.Length]}\"><title>{Escape(results[r].Label)}: {ratios[r, m]:0.00}x</title></rect>\n");
                svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{F(x + barW / 2 - 1)}\" y=\"{F(top + plotH - h - 3)}\" text-anchor=\"middle\" font-size=\"9\">{ratios[r, m]:0.00}</text>\n");
            }
            svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{F(left + m * groupW + groupW / 2)}\" y=\"{F(top + plotH + 16)}\" text-anchor=\"middle\">{Escape(metrics[m].Name)}</text>\n");
        }
        for (int r = 0; r < results.Count; r++)
        {
            double x = left + r * (plotW / results.Count);
            svg.Append(CultureInfo.InvariantCulture, $"<rect x=\"{F(x)}\" y=\"{height - 40}\" width=\"12\" height=\"12\" fill=\"{colors[r % colors.Length]}\"/>\n");
            svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{F(x + 16)}\" y=\"{height - 30}\">{Escape(results[r].Label)}</text>\n");
        }
        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{left}\" y=\"{height - 8}\" font-size=\"10\" fill=\"#555\">ratio to kernel VXLAN measured in the same run; higher is better (RTT shown as kernel RTT / RTT)</text>\n");
        svg.Append("</svg>\n");
        return svg.ToString();
    }

    private static string Escape(string s) => s.Replace("&", "&amp;", StringComparison.Ordinal).Replace("<", "&lt;", StringComparison.Ordinal).Replace(">", "&gt;", StringComparison.Ordinal);
}
