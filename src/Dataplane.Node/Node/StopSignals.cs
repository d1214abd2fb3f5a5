using System.Runtime.InteropServices;

namespace Dataplane.Node;

/// <summary>SIGINT and SIGTERM, taken from the runtime's default (exit) and turned into one wait handle that step 5 of <see cref="NodeRunner"/> waits on.</summary>
internal sealed class StopSignals : IDisposable
{
    private readonly ManualResetEventSlim _stopping = new();
    private readonly PosixSignalRegistration _sigint, _sigterm;

    public StopSignals()
    {
        _sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
        _sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
    }

    public WaitHandle Stopping => _stopping.WaitHandle;

    private void Stop(PosixSignalContext context)
    {
        context.Cancel = true;
        _stopping.Set();
    }

    public void Dispose()
    {
        _sigint.Dispose();
        _sigterm.Dispose();
        _stopping.Dispose();
    }
}
