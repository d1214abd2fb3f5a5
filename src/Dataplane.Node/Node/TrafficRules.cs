using System.Globalization;
using System.Text;
using Dataplane.Encap;
using Dataplane.TunTap;
using Serilog;

namespace Dataplane.Node;

/// <summary>
/// The host's rules beside the device, as flanneld's traffic manager (pkg/trafficmngr) keeps them,
/// each set in a chain of its own so it is easy to find and to remove:
/// <list type="bullet">
/// <item><c>--ip-masq</c>: nat <c>FLANNEL-POSTRTG</c>, jumped to from POSTROUTING, rule for rule in
///   flanneld's order: traffic kube-proxy marked is left to kube-proxy, traffic to and from our subnet
///   inside the overlay keeps its addresses, pods leaving it and the host entering it are masqueraded
///   (<c>--random-fully</c> where iptables has it, unless <c>--ip-masq-fully-random-disable</c>);</item>
/// <item><c>--iptables-forward-rules</c> (on by default, as in flanneld): filter <c>FLANNEL-FWD</c>,
///   jumped to from FORWARD, accepting the overlay's traffic whatever the FORWARD policy is;</item>
/// <item><c>--ip-blackhole-route</c>: a blackhole route for our subnet (traffic to an address of our
///   subnet that no pod has is dropped here, not sent into the overlay).</item>
/// </list>
/// A set is applied in one <c>iptables-restore --noflush</c> transaction (the chain flushed and
/// filled, the jump moved): never a moment without the rules, also when a successor applies its
/// predecessor's again. Every <c>--iptables-resync</c> seconds a thread compares what the tables hold
/// with what was applied and puts back what someone else removed, saying so. Removed on stop, or
/// kept (<c>--on-exit keep</c>, a hand-over) for the next start. With <c>EnableNFTables</c> in the
/// network config the same rules are nftables tables (<see cref="NftRules"/>).
/// </summary>
internal sealed class TrafficRules : IDisposable
{
    public const string Masq = "FLANNEL-POSTRTG";
    public const string Fwd = "FLANNEL-FWD";
    private const string MasqComment = "flanneld masq";
    private const string FwdComment = "flanneld forward";

    /// <summary>kube-proxy's masquerade mark (its --iptables-masquerade-bit 14), as flanneld's KubeProxyMark.</summary>
    public const string KubeProxyMark = "0x4000/0x4000";

    /// <summary>What to keep on the host, from the run's flags.</summary>
    public sealed record Wanted(bool Masquerade, bool ForwardRules, bool RandomFully, bool BlackholeRoute, TimeSpan Resync, bool Keep);

    private readonly IRuleSet[] _sets;
    private readonly Ipv4Prefix? _blackhole;
    private readonly ILogger _log;
    private readonly CancellationTokenSource _stop = new();
    private readonly Thread? _resync;
    // Why the rules stay at Dispose (--on-exit keep, or a successor took over), or null: they go.
    private string? _keptFor;
    private bool _blackholeAdded;

    private TrafficRules(IRuleSet[] sets, Ipv4Prefix? blackhole, Wanted wanted, ILogger log)
    {
        _sets = sets;
        _blackhole = blackhole;
        _keptFor = wanted.Keep ? "--on-exit keep" : null;
        _log = log;
        if (sets.Length > 0 || blackhole is not null)
        {
            _resync = new Thread(() => Resync(wanted.Resync)) { Name = "traffic-rules", IsBackground = true };
        }
    }

