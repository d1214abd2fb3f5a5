using Dataplane.Engine;
using Dataplane.TunTap;

namespace Dataplane.Node;

/// <summary>
/// A test seam behind the hidden <c>run --inject-fault outbound|inbound</c> flag: the named loop's
/// edge throws on the first batch that carries an IPv4 packet (outbound; the kernel's own IPv6
/// chatter on a new device does not count) or any datagram (inbound), as a bug in the loop would. Tests use it
/// to prove that an unexpected exception is logged once with its stack and stops the node through
/// the same clean-up path as SIGTERM (route, device, iptables rules removed), with status 1.
/// Without the flag the edges are used as they are: nothing is wrapped.
/// </summary>
internal static class FaultInjection
{
    public enum Loop
    {
        None,
        Outbound,
        Inbound,
    }

    public static EngineQueue Wrap(Loop loop, EngineQueue queue) => loop switch
    {
        Loop.Outbound => queue with { Device = new ThrowingDevice(queue.Device) },
        Loop.Inbound => queue with { Receiver = new ThrowingUnderlay(queue.Receiver) },
        _ => queue,
    };

    private static InvalidOperationException Fault(string loop) =>
        new($"injected fault in the {loop} loop (run --inject-fault {loop})");

    private sealed class ThrowingDevice(IPacketDevice inner) : IPacketDevice
    {
        public string Name => inner.Name;
        public bool Gone => inner.Gone;
        public Readiness WaitReadable(int timeoutMs) => inner.WaitReadable(timeoutMs);
        public string Offloads => inner.Offloads;
        public DeviceCounters Counters => inner.Counters;
        public int ReadBatch(PacketBatch batch, int timeoutMs)
        {
            int n = inner.ReadBatch(batch, timeoutMs);
            for (int i = 0; i < n; i++)
            {
                if (batch.Lengths[i] > 0 && batch.Packet(i)[0] >> 4 == 4)
                {
                    throw Fault("outbound");
                }
            }
            return n;
        }
        public int WriteBatch(PacketBatch batch) => inner.WriteBatch(batch);
        public void StopWaiting() => inner.StopWaiting();

        public void ResumeWaiting() => inner.ResumeWaiting();
        public void Dispose() => inner.Dispose();
    }

    private sealed class ThrowingUnderlay(IUnderlay inner) : IUnderlay
    {
        public UdpEndpoint LocalEndpointOf(bool ipv6) => inner.LocalEndpointOf(ipv6);
        public int ReceiveBatch(PacketBatch batch, int timeoutMs) => inner.ReceiveBatch(batch, timeoutMs) > 0 ? throw Fault("inbound") : 0;
        public int SendBatch(PacketBatch batch) => inner.SendBatch(batch);
        public void StopWaiting() => inner.StopWaiting();

        public void ResumeWaiting() => inner.ResumeWaiting();
        public void Dispose() => inner.Dispose();
    }
}
