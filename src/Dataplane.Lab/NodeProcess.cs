using System.Diagnostics;

using Dataplane.Node;

namespace Dataplane.Lab;

/// <summary>
/// A program started in a network namespace with <c>ip netns exec</c> (which execs it: same pid), or in
/// this process's own namespace (a null namespace: a container runtime, which places its containers
/// itself); its output is collected line by line.
/// </summary>
internal sealed class NodeProcess : IDisposable
{
    private readonly Process _process;
    private readonly List<string> _lines = [];
    private readonly object _gate = new();
    private readonly TextWriter? _echo;
    private readonly string _label;

    private NodeProcess(Process process, string label, TextWriter? echo)
    {
        _process = process;
        _label = label;
        _echo = echo;
    }

    public static NodeProcess Start(string? netns, IEnumerable<string> command, string label, TextWriter? echo = null)
    {
        string[] argv = netns is null ? [.. command] : [ProcessRunner.Which("ip") ?? "ip", "netns", "exec", netns, .. command];
        var psi = new ProcessStartInfo(argv[0])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (string a in argv.Skip(1))
        {
            psi.ArgumentList.Add(a);
        }
        var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {argv[0]}");
        var np = new NodeProcess(p, label, echo);
        p.OutputDataReceived += (_, e) => np.Add(e.Data);
        p.ErrorDataReceived += (_, e) => np.Add(e.Data);
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return np;
    }

    private void Add(string? line)
    {
        if (line is null)
        {
            return;
        }
        lock (_gate)
        {
            _lines.Add(line);
            Monitor.PulseAll(_gate);
        }
        _echo?.WriteLine($"  [{_label}] {line}");
    }

    public int Pid => _process.Id;
    public bool HasExited => _process.HasExited;
    public int ExitCode => _process.ExitCode;

    public IReadOnlyList<string> Lines
    {
        get
        {
            lock (_gate)
            {
                return [.. _lines];
            }
        }
    }

    public string Output => string.Join('\n', Lines);

    /// <summary>Waits until a line contains <paramref name="text"/>; returns it, or null on timeout or exit.</summary>
    public string? WaitForLine(string text, TimeSpan timeout)
    {
        var sw = Stopwatch.StartNew();
        lock (_gate)
        {
            while (true)
            {
                string? hit = _lines.FirstOrDefault(l => l.Contains(text, StringComparison.Ordinal));
                if (hit is not null)
                {
                    return hit;
                }
                TimeSpan left = timeout - sw.Elapsed;
                if (left <= TimeSpan.Zero || _process.HasExited && sw.Elapsed > TimeSpan.FromMilliseconds(200))
                {
                    return null;
                }
                Monitor.Wait(_gate, TimeSpan.FromMilliseconds(Math.Min(100, left.TotalMilliseconds)));
            }
        }
    }

    /// <summary>Sends SIGTERM (or <paramref name="signal"/>: "INT") and waits; SIGKILL if it has not exited in time. Returns the exit code.</summary>
    public int Stop(TimeSpan timeout, string signal = "TERM")
    {
        if (!_process.HasExited)
        {
            ProcessRunner.Run("/bin/sh", ["-c", $"kill -{signal} {_process.Id}"]);
            if (!_process.WaitForExit(timeout))
            {
                _process.Kill(entireProcessTree: true);
            }
        }
        _process.WaitForExit();
        return _process.ExitCode;
    }

    /// <summary>SIGKILL, without waiting.</summary>
    public void Kill()
    {
        try
        {
            _process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
        }
    }

    public bool WaitForExit(TimeSpan timeout)
    {
        if (!_process.WaitForExit(timeout))
        {
            return false;
        }
        _process.WaitForExit(); // drain output
        return true;
    }

    public void Dispose()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                _process.WaitForExit(5000);
            }
        }
        catch (InvalidOperationException)
        {
        }
        _process.Dispose();
    }
}