    /// <summary>Applies what is wanted and starts the resync; null when nothing is wanted.</summary>
    public static TrafficRules? Install(Ipv4Prefix network, Ipv4Prefix subnet, bool nftables, Wanted wanted, ILogger log)
    {
        var sets = new List<IRuleSet>();
        if (wanted.Masquerade || wanted.ForwardRules)
        {
            if (nftables)
            {
                sets.AddRange(NftRules.Sets(network, subnet, wanted));
            }
            else if (ProcessRunner.Which("iptables") is string iptables)
            {
                bool random = wanted.RandomFully
                    && ProcessRunner.Run(iptables, ["-j", "MASQUERADE", "--help"]).Stdout.Contains("random-fully", StringComparison.Ordinal);
                if (wanted.Masquerade)
                {
                    sets.Add(new IptablesSet(iptables, "nat", "POSTROUTING", Masq, MasqComment, MasqRules(network, subnet, random)));
                }
                if (wanted.ForwardRules)
                {
                    sets.Add(new IptablesSet(iptables, "filter", "FORWARD", Fwd, FwdComment, ForwardRules(network)));
                }
            }
            else if (wanted.Masquerade)
            {
                throw new ConfigException("--ip-masq needs iptables (apt-get install iptables)");
            }
            else
            {
                log.Warning("iptables is not installed: no FORWARD rules for the overlay (--iptables-forward-rules); forwarded pod traffic depends on the FORWARD policy");
            }
        }
        if (sets.Count == 0 && !wanted.BlackholeRoute)
        {
            return null;
        }
        var rules = new TrafficRules([.. sets], wanted.BlackholeRoute ? subnet : null, wanted, log);
        foreach (IRuleSet set in sets)
        {
            set.Apply();
            log.Information("{Rules}", set.Description);
        }
        rules.EnsureBlackhole(first: true);
        rules._resync?.Start();
        return rules;
    }

    /// <summary>flanneld's masqRules (pkg/trafficmngr/iptables), in its order.</summary>
    private static string[][] MasqRules(Ipv4Prefix network, Ipv4Prefix subnet, bool random)
    {
        string n = network.ToString(), s = subnet.ToString();
        string[] c = ["-m", "comment", "--comment", MasqComment];
        string[] masquerade = random ? ["-j", "MASQUERADE", "--random-fully"] : ["-j", "MASQUERADE"];
        return
        [
            ["-m", "mark", "--mark", KubeProxyMark, .. c, "-j", "RETURN"],
            ["-s", s, "-d", n, .. c, "-j", "RETURN"],
            ["-s", n, "-d", s, .. c, "-j", "RETURN"],
            ["!", "-s", n, "-d", s, .. c, "-j", "RETURN"],
            ["-s", n, "!", "-d", "224.0.0.0/4", .. c, .. masquerade],
            ["!", "-s", n, "-d", n, .. c, .. masquerade],
        ];
    }

    /// <summary>flanneld's forwardRules.</summary>
    private static string[][] ForwardRules(Ipv4Prefix network)
    {
        string n = network.ToString();
        string[] c = ["-m", "comment", "--comment", FwdComment];
        return [["-s", n, .. c, "-j", "ACCEPT"], ["-d", n, .. c, "-j", "ACCEPT"]];
    }

    /// <summary>The resync: every period, each set as applied, else applied again (and said).</summary>
    private void Resync(TimeSpan period)
    {
        while (!_stop.Token.WaitHandle.WaitOne(period))
        {
            foreach (IRuleSet set in _sets)
            {
                try
                {
                    if (set.Missing() is string missing)
                    {
                        set.Apply();
                        _log.Warning("{Set}: {Missing}: put back (--iptables-resync)", set.Name, missing);
                    }
                }
                catch (Exception e) when (e is ConfigException or InvalidOperationException or TimeoutException)
                {
                    _log.Warning("{Set}: could not check or put back the rules: {Error}", set.Name, e.Message);
                }
            }
            EnsureBlackhole(first: false);
        }
    }

