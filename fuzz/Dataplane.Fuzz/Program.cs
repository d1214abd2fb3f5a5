using Dataplane.Engine;
using SharpFuzz;

namespace Dataplane.Fuzz;

/// <summary>
/// AFL++ harnesses (SharpFuzz, out of process, persistent). One target per run:
///   inbound-vxlan, inbound-udp  a datagram from a peer through the real inbound loop;
///   inbound6-vxlan, inbound6-udp the same on a dual-stack node, from either of the peer's
///                               addresses (IPv6 inner packets, Neighbor Solicitations);
///   nd                          Neighbor Solicitation reading and the advertisement written for it;
///   ip                          the IPv4/IPv6 views, ICMP error rules and builders, the TSO
///                               segmenter and the TCP coalescer on the same bytes;
///   leases                      the static cluster file, and flannel's config and lease values
///                               as etcd holds them;
///   frame                       the packet source's frame reader (virtio header, Ethernet, packet);
///   checksum                    unfinished checksums: completed, flagged for the kernel, coalesced;
///   coalesce                    a batch of packets of a few flows through the TCP/UDP coalescer:
///                               every payload byte out once, in order, in superpackets the kernel takes;
///   outbound                    a batch of packets from the device through the real outbound loop.
/// Any exception is a crash; so is a broken invariant (every packet delivered or counted).
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        if (args.Length != 1)
        {
            Console.Error.WriteLine("usage: Dataplane.Fuzz inbound-vxlan|inbound-udp|inbound6-vxlan|inbound6-udp|nd|ip|leases|frame|checksum|coalesce|outbound  (reads one input per run from AFL)");
            return 2;
        }
        string target = args[0];
        if (target is not ("inbound-vxlan" or "inbound-udp" or "inbound6-vxlan" or "inbound6-udp" or "nd" or "ip" or "leases" or "frame" or "checksum" or "coalesce" or "outbound"))
        {
            Console.Error.WriteLine($"unknown target {target}");
            return 2;
        }
        // Instrumented code may only run inside Run, once SharpFuzz has mapped AFL's coverage
        // memory: the harness is built on the first input, not before.
        Action<byte[]>? body = null;
        Fuzzer.OutOfProcess.Run(stream =>
        {
            body ??= target switch
            {
                "inbound-vxlan" => new InboundHarness(BackendKind.Vxlan).Run,
                "inbound-udp" => new InboundHarness(BackendKind.Udp).Run,
                "inbound6-vxlan" => new InboundHarness(BackendKind.Vxlan, dualStack: true).Run,
                "inbound6-udp" => new InboundHarness(BackendKind.Udp, dualStack: true).Run,
                "nd" => NeighborDiscoveryHarness.Run,
                "ip" => IpHarness.Run,
                "frame" => FrameHarness.Run,
                "checksum" => ChecksumHarness.Run,
                "coalesce" => CoalesceHarness.Run,
                "outbound" => new OutboundHarness().Run,
                _ => LeaseHarness.Run,
            };
            using var ms = new MemoryStream();
            stream.CopyTo(ms);
            body(ms.ToArray());
        });
        return 0;
    }
}
