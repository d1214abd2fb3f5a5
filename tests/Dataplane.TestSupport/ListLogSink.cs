using Serilog.Core;
using Serilog.Events;

namespace Dataplane.TestSupport;

/// <summary>Collects rendered log messages (quotes removed) into a list, under the list's lock, for tests that read what a component logged.</summary>
internal sealed class ListLogSink(List<string> lines) : ILogEventSink
{
    public void Emit(LogEvent logEvent)
    {
        lock (lines)
        {
            lines.Add(logEvent.RenderMessage().Replace("\"", "", StringComparison.Ordinal));
        }
    }
}
