using System.Text.Json;

namespace Dataplane.Leases.Kube;

/// <summary>
/// The lines of a stream as UTF-8 bytes, for a watch's one-event-a-line body: each line is handed
/// out as a slice of one growing buffer, valid until the next call (no text decoded, no string per
/// event). Empty lines are skipped; a line longer than <see cref="MaxLine"/> is an error. Reads are
/// synchronous, on the caller's thread: an async read completes on a thread-pool thread, and waking
/// one for every event of a busy watch (a cluster's heartbeats) cost ten times the parsing. The
/// caller ends a read by disposing the stream's response when its token is cancelled.
/// </summary>
internal sealed class JsonLines(Stream stream)
{
    /// <summary>The longest line read (a Node object is tens of KB; this is far beyond any).</summary>
    public const int MaxLine = 16 << 20;

    private byte[] _buffer = new byte[64 * 1024];
    private int _start; // first byte not handed out
    private int _scanned; // bytes from _start known to hold no newline
    private int _end; // end of the bytes read

    /// <summary>The next line, or null at the end of the stream.</summary>
    public ReadOnlyMemory<byte>? Next(CancellationToken token)
    {
        while (true)
        {
            int found = _buffer.AsSpan(_start + _scanned, _end - _start - _scanned).IndexOf((byte)'\n');
            if (found >= 0)
            {
                int length = _scanned + found;
                ReadOnlyMemory<byte> line = _buffer.AsMemory(_start, length > 0 && _buffer[_start + length - 1] == '\r' ? length - 1 : length);
                _start += length + 1;
                _scanned = 0;
                if (line.Length == 0)
                {
                    continue;
                }
                return line;
            }
            _scanned = _end - _start;
            if (_start > 0)
            {
                Buffer.BlockCopy(_buffer, _start, _buffer, 0, _end - _start);
                _end -= _start;
                _start = 0;
            }
            if (_end == _buffer.Length)
            {
                if (_buffer.Length >= MaxLine)
                {
                    throw new JsonException($"a watch event longer than {MaxLine} bytes");
                }
                Array.Resize(ref _buffer, _buffer.Length * 2);
            }
            int n;
            try
            {
                n = stream.Read(_buffer.AsSpan(_end));
            }
            catch (Exception e) when (e is ObjectDisposedException or IOException && token.IsCancellationRequested)
            {
                throw new OperationCanceledException("the watch was ended", e, token);
            }
            if (n == 0)
            {
                if (_end == _start)
                {
                    return null;
                }
                ReadOnlyMemory<byte> last = _buffer.AsMemory(_start, _end - _start); // the last line, without its newline
                _start = _end;
                _scanned = 0;
                return last;
            }
            _end += n;
        }
    }
}
