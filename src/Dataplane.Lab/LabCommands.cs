using System.CommandLine;
using System.Globalization;
using System.Net;
using Dataplane.Lab.Bench;
using Dataplane.Lab.Demo;
using Dataplane.Lab.PodTools;

namespace Dataplane.Lab;

/// <summary>
/// The lab's commands: <c>demo</c>, <c>bench</c>, and the hidden pod tools the demo, the bench and
/// the integration tests start inside network namespaces (<c>pod-sink</c>, <c>pod-send</c>,
/// <c>pod-ping</c>, <c>pod-udp-send</c>, <c>pod-udp-sink</c>, <c>flood</c>). The program adds them beside the node's own commands.
/// </summary>
internal static class LabCommands
{
    public static IEnumerable<Command> All() =>
        [DemoCommandLine(), BenchCommandLine(), FootprintCommandLine(), PodSink(), PodSend(), PodPing(), PodUdpSend(), PodUdpSink(), Flood()];

    private static Command DemoCommandLine()
    {
        var seconds = new Option<double>("--seconds") { Description = "length of each TCP transfer", DefaultValueFactory = _ => 5 };
        var cmd = new Command("demo", "two nodes and two pods in network namespaces: ping and TCP over both backends") { seconds };
        cmd.SetAction(r => DemoCommand.Run(r.GetValue(seconds), Console.Out));
        return cmd;
    }

    private static Command BenchCommandLine()
    {
        var seconds = new Option<double>("--seconds") { Description = "length of each TCP test, whole seconds", DefaultValueFactory = _ => 10 };
        var udpSeconds = new Option<double>("--udp-seconds") { Description = "length of each 64-byte UDP probe, whole seconds", DefaultValueFactory = _ => 3 };
        foreach (Option<double> o in new[] { seconds, udpSeconds })
        {
            // iperf3 reads -t as a whole number: 0.5 would be 0, which it takes as "no limit".
            o.Validators.Add(r =>
            {
                double v = r.GetValueOrDefault<double>();
                if (v < 1 || v > 3600 || v != Math.Floor(v))
                {
                    r.AddError($"{o.Name} {v.ToString(System.Globalization.CultureInfo.InvariantCulture)}: must be a whole number of seconds, 1 to 3600");
                }
            });
        }
        var only = new Option<string?>("--only")
        {
            Description = "comma-separated configurations (host-gw, dataplane-vxlan, dataplane-udp, packet-vxlan, packet-udp, naive-udp; " +
            "and, only when named, vxlan-assist-off, udp-assist-off); kernel-vxlan always runs"
        };
        var rounds = new Option<int>("--rounds") { Description = "measure every configuration this many times, alternating; report medians", DefaultValueFactory = _ => 1 };
        var output = new Option<string>("--out") { Description = "folder for the JSON and SVG results", DefaultValueFactory = _ => "bench/results" };
        var queues = new Option<int>("--queues") { Description = "queues per node for this data plane (default: the number of cores)", DefaultValueFactory = _ => Environment.ProcessorCount };
        var cmd = new Command("bench", "compare this data plane with kernel VXLAN, host-gw and the naive mode in namespaces") { seconds, udpSeconds, only, rounds, queues, output };
        cmd.SetAction(r => BenchCommand.Run(r.GetValue(seconds), r.GetValue(udpSeconds), r.GetValue(only),
            Math.Max(1, r.GetValue(rounds)), Math.Max(1, r.GetValue(queues)), r.GetValue(output)!, Console.Out));
        return cmd;
    }

    private static Command FootprintCommandLine()
    {
        var starts = new Option<int>("--starts") { Description = "times node 1 is started to time its first forwarded packet", DefaultValueFactory = _ => 5 };
        var peers = new Option<int>("--peers") { Description = "leases in etcd for the memory figures", DefaultValueFactory = _ => 5000 };
        var rounds = new Option<int>("--rounds") { Description = "rounds of 1,000 lease changes", DefaultValueFactory = _ => 5 };
        var cmd = new Command("footprint", "the node's start time (to its first forwarded packet) and memory with many peers in etcd, in namespaces") { starts, peers, rounds };
        cmd.SetAction(r => FootprintCommand.Run(Math.Max(1, r.GetValue(starts)), Math.Clamp(r.GetValue(peers), 1, 8000), Math.Max(0, r.GetValue(rounds)), Console.Out));
        return cmd;
    }

