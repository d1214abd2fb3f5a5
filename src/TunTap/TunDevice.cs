using System.Runtime.InteropServices;
using System.Text;
using Dataplane.TunTap.Native;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace Dataplane.TunTap;

/// <summary>
/// A Linux TUN device (<c>IFF_TUN|IFF_NO_PI</c>): each read returns one IP packet the host routed
/// into the device, each write injects one IP packet into the host stack as if it arrived on the
/// device. The device is not persistent: closing the descriptor deletes it, with its addresses and
/// routes, which is how a stopped or killed node leaves nothing behind.
///
/// Reads are batch-shaped: wait in poll() with a timeout (so the loop can notice a stop), then read
/// until EAGAIN or the batch is full.
/// </summary>
public sealed unsafe class TunDevice : IPacketDevice
{
    public const string ClonePath = "/dev/net/tun";

    private int _fd;

    private TunDevice(int fd, string name)
    {
        _fd = fd;
        Name = name;
    }

    public string Name { get; }

    /// <summary>Read errors other than EAGAIN since open (for example the device was deleted: EBADFD/EIO).</summary>
    public long ReadErrors { get; private set; }
    public int LastReadErrno { get; private set; }

    /// <summary>Creates (or attaches to) the TUN device <paramref name="name"/>. Throws <see cref="NativeException"/> with what failed.</summary>
    public static TunDevice Open(string name)
    {
        if (Encoding.UTF8.GetByteCount(name) is 0 or >= ifreq.IFNAMSIZ)
        {
            throw new ArgumentException($"device name '{name}' must be 1 to {ifreq.IFNAMSIZ - 1} bytes");
        }
        if (!File.Exists(ClonePath))
        {
            throw new NativeException($"open {ClonePath}", Errno.ENOENT);
        }
        byte[] path = Encoding.ASCII.GetBytes(ClonePath + "\0");
        int fd;
        fixed (byte* p = path)
        {
            fd = open(p, O_RDWR | O_NONBLOCK | O_CLOEXEC, 0);
        }
        if (fd < 0)
        {
            throw new NativeException($"open {ClonePath}", errno);
        }
        ifreq req = default;
        byte[] nameBytes = Encoding.UTF8.GetBytes(name);
        for (int i = 0; i < nameBytes.Length; i++)
        {
            req.ifr_name[i] = nameBytes[i];
        }
        req.ifr_flags = NativeMethods.IFF_TUN | NativeMethods.IFF_NO_PI;
        if (NativeMethods.ioctl_ifreq(fd, NativeMethods.TUNSETIFF, &req) < 0)
        {
            int err = Marshal.GetLastPInvokeError();
            close(fd);
            throw new NativeException($"TUNSETIFF {name}", err);
        }
        return new TunDevice(fd, name);
    }

    public int ReadBatch(PacketBatch batch, int timeoutMs)
    {
        batch.Count = 0;
        int fd = _fd;
        if (fd < 0)
        {
            return 0;
        }
        pollfd pfd = new() { fd = fd, events = POLLIN };
        int ready = poll(&pfd, 1, timeoutMs);
        if (ready <= 0)
        {
            return 0;
        }
        int revents = (ushort)pfd.revents;
        const int failure = 0x008 | 0x010 | 0x020; // POLLERR | POLLHUP | POLLNVAL
        if ((revents & failure) != 0 && (revents & 0x001) == 0)
        {
            ReadErrors++;
            LastReadErrno = Errno.EIO;
            Thread.Sleep(Math.Min(timeoutMs, 100)); // the device is gone; do not spin
            return 0;
        }
        int n = 0;
        int room = batch.SlotSize - PacketBatch.Headroom;
        while (n < batch.Capacity)
        {
            byte* slot = batch.SlotPointer(n) + PacketBatch.Headroom;
            long got = read(fd, slot, room);
            if (got < 0)
            {
                int err = errno;
                if (err != Errno.EAGAIN && err != Errno.EINTR)
                {
                    ReadErrors++;
                    LastReadErrno = err;
                }
                break;
            }
            batch.Offsets[n] = PacketBatch.Headroom;
            batch.Lengths[n] = (int)got;
            batch.Flags[n] = 0;
            n++;
        }
        batch.Count = n;
        return n;
    }

    public int WriteBatch(PacketBatch batch)
    {
        int written = 0;
        int fd = _fd;
        for (int i = 0; i < batch.Count; i++)
        {
            int len = batch.Lengths[i];
            if (len == 0)
            {
                continue;
            }
            if (write(fd, batch.SlotPointer(i) + batch.Offsets[i], len) == len)
            {
                written++;
            }
        }
        return written;
    }

    /// <summary>Writes one packet (an ICMP error, an ARP-less reply). Returns false if the device refused it.</summary>
    public bool Write(ReadOnlySpan<byte> packet)
    {
        fixed (byte* p = packet)
        {
            return write(_fd, p, packet.Length) == packet.Length;
        }
    }

    public void Dispose()
    {
        int fd = Interlocked.Exchange(ref _fd, -1);
        if (fd >= 0)
        {
            close(fd);
        }
    }
}