    /// <summary>
    /// <c>ip route add blackhole SUBNET</c> when there is no route for our subnet (flanneld adds it the
    /// same way, again every resync period); a route for it already there (a CNI bridge's) is left alone.
    /// </summary>
    private void EnsureBlackhole(bool first)
    {
        if (_blackhole is not Ipv4Prefix subnet)
        {
            return;
        }
        try
        {
            using RouteNetlink netlink = RouteNetlink.Open();
            if (netlink.AddBlackholeRoute(subnet, $"blackhole route {subnet}"))
            {
                _blackholeAdded = true;
                if (first)
                {
                    _log.Information("Blackhole route {Subnet} (--ip-blackhole-route)", subnet);
                }
                else
                {
                    _log.Warning("Blackhole route {Subnet}: was missing, put back (--iptables-resync)", subnet);
                }
            }
            else if (first)
            {
                _log.Information("Blackhole route {Subnet}: a route for the subnet is already there (a CNI bridge's); added when it goes", subnet);
            }
        }
        catch (NativeException e)
        {
            _log.Warning("Blackhole route {Subnet}: {Error}", subnet, e.Message);
        }
    }

    /// <summary>Leaves the rules in place at Dispose, whatever --on-exit said (a successor took over: they are its now).</summary>
    public void KeepFor(string why) => _keptFor = why;

    public void Dispose()
    {
        _stop.Cancel();
        _resync?.Join(5000);
        if (_keptFor is not null)
        {
            _log.Information("Host rules kept ({Why})", _keptFor);
            return;
        }
        foreach (IRuleSet set in _sets)
        {
            set.Remove();
        }
        if (_blackhole is Ipv4Prefix subnet && _blackholeAdded)
        {
            try
            {
                using RouteNetlink netlink = RouteNetlink.Open();
                netlink.DeleteBlackholeRoute(subnet, $"blackhole route {subnet}");
            }
            catch (NativeException e)
            {
                _log.Warning("Blackhole route {Subnet}: {Error}", subnet, e.Message);
            }
        }
        if (_sets.Length > 0 || _blackholeAdded)
        {
            _log.Information("Host rules removed");
        }
        _stop.Dispose();
    }

    /// <summary>Deletes our iptables jumps and chains; what is not there is skipped. Returns what was there ("nat FLANNEL-POSTRTG").</summary>
    public static IReadOnlyList<string> RemoveChains(string iptables)
    {
        var removed = new List<string>();
        foreach ((string table, string parent, string chain, string comment) in new[] { ("nat", "POSTROUTING", Masq, MasqComment), ("filter", "FORWARD", Fwd, FwdComment) })
        {
            if (IptablesSet.RemoveChain(iptables, table, parent, chain, comment))
            {
                removed.Add($"{table} {chain}");
            }
        }
        return removed;
    }

    /// <summary>Removes the masquerade rules a predecessor installed (a successor started without --ip-masq), saying why.</summary>
    public static void RemoveMasqueradeLeftBy(string predecessor, ILogger log)
    {
        if (ProcessRunner.Which("iptables") is string iptables && IptablesSet.RemoveChain(iptables, "nat", "POSTROUTING", Masq, MasqComment))
        {
            log.Information("ip-masq: rules of {Predecessor} removed (this node runs without --ip-masq)", predecessor);
        }
    }

    /// <summary>One set of rules: applied at once, checked against what was applied, removed.</summary>
    internal interface IRuleSet
    {
        string Name { get; }

        void Apply();

        /// <summary>Null when the tables hold the set as applied; else what differs, in a few words.</summary>
        string? Missing();

        void Remove();

        /// <summary>What the set is, for the log ("ip-masq: masquerade rules in nat FLANNEL-POSTRTG (--random-fully)").</summary>
        string Description { get; }
    }

    /// <summary>
    /// A chain of ours and the jump into it from a built-in chain, in one table, through iptables:
    /// applied with <c>iptables-restore --noflush</c>, read back with <c>iptables-save</c>.
    /// </summary>
    private sealed class IptablesSet(string iptables, string table, string parent, string chain, string comment, string[][] rules) : IRuleSet
    {
        private string[] _applied = [];

        public string Name => $"iptables {table} {chain}";

        private string Jump => $"-A {parent} -m comment --comment \"{comment}\" -j {chain}";

