using Dataplane.Lab;
using Dataplane.Node;
using Dataplane.TestSupport;

namespace Dataplane.Integration.Tests;

/// <summary>
/// A real systemd (Debian's) for a test, where systemd is not the machine's init: a user manager run
/// by root in a private mount namespace, which stands in for a booted system (a tmpfs over
/// /run/systemd with the marker systemd looks for; the host's /run is untouched). It runs in the
/// root network namespace (it needs the host's /sys for its cgroups) and starts nothing there: the
/// units a test gives it enter a node's namespace in ExecStart (<c>ip netns exec NODE ...</c>, which
/// execs in place: the main process stays the one systemd watches). Its runtime and configuration
/// directories are in the test's work directory; <c>systemctl --user</c> reaches it there. Dispose
/// stops its units, then the manager (SIGTERM), and kills any main process that outlived it.
/// </summary>
internal sealed class UserSystemd : IDisposable
{
    private readonly string _runtime;
    private readonly IReadOnlyDictionary<string, string> _environment;
    private readonly System.Diagnostics.Process _manager;
    private readonly System.Text.StringBuilder _log = new();
    private readonly List<string> _units = [];

    public UserSystemd(Topology topology)
    {
        string systemd = Require.Tool("/usr/lib/systemd/systemd", "systemd");
        string home = Path.Combine(topology.WorkDir, "systemd-home");
        _runtime = Path.Combine(topology.WorkDir, "systemd-run");
        Directory.CreateDirectory(home);
        Directory.CreateDirectory(_runtime);
        _environment = new Dictionary<string, string>
        {
            ["XDG_RUNTIME_DIR"] = _runtime,
            ["HOME"] = home,
            ["XDG_CONFIG_HOME"] = Path.Combine(home, "config"),
            ["XDG_STATE_HOME"] = Path.Combine(home, "state"),
            ["XDG_CACHE_HOME"] = Path.Combine(home, "cache"),
        };
        var start = new System.Diagnostics.ProcessStartInfo(Require.Tool("unshare", "util-linux"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in new[] { "--mount", "--propagation", "private", "--fork", "--kill-child=SIGTERM", "sh", "-c",
            $"mount -t tmpfs tmpfs /run/systemd && mkdir /run/systemd/system && exec {systemd} --user --log-target=console" })
        {
            start.ArgumentList.Add(a);
        }
        foreach ((string key, string value) in _environment)
        {
            start.Environment[key] = value;
        }
        _manager = System.Diagnostics.Process.Start(start)!;
        _manager.OutputDataReceived += (_, e) => Append(e.Data);
        _manager.ErrorDataReceived += (_, e) => Append(e.Data);
        _manager.BeginOutputReadLine();
        _manager.BeginErrorReadLine();
        string privateSocket = Path.Combine(_runtime, "systemd", "private");
        Assert.True(SpinWait.SpinUntil(() => File.Exists(privateSocket) && Systemctl("show", "-p", "Version").ExitCode == 0, TimeSpan.FromSeconds(20)),
            $"systemd --user did not start:\n{Log}");
    }

    private void Append(string? line)
    {
        lock (_log)
        {
            _log.AppendLine(line);
        }
    }

    /// <summary>Where the units' output goes (their drop-in says), shown when a systemctl fails.</summary>
    public string? OutputFile { get; set; }

    /// <summary>Where the manager reads units from (the runtime unit directory).</summary>
    public string UnitDirectory => Path.Combine(_runtime, "systemd", "user");

    /// <summary>The manager's own output (its log).</summary>
    public string Log
    {
        get
        {
            lock (_log)
            {
                return _log.ToString();
            }
        }
    }

    public ProcessRunner.Result Systemctl(params string[] args) =>
        ProcessRunner.Run(Require.Tool("env", "coreutils"), [.. _environment.Select(p => $"{p.Key}={p.Value}"), Require.Tool("systemctl", "systemd"), "--user", .. args], 60_000);

    /// <summary>Installs <paramref name="unit"/> with a drop-in of the test's own lines, and starts it (waits for its start job: Type=notify waits for READY=1).</summary>
    public void Start(string unit, string text, string dropIn)
    {
        Directory.CreateDirectory(Path.Combine(UnitDirectory, unit + ".d"));
        File.WriteAllText(Path.Combine(UnitDirectory, unit), text);
        File.WriteAllText(Path.Combine(UnitDirectory, unit + ".d", "test.conf"), dropIn);
        _units.Add(unit);
        Check("daemon-reload");
        Check("start", unit);
    }

    public string Check(params string[] args)
    {
        ProcessRunner.Result r = Systemctl(args);
        Assert.True(r.ExitCode == 0, $"systemctl --user {string.Join(' ', args)}: {r.Stdout}{r.Stderr}\n"
            + string.Join('\n', _units.Select(u => Systemctl("status", "--no-pager", "-l", u).Stdout))
            + (OutputFile is string f && File.Exists(f) ? $"\n--- {f}:\n{File.ReadAllText(f)}" : "") + $"\n--- systemd:\n{Log}");
        return r.Stdout;
    }

    /// <summary>The unit's main process now (0 when none).</summary>
    public int MainPid(string unit) => int.Parse(Check("show", "-p", "MainPID", "--value", unit).Trim(), System.Globalization.CultureInfo.InvariantCulture);

    public void Dispose()
    {
        var pids = _units.Select(u => Systemctl("show", "-p", "MainPID", "--value", u).Stdout.Trim()).Where(p => p is not ("" or "0")).ToList();
        foreach (string unit in _units)
        {
            Systemctl("stop", unit);
        }
        if (!_manager.HasExited)
        {
            ProcessRunner.Run("kill", ["-TERM", _manager.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
            if (!_manager.WaitForExit(10_000))
            {
                _manager.Kill(entireProcessTree: true);
            }
        }
        _manager.Dispose();
        foreach (string pid in pids)
        {
            ProcessRunner.Run("kill", ["-KILL", pid]);
        }
    }
}
