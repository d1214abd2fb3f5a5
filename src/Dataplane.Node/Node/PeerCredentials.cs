using System.Buffers.Binary;
using System.Net.Sockets;

namespace Dataplane.Node;

/// <summary>
/// Who is at the other end of a connected Unix socket, as the kernel says (SO_PEERCRED, taken when
/// the connection was made): the control socket serves root only, and a hand-over names the
/// process it deals with. The pid is 0 when that process is in a PID namespace we cannot see.
/// </summary>
internal readonly record struct PeerCredentials(int Pid, uint Uid)
{
    /// <summary>The peer of <paramref name="socket"/>, or null when the kernel does not say.</summary>
    public static PeerCredentials? Of(Socket socket)
    {
        Span<byte> ucred = stackalloc byte[12]; // struct ucred { pid_t pid; uid_t uid; gid_t gid; }
        try
        {
            int got = socket.GetRawSocketOption(Tmds.Linux.LibC.SOL_SOCKET, Tmds.Linux.LibC.SO_PEERCRED, ucred);
            return got >= 8 ? new PeerCredentials(BinaryPrimitives.ReadInt32LittleEndian(ucred), BinaryPrimitives.ReadUInt32LittleEndian(ucred[4..])) : null;
        }
        catch (SocketException)
        {
            return null;
        }
    }
}