        public string Description => chain == Masq
            ? $"ip-masq: masquerade rules in nat {Masq}{(rules.Any(r => r.Contains("--random-fully")) ? " (--random-fully)" : "")}"
            : $"Forward rules in filter {Fwd} (--iptables-forward-rules)";

        public void Apply()
        {
            var restore = new StringBuilder();
            restore.Append(CultureInfo.InvariantCulture, $"*{table}\n:{chain} - [0:0]\n");
            int jumps = Ours(Save()).Count(l => l == Jump);
            for (int i = 0; i < jumps; i++)
            {
                restore.Append(CultureInfo.InvariantCulture, $"-D{Jump[2..]}\n");
            }
            restore.Append(Jump).Append('\n');
            foreach (string[] rule in rules)
            {
                restore.Append(CultureInfo.InvariantCulture, $"-A {chain} {string.Join(' ', rule.Select(Quote))}\n");
            }
            restore.Append("COMMIT\n");
            ProcessRunner.Result r = ProcessRunner.Run(RestoreCommand(), ["-w", "5", "--noflush"], stdin: restore.ToString());
            if (r.ExitCode != 0)
            {
                throw new ConfigException($"{Name}: iptables-restore: {r.Stderr.Trim()}");
            }
            _applied = [.. Ours(Save())];
        }

        public string? Missing()
        {
            string[] now = [.. Ours(Save())];
            if (now.SequenceEqual(_applied))
            {
                return null;
            }
            string[] rulesApplied = [.. _applied.Where(l => l.StartsWith("-A", StringComparison.Ordinal))];
            int gone = rulesApplied.Except(now).Count();
            return now.Length == 0 ? "the chain and its jump are gone"
                : gone == 0 ? "the rules are out of order or others came between them"
                : $"{gone} of {rulesApplied.Length} rules gone or changed";
        }

        public void Remove() => RemoveChain(iptables, table, parent, chain, comment);

        /// <summary>The lines of our chain and our jump into it, as iptables-save prints them (without counters).</summary>
        private IEnumerable<string> Ours(string save) =>
            save.Split('\n').Select(l => l.Trim())
                .Where(l => l.StartsWith($"-A {chain} ", StringComparison.Ordinal) || l == Jump || l.StartsWith($":{chain} ", StringComparison.Ordinal))
                .Select(l => l.StartsWith(':') ? $":{chain}" : l);

        private string Save()
        {
            ProcessRunner.Result r = ProcessRunner.Run(SaveCommand(), ["-t", table]);
            return r.ExitCode == 0 ? r.Stdout : throw new ConfigException($"{Name}: iptables-save: {r.Stderr.Trim()}");
        }

        private string RestoreCommand() => Sibling("-restore");

        private string SaveCommand() => Sibling("-save");

        /// <summary>iptables-save and iptables-restore of the same flavour (legacy or nft) as the iptables found.</summary>
        private string Sibling(string suffix)
        {
            string path = iptables + suffix;
            return File.Exists(path) ? path : ProcessRunner.Which("iptables" + suffix) ?? throw new ConfigException($"iptables{suffix} is missing (apt-get install iptables)");
        }

        private static string Quote(string word) => word.Contains(' ', StringComparison.Ordinal) ? $"\"{word}\"" : word;

        public static bool RemoveChain(string iptables, string table, string parent, string chain, string comment)
        {
            bool present = ProcessRunner.Run(iptables, ["-w", "5", "-t", table, "-S", chain]).ExitCode == 0;
            while (ProcessRunner.Run(iptables, ["-w", "5", "-t", table, "-D", parent, "-m", "comment", "--comment", comment, "-j", chain]).ExitCode == 0)
            {
                present = true;
            }
            ProcessRunner.Run(iptables, ["-w", "5", "-t", table, "-F", chain]);
            ProcessRunner.Run(iptables, ["-w", "5", "-t", table, "-X", chain]);
            return present;
        }
    }
}
