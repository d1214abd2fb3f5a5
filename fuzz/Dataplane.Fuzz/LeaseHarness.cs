using System.Text.Json;
using Dataplane.Encap;
using Dataplane.Engine;
using Dataplane.Leases;
using Dataplane.Leases.Kube;

namespace Dataplane.Fuzz;

/// <summary>
/// Lease parsing: the static cluster file, and config and lease values as etcd holds them. Only
/// <see cref="ConfigException"/> may come out. Then the input's <c>subnets</c> object (or the input
/// itself) as a whole store of leases beside ours (random keys and values): the table is always
/// built, and holds exactly the leases not refused, each subnet once, never ours or a local address.
/// Every lease read also makes a round trip: written as flanneld writes it (the etcd value, the
/// Node annotations and pod CIDRs) and read back, it is the same lease, and written again the
/// same bytes.
/// </summary>
internal static class LeaseHarness
{
    private static readonly NetworkConfig Network = Config(
        """{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8:244::/48","Backend":{"Type":"vxlan"}}""");

    private static readonly LeaseRecord Ours = LeaseRecord.Parse("10.244.1.0-24&2001:db8:244:1::-64",
        """{"PublicIP":"192.0.2.1","PublicIPv6":"2001:db8:2::1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:01"},"BackendV6Data":{"VNI":1,"VtepMAC":"0e:00:00:00:00:01"}}"""u8,
        "ours");

    /// <summary>This node's addresses: its public IP and 198.51.100.7.</summary>
    private static readonly HashSet<uint> Local4 = [Ours.PublicIp, 0xC6336407];

