using Dataplane.Encap;
using Dataplane.Engine;
using Dataplane.TunTap;

namespace Dataplane.Fuzz;

/// <summary>The real inbound loop over one-shot edges: the input is one datagram from peer 192.0.2.2.</summary>
internal sealed class InboundHarness
{
    private static readonly MacAddress OurMac = new(0x0E_00_5E_00_00_01);
    private readonly OneShotSocket _socket = new();
    private readonly CountingDevice _device = new();
    private readonly DataplaneEngine _engine;

    public InboundHarness(BackendKind backend)
    {
        var network = new Ipv4Prefix(0x0AF4_0000, 16);
        var peer = new Peer(new Ipv4Prefix(0x0AF4_0200, 24), new UdpEndpoint(0xC000_0202, 8472), new MacAddress(0x0E_00_5E_00_00_02));
        var table = new SubnetTable(network, 24, new Ipv4Prefix(0x0AF4_0100, 24), [peer]);
        _engine = new DataplaneEngine(_device, _socket, table, new EngineSettings(backend, 1, OurMac, BatchSize: 4));
    }

    public void Run(byte[] input)
    {
        LoopCounters c = _engine.Inbound.Counters;
        long before = c.Packets, delivered = _device.Written, dropped = c.Drops.Sum(), arp = c.ArpReplies;
        _socket.Next = input;
        _engine.Inbound.RunOnce(0);
        long accounted = (_device.Written - delivered) + (c.Drops.Sum() - dropped) + (c.ArpReplies - arp);
        if (c.Packets - before != 1 || accounted != 1)
        {
            throw new InvalidOperationException($"a datagram was neither delivered nor counted: packets {c.Packets - before}, accounted {accounted}");
        }
    }

    private sealed class OneShotSocket : IDatagramSocket
    {
        public byte[]? Next { get; set; }
        public UdpEndpoint LocalEndpoint => new(0xC000_0201, 8472);

        public int ReceiveBatch(PacketBatch batch, int timeoutMs)
        {
            batch.Count = 0;
            if (Next is null)
            {
                return 0;
            }
            byte[] d = Next;
            Next = null;
            int room = batch.SlotSize - PacketBatch.Headroom;
            batch.Set(0, d.AsSpan(0, Math.Min(d.Length, room)), new UdpEndpoint(0xC000_0202, 51000));
            batch.Flags[0] = d.Length > room ? PacketBatch.FlagTruncated : 0;
            batch.Count = 1;
            return 1;
        }

        public int SendBatch(PacketBatch batch) => batch.Count;

        public void Dispose()
        {
        }
    }

    private sealed class CountingDevice : IPacketDevice
    {
        public long Written { get; private set; }
        public string Name => "fuzz0";
        public int ReadBatch(PacketBatch batch, int timeoutMs) => batch.Count = 0;

        public int WriteBatch(PacketBatch batch)
        {
            int n = 0;
            for (int i = 0; i < batch.Count; i++)
            {
                if (batch.Lengths[i] > 0)
                {
                    _ = batch.Packet(i)[0]; // touch it: offsets and lengths must be inside the slot
                    n++;
                }
            }
            Written += n;
            return n;
        }

        public void Dispose()
        {
        }
    }
}
