using Dataplane.Encap;
using Serilog;

namespace Dataplane.Node;

/// <summary>
/// <c>--ip-masq</c>: flanneld's masquerade and forward rules, in its own chains so they are easy to
/// find and to remove: nat <c>FLANNEL-POSTRTG</c> (jumped to from POSTROUTING) and filter
/// <c>FLANNEL-FWD</c> (from FORWARD), rule for rule and in the order flanneld writes them. Traffic
/// kube-proxy marked is left to kube-proxy; traffic to and from our subnet inside the overlay keeps
/// its addresses; traffic from pods to the outside is masqueraded (with --random-fully where
/// iptables has it); forwarding of overlay traffic is accepted. Installed in the node's network namespace through the iptables
/// command (as flanneld does, via go-iptables). Removed on stop, or with <c>--on-exit keep</c> kept
/// for the next start (which replaces them) so that traffic leaving the overlay stays masqueraded
/// while the node restarts.
/// </summary>
internal sealed class IpMasq : IDisposable
{
    private const string Masq = "FLANNEL-POSTRTG";
    private const string Fwd = "FLANNEL-FWD";

    /// <summary>kube-proxy's masquerade mark (its --iptables-masquerade-bit 14), as flanneld's KubeProxyMark.</summary>
    public const string KubeProxyMark = "0x4000/0x4000";
    private readonly string _iptables;
    // Why the rules stay at Dispose (--on-exit keep, or a successor took over), or null: they go.
    private string? _keptFor;
    private readonly ILogger _log;

    private IpMasq(string iptables, bool keep, ILogger log)
    {
        _iptables = iptables;
        _keptFor = keep ? "--on-exit keep" : null;
        _log = log;
    }

    /// <param name="keep">Leave the rules in place on stop (<c>--on-exit keep</c>).</param>
    public static IpMasq Install(Ipv4Prefix network, Ipv4Prefix subnet, bool keep, ILogger log)
    {
        string iptables = ProcessRunner.Which("iptables") ?? throw new ConfigException("--ip-masq needs iptables (apt-get install iptables)");
        var m = new IpMasq(iptables, keep, log);
        m.Remove(); // leftovers of a killed instance
        string random = ProcessRunner.Run(iptables, ["-j", "MASQUERADE", "--help"]).Stdout.Contains("random-fully", StringComparison.Ordinal) ? "--random-fully" : "";
        string n = network.ToString(), s = subnet.ToString();
        string[] masq = ["-m", "comment", "--comment", "flanneld masq"];
        string[] fwd = ["-m", "comment", "--comment", "flanneld forward"];
        m.Run("-t", "nat", "-N", Masq);
        // flanneld's masqRules (pkg/trafficmngr/iptables), in its order: kube-proxy masquerades what it marked itself,
        // the overlay keeps its addresses (to and from our subnet), pods leaving it and the host entering it are masqueraded.
        m.Run(["-t", "nat", "-A", Masq, "-m", "mark", "--mark", KubeProxyMark, .. masq, "-j", "RETURN"]);
        m.Run(["-t", "nat", "-A", Masq, "-s", s, "-d", n, .. masq, "-j", "RETURN"]);
        m.Run(["-t", "nat", "-A", Masq, "-s", n, "-d", s, .. masq, "-j", "RETURN"]);
        m.Run(["-t", "nat", "-A", Masq, "!", "-s", n, "-d", s, .. masq, "-j", "RETURN"]);
        m.Run(["-t", "nat", "-A", Masq, "-s", n, "!", "-d", "224.0.0.0/4", .. masq, "-j", "MASQUERADE", .. Opt(random)]);
        m.Run(["-t", "nat", "-A", Masq, "!", "-s", n, "-d", n, .. masq, "-j", "MASQUERADE", .. Opt(random)]);
        m.Run(["-t", "nat", "-A", "POSTROUTING", .. masq, "-j", Masq]);
        m.Run("-t", "filter", "-N", Fwd);
        m.Run(["-t", "filter", "-A", Fwd, "-s", n, .. fwd, "-j", "ACCEPT"]);
        m.Run(["-t", "filter", "-A", Fwd, "-d", n, .. fwd, "-j", "ACCEPT"]);
        m.Run(["-t", "filter", "-A", "FORWARD", .. fwd, "-j", Fwd]);
        log.Information("ip-masq: masquerade rules in nat {Masq}, forward rules in filter {Fwd}{Random}", Masq, Fwd, random.Length > 0 ? " (--random-fully)" : "");
        return m;
    }

    private static string[] Opt(string s) => s.Length == 0 ? [] : [s];

    private void Run(params string[] args)
    {
        ProcessRunner.Result r = ProcessRunner.Run(_iptables, ["-w", "5", .. args]);
        if (r.ExitCode != 0)
        {
            throw new ConfigException($"--ip-masq: iptables {string.Join(' ', args)}: {r.Stderr.Trim()}");
        }
    }

    private void Remove() => RemoveChains(_iptables);

    /// <summary>Deletes the jumps and the chains; what is not there is skipped. Returns what was there ("nat FLANNEL-POSTRTG").</summary>
    public static IReadOnlyList<string> RemoveChains(string iptables)
    {
        var removed = new List<string>();
        foreach ((string table, string parent, string chain, string comment) in new[] { ("nat", "POSTROUTING", Masq, "flanneld masq"), ("filter", "FORWARD", Fwd, "flanneld forward") })
        {
            bool present = ProcessRunner.Run(iptables, ["-w", "5", "-t", table, "-S", chain]).ExitCode == 0;
            while (ProcessRunner.Run(iptables, ["-w", "5", "-t", table, "-D", parent, "-m", "comment", "--comment", comment, "-j", chain]).ExitCode == 0)
            {
                present = true;
            }
            ProcessRunner.Run(iptables, ["-w", "5", "-t", table, "-F", chain]);
            ProcessRunner.Run(iptables, ["-w", "5", "-t", table, "-X", chain]);
            if (present)
            {
                removed.Add($"{table} {chain}");
            }
        }
        return removed;
    }

    /// <summary>Removes the rules a predecessor installed (a successor started without --ip-masq), saying why.</summary>
    public static void RemoveLeftBy(string predecessor, ILogger log)
    {
        if (ProcessRunner.Which("iptables") is string iptables && RemoveChains(iptables).Count > 0)
        {
            log.Information("ip-masq: rules of {Predecessor} removed (this node runs without --ip-masq)", predecessor);
        }
    }

    /// <summary>Leaves the rules in place at Dispose, whatever --on-exit said (a successor took over: they are its now).</summary>
    public void KeepFor(string why) => _keptFor = why;

    public void Dispose()
    {
        if (_keptFor is not null)
        {
            _log.Information("ip-masq: rules kept ({Why})", _keptFor);
            return;
        }
        Remove();
        _log.Information("ip-masq: rules removed");
    }
}