    public static void Run(byte[] input)
    {
        try
        {
            ClusterFile.Parse(input, "fuzz.json");
        }
        catch (ConfigException)
        {
        }
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(input);
        }
        catch (JsonException)
        {
            return;
        }
        using (doc)
        {
            try
            {
                NetworkConfig.Parse(doc.RootElement, "config");
            }
            catch (ConfigException)
            {
            }
            try
            {
                RoundTrip(LeaseRecord.Parse("10.244.1.0-24", doc.RootElement, "subnets/10.244.1.0-24"));
            }
            catch (ConfigException)
            {
            }
            Store(doc.RootElement);
        }
    }

    private static NetworkConfig Config(string json)
    {
        using JsonDocument doc = JsonDocument.Parse(json);
        return NetworkConfig.Parse(doc.RootElement, "config");
    }

    /// <summary>Every key and value of the store parsed as the sources do (unreadable ones named), then checked as the node checks them.</summary>
    private static void Store(JsonElement root)
    {
        JsonElement subnets = root.ValueKind == JsonValueKind.Object && root.TryGetProperty("subnets", out JsonElement s) ? s : root;
        if (subnets.ValueKind != JsonValueKind.Object)
        {
            return;
        }
        var leases = new List<LeaseRecord> { Ours };
        var unreadable = new List<(string, string)>();
        foreach (JsonProperty p in subnets.EnumerateObject())
        {
            string key;
            try
            {
                key = p.Name;
            }
            catch (InvalidOperationException)
            {
                continue; // not UTF-8: a key no store hands over (etcd's are read as UTF-8 text)
            }
            try
            {
                LeaseRecord lease = LeaseRecord.Parse(key, p.Value, $"subnets/{key}");
                RoundTrip(lease);
                leases.Add(lease);
            }
            catch (ConfigException e)
            {
                unreadable.Add((key, e.Message));
            }
        }
        var node = new NodeIdentity(Ours, Network, BackendKind.Vxlan, 8472, 1) { PublicIpv6 = Ours.PublicIpv6 };
        Check(node, new ClusterSnapshot(Network, leases) { Unreadable = unreadable });
    }

    private static void Check(NodeIdentity node, ClusterSnapshot snapshot)
    {
        SubnetTable t = node.BuildTable(snapshot, new LeaseCheck(node, Local4, new HashSet<UInt128>()), [], out List<RejectedLease> rejected);
        int ours = snapshot.Leases.Count(l => l.PublicIp == Ours.PublicIp && l.Subnet == Ours.Subnet);
        Property.Check(t.Peers.Count + rejected.Count == snapshot.Leases.Count - ours + snapshot.Unreadable.Count, "every lease is a peer, refused, or ours");
        Property.Check(t.Peers.Select(p => p.Subnet).Distinct().Count() == t.Peers.Count, "each subnet has one peer");
        foreach (Peer p in t.Peers)
        {
            Property.Check(ReferenceEquals(t.Lookup(p.Subnet.Address), p), "each peer is found by its subnet");
            Property.Check(p.Subnet != Ours.Subnet && !Local4.Contains(p.PublicIp), "no peer has our subnet or a local address");
            Property.Check(p.Ipv6Subnet is not Ipv6Prefix s6 || ReferenceEquals(t.Lookup6(s6.Address), p), "each IPv6 half is found by its subnet");
        }
    }

    private static readonly KubeAnnotations Annotations = KubeAnnotations.Create("flannel.alpha.coreos.com");

    /// <summary>The lease written as the etcd value and as Node annotations, each read back: the same lease.</summary>
    private static void RoundTrip(LeaseRecord lease)
    {
        uint vni = lease.Vni ?? 1;
        string json = lease.ToJson(vni);
        LeaseRecord again;
        try
        {
            again = LeaseRecord.Parse(lease.Key, System.Text.Encoding.UTF8.GetBytes(json), "round trip");
        }
        catch (ConfigException e)
        {
            throw new InvalidOperationException($"a lease as written does not read back: {json}: {e.Message}");
        }
        // The value holds flannel.1's data only beside an IPv4 subnet, flannel-v6.1's only beside a PublicIPv6.
        MacAddress? mac = lease.Subnet.Length != 0 ? lease.VtepMac : null, mac6 = lease.PublicIpv6 is null ? null : lease.VtepMacV6;
        Same(lease, again, lease.PublicIpv6, mac, mac6, mac is null && mac6 is null ? null : "vxlan", "the etcd value");
        Property.Check(again.ToJson(vni) == json, $"a lease written twice differs: {json}, then {again.ToJson(vni)}");
        if (lease.Subnet.Length == 0)
        {
            return; // an IPv6-only lease has no Node form: a Node's lease needs its IPv4 podCIDR
        }
        var node = new NodeJson
        {
            Metadata = new ObjectMetaJson { Name = "n", Annotations = new(KubeLeaseSource.AnnotationsOf(Annotations, lease, vni)) },
            Spec = new NodeSpecJson { PodCidrs = lease.Ipv6Subnet is Ipv6Prefix s6 ? [lease.Subnet.ToString(), s6.ToString()] : [lease.Subnet.ToString()] },
        };
        LeaseRecord? back = NodeLease.FromNode(node, Annotations, out string? skipped, ipv6: lease.Ipv6Subnet is not null);
        Property.Check(back is not null, $"a lease as Node annotations does not read back: {skipped}");
        // A Node's IPv6 half is read only beside its IPv6 podCIDR.
        UInt128? publicIpv6 = lease.Ipv6Subnet is null ? null : lease.PublicIpv6;
        Same(lease, back!, publicIpv6, lease.VtepMac, publicIpv6 is null ? null : mac6, lease.BackendType ?? "", "the Node annotations");
    }

    private static void Same(LeaseRecord lease, LeaseRecord again, UInt128? publicIpv6, MacAddress? mac, MacAddress? mac6, string? backendType, string what)
    {
        Property.Check(again.Subnet == lease.Subnet && again.Ipv6Subnet == lease.Ipv6Subnet, $"{what}: subnets {again.Key} for {lease.Key}");
        Property.Check(again.PublicIp == lease.PublicIp && again.PublicIpv6 == publicIpv6, $"{what}: public addresses of {lease.Key}");
        Property.Check(again.VtepMac == mac && again.VtepMacV6 == mac6, $"{what}: VTEP MACs of {lease.Key}");
        Property.Check(again.BackendType == backendType, $"{what}: backend type '{again.BackendType}' for '{lease.BackendType}'");
        Property.Check(mac is null || again.Vni == (lease.Vni ?? 1), $"{what}: VNI {again.Vni} for {lease.Vni}");
    }
}