    private static Command PodSink()
    {
        var port = new Option<int>("--port") { DefaultValueFactory = _ => 5201 };
        var timeout = new Option<int>("--timeout") { DefaultValueFactory = _ => 60 };
        var cmd = new Command("pod-sink", "receive one TCP stream, print its size and SHA-256") { port, timeout };
        cmd.Hidden = true;
        cmd.SetAction(r => PodTraffic.Sink(r.GetValue(port), r.GetValue(timeout), Console.Out));
        return cmd;
    }

    private static Command PodSend()
    {
        var to = new Option<string>("--to") { Required = true };
        var bytes = new Option<long?>("--bytes");
        var seconds = new Option<double?>("--seconds");
        var cmd = new Command("pod-send", "send a seeded TCP stream, print its size, rate and SHA-256") { to, bytes, seconds };
        cmd.Hidden = true;
        cmd.SetAction(r =>
        {
            string target = r.GetValue(to)!;
            int colon = target.LastIndexOf(':');
            return PodTraffic.Send(target[..colon].Trim('[', ']'), int.Parse(target[(colon + 1)..], CultureInfo.InvariantCulture),
                r.GetValue(bytes), r.GetValue(seconds) ?? (r.GetValue(bytes) is null ? 5 : null), Console.Out);
        });
        return cmd;
    }

    private static Command PodUdpSend()
    {
        var to = new Option<string>("--to") { Required = true };
        var count = new Option<int>("--count") { DefaultValueFactory = _ => 5000 };
        var interval = new Option<double>("--interval-ms") { DefaultValueFactory = _ => 1 };
        var cmd = new Command("pod-udp-send", "send numbered 64-byte UDP datagrams, one every --interval-ms") { to, count, interval };
        cmd.Hidden = true;
        cmd.SetAction(r => NumberedDatagrams.Send(IPEndPoint.Parse(r.GetValue(to)!), r.GetValue(count), r.GetValue(interval), Console.Out));
        return cmd;
    }

    private static Command PodUdpSink()
    {
        var port = new Option<int>("--port") { DefaultValueFactory = _ => 5401 };
        var count = new Option<int>("--count") { DefaultValueFactory = _ => 5000 };
        var idle = new Option<double>("--idle-seconds") { DefaultValueFactory = _ => 3 };
        var cmd = new Command("pod-udp-sink", "count numbered UDP datagrams: received, lost, reordered, the longest gap") { port, count, idle };
        cmd.Hidden = true;
        cmd.SetAction(r => NumberedDatagrams.Sink(r.GetValue(port), r.GetValue(count), r.GetValue(idle), Console.Out));
        return cmd;
    }

    private static Command PodPing()
    {
        var host = new Argument<string>("host");
        var count = new Option<int>("--count") { DefaultValueFactory = _ => 5 };
        var cmd = new Command("pod-ping", "ICMP echo") { host, count };
        cmd.Hidden = true;
        cmd.SetAction(r => PodTraffic.Ping(r.GetValue(host)!, r.GetValue(count), Console.Out));
        return cmd;
    }

    private static Command Flood()
    {
        var from = new Option<string>("--from") { Required = true };
        var to = new Option<string>("--to") { Required = true };
        var count = new Option<int>("--count") { DefaultValueFactory = _ => 300_000 };
        var seconds = new Option<double>("--seconds") { DefaultValueFactory = _ => 10 };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 1 };
        var arp = new Option<string?>("--arp-request") { Description = "send only valid VXLAN ARP requests instead: SENDER_IP,SENDER_MAC,TARGET_IP (VNI 1)" };
        var flows = new Option<int>("--flows") { Description = "sockets (source ports) to send from, in turn", DefaultValueFactory = _ => 1 };
        var cmd = new Command("flood", "random datagrams to a node, bounded in count and time (fault tests)") { from, to, count, seconds, seed, arp, flows };
        cmd.Hidden = true;
        cmd.SetAction(r => GarbageFlood.Run(r.GetValue(from)!, r.GetValue(to)!, r.GetValue(count), r.GetValue(seconds), r.GetValue(seed), r.GetValue(arp), Console.Out, r.GetValue(flows)));
        return cmd;
    }
}
