using System.Text;
using Dataplane.Encap;

namespace Dataplane.Node;

/// <summary>
/// flanneld's rules in nftables, for a network config with <c>"EnableNFTables": true</c>
/// (pkg/trafficmngr/nftables, taken rule for rule): the table <c>ip flannel-ipv4</c> with the chain
/// <c>postrtg</c> (nat, hook postrouting, priority srcnat) for <c>--ip-masq</c> and the chain
/// <c>forward</c> (filter, hook forward, priority filter) for <c>--iptables-forward-rules</c>. Each
/// chain is written in one <c>nft -f</c> transaction (added, flushed, filled), read back with
/// <c>nft list chain</c> for the resync, and deleted on stop (the table with the last of them).
/// </summary>
internal static class NftRules
{
    public const string Table = "flannel-ipv4";

    public static IEnumerable<TrafficRules.IRuleSet> Sets(Ipv4Prefix network, Ipv4Prefix subnet, TrafficRules.Wanted wanted)
    {
        string nft = ProcessRunner.Which("nft") ?? throw new ConfigException("EnableNFTables in the network config needs nft (apt-get install nftables)");
        string n = network.ToString(), s = subnet.ToString();
        string masquerade = wanted.RandomFully ? "masquerade fully-random" : "masquerade";
        var sets = new List<NftChain>();
        if (wanted.Masquerade)
        {
            sets.Add(new NftChain(nft, "postrtg", "type nat hook postrouting priority srcnat", "chain to manage traffic masquerading by flannel",
            [
                "meta mark 0x4000 return",
                $"ip saddr {s} ip daddr {n} return",
                $"ip saddr {n} ip daddr {s} return",
                $"ip saddr != {s} ip daddr {n} return",
                $"ip saddr {n} ip daddr != 224.0.0.0/4 {masquerade}",
                $"ip saddr != {n} ip daddr {n} {masquerade}",
            ], $"ip-masq: masquerade rules in nftables ip {Table} postrtg{(wanted.RandomFully ? " (fully-random)" : "")}"));
        }
        if (wanted.ForwardRules)
        {
            sets.Add(new NftChain(nft, "forward", "type filter hook forward priority filter", "chain to accept flannel traffic",
                [$"ip saddr {n} accept", $"ip daddr {n} accept"], $"Forward rules in nftables ip {Table} forward (--iptables-forward-rules)"));
        }
        return sets;
    }

    /// <summary>Deletes our table and everything in it; true when it was there.</summary>
    public static bool RemoveTable(string nft) => ProcessRunner.Run(nft, ["delete", "table", "ip", Table]).ExitCode == 0;

    private sealed class NftChain(string nft, string chain, string hook, string comment, string[] rules, string description) : TrafficRules.IRuleSet
    {
        private string _applied = "";

        public string Name => $"nftables ip {Table} {chain}";

        public string Description => description;

        public void Apply()
        {
            var script = new StringBuilder();
            script.Append($"add table ip {Table} {{ comment \"rules for {Table}\" ; }}\n");
            script.Append($"add chain ip {Table} {chain} {{ {hook} ; comment \"{comment}\" ; }}\n");
            script.Append($"flush chain ip {Table} {chain}\n");
            foreach (string rule in rules)
            {
                script.Append($"add rule ip {Table} {chain} {rule}\n");
            }
            ProcessRunner.Result r = ProcessRunner.Run(nft, ["-f", "-"], stdin: script.ToString());
            if (r.ExitCode != 0)
            {
                throw new ConfigException($"{Name}: nft -f: {r.Stderr.Trim()}");
            }
            _applied = List();
        }

        public string? Missing()
        {
            string now = List();
            return now == _applied ? null : now.Length == 0 ? "the chain is gone" : "its rules changed";
        }

        public void Remove()
        {
            ProcessRunner.Run(nft, ["delete", "chain", "ip", Table, chain]);
            if (!ProcessRunner.Run(nft, ["list", "table", "ip", Table]).Stdout.Contains("chain ", StringComparison.Ordinal))
            {
                RemoveTable(nft);
            }
        }

        private string List()
        {
            ProcessRunner.Result r = ProcessRunner.Run(nft, ["list", "chain", "ip", Table, chain]);
            return r.ExitCode == 0 ? r.Stdout : "";
        }
    }
}
