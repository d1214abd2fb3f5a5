using System.CommandLine;
using Dataplane.Metrics;

namespace Dataplane.Cli;

/// <summary>
/// How a command that talks to a running node finds it: <c>--control-socket</c>, else the socket of
/// <c>--device</c> (/run/dataplane/DEVICE.sock). Shared by <c>stats</c>, <c>capture</c> and
/// <c>doctor</c>; <c>run</c> listens where the same <c>--control-socket</c> says.
/// </summary>
internal sealed class ControlSocketFlags
{
    public Option<string?> Socket { get; } = new("--control-socket", "--socket")
    {
        Description = "the node's control socket (default /run/dataplane/DEVICE.sock)",
    };

    public Option<string> Device { get; } = new("--device")
    {
        Description = "the node's device, to find its control socket",
        DefaultValueFactory = _ => "flannel.1",
    };

    public IEnumerable<Option> Options => [Socket, Device];

    public string Path(ParseResult r) => r.GetValue(Socket) ?? StatsCommand.DefaultSocket(r.GetValue(Device)!);
}
