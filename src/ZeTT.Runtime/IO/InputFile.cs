using System.Runtime.InteropServices;
using System.Text;

namespace ZeTT.Runtime.IO;

/// <summary>What a path is, after following symbolic links.</summary>
public enum PathKind
{
    /// <summary>Nothing is there (or a dangling link).</summary>
    Missing,

    /// <summary>A regular file.</summary>
    RegularFile,

    /// <summary>A directory.</summary>
    Directory,

    /// <summary>A FIFO, socket, or character or block device.</summary>
    Special,

    /// <summary>A cycle of symbolic links.</summary>
    SymlinkLoop,
}

/// <summary>
/// Bounded reads of every input file: a path must be a regular file (a FIFO would block
/// forever, /dev/zero would grow without end, a directory is not a file), no larger than the
/// cap given for its kind, and a symlink loop is named as one. Errors are one
/// <see cref="ZettException"/> naming the file.
/// </summary>
public static partial class InputFile
{
    /// <summary>Cap on small JSON files (config.json, tokenizer_config.json, hypernetwork
    /// configs): the largest real ones are a few KiB.</summary>
    public const long ConfigJsonLimit = 64L << 20;

    /// <summary>Cap on tokenizer.json: the largest real ones (256k vocabularies with merges)
    /// are about 40 MiB.</summary>
    public const long TokenizerJsonLimit = 1L << 30;

    /// <summary>Cap on a token list: ten million 100-byte tokens.</summary>
    public const long TokenListLimit = 1L << 30;

    /// <summary>Cap on a text document read whole (a .txt given to eval, tokenize or
    /// transfer's evaluation; one line of a .jsonl): one .NET string holds at most 2^30
    /// characters.</summary>
    public const long TextDocumentLimit = 1L << 30;

    /// <summary>Cap on one line of a JSON lines file (a document of eval or training text, an
    /// id list): 64 MiB, about ten long books; a 2 GiB line of zeros is refused in a fraction
    /// of a second instead of being buffered.</summary>
    public const long JsonLineLimit = 64L << 20;

    /// <summary>Opens a regular file for streaming reads (a JSONL or Parquet corpus of any
    /// size); errors name the file.</summary>
    public static FileStream OpenRead(string path, string what = "file")
    {
        RequireRegularFile(path, what);
        try
        {
            return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ZettException($"{path}: cannot read: {e.Message}", e);
        }
    }

    /// <summary>The lines of a regular UTF-8 text file, read lazily and decoded strictly (an
    /// invalid byte is an error naming the file and line, not U+FFFD); a line may hold at most
    /// <see cref="JsonLineLimit"/> characters.</summary>
    public static IEnumerable<(long Line, string Text)> ReadLines(string path, string what = "file")
    {
        FileStream stream = OpenRead(path, what);
        return Lines(path, stream);
    }

    private static IEnumerable<(long, string)> Lines(string path, FileStream stream)
    {
        using var reader = new StreamReader(stream, StrictUtf8, detectEncodingFromByteOrderMarks: false);
        var line = new StringBuilder();
        long number = 0;
        bool first = true;
        while (true)
        {
            line.Clear();
            int c;
            try
            {
                while ((c = reader.Read()) >= 0 && c != '\n')
                {
                    if (line.Length >= JsonLineLimit)
                    {
                        throw new ZettException($"{path}: line {number + 1} is longer than "
                            + $"{JsonLineLimit} characters");
                    }
                    line.Append((char)c);
                }
            }
            catch (DecoderFallbackException)
            {
                throw new ZettException($"{path}: line {number + 1}: not valid UTF-8");
            }
            catch (IOException e)
            {
                throw new ZettException($"{path}: cannot read: {e.Message}", e);
            }
            if (c < 0 && line.Length == 0)
            {
                yield break;
            }
            number++;
            if (first && line.Length > 0 && line[0] == '\uFEFF')
            {
                line.Remove(0, 1);
            }
            first = false;
            if (line.Length > 0 && line[^1] == '\r')
            {
                line.Length--;
            }
            yield return (number, line.ToString());
            if (c < 0)
            {
                yield break;
            }
        }
    }

    /// <summary>What <paramref name="path"/> is, following links.</summary>
    public static PathKind KindOf(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        FileSystemInfo info = new FileInfo(path);
        if (info.LinkTarget is not null)
        {
            try
            {
                info = info.ResolveLinkTarget(returnFinalTarget: true) ?? info;
            }
            catch (IOException)
            {
                return PathKind.SymlinkLoop;
            }
        }
        if (Directory.Exists(info.FullName))
        {
            return PathKind.Directory;
        }
        if (!File.Exists(info.FullName))
        {
            return PathKind.Missing;
        }
        return IsSpecialFile(info.FullName) ? PathKind.Special : PathKind.RegularFile;
    }

    /// <summary>Throws unless <paramref name="path"/> is a regular file (links followed);
    /// <paramref name="what"/> says what it should be ("config.json", "token list").</summary>
    public static void RequireRegularFile(string path, string what = "file")
    {
        switch (KindOf(path))
        {
            case PathKind.RegularFile:
                return;
            case PathKind.Missing:
                throw new ZettException($"{path}: file not found");
            case PathKind.Directory:
                throw new ZettException($"{path}: is a directory, expected a {what}");
            case PathKind.SymlinkLoop:
                throw new ZettException($"{path}: symbolic link loop");
            default:
                throw new ZettException($"{path}: not a regular file (a FIFO, socket or device), "
                    + $"expected a {what}");
        }
    }

    /// <summary>The bytes of a regular file no larger than <paramref name="maxBytes"/>.</summary>
    public static byte[] ReadAllBytes(string path, long maxBytes, string what = "file")
    {
        RequireRegularFile(path, what);
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            long length = stream.Length;
            if (length > maxBytes)
            {
                throw new ZettException($"{path}: {length} bytes, more than the {maxBytes} "
                    + $"bytes a {what} may have");
            }
            var bytes = new byte[length];
            stream.ReadExactly(bytes);
            return bytes;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ZettException($"{path}: cannot read: {e.Message}", e);
        }
    }

    /// <summary>A regular file's text, which must be valid UTF-8 (a leading byte-order mark is
    /// dropped).</summary>
    public static string ReadAllText(string path, long maxBytes, string what = "file")
    {
        byte[] bytes = ReadAllBytes(path, maxBytes, what);
        ReadOnlySpan<byte> span = bytes;
        if (span.StartsWith("\uFEFF"u8))
        {
            span = span[3..];
        }
        try
        {
            return StrictUtf8.GetString(span);
        }
        catch (DecoderFallbackException e)
        {
            throw new ZettException($"{path}: not valid UTF-8 at byte {e.Index}", e);
        }
    }

    /// <summary>UTF-8 that throws on invalid bytes instead of inventing U+FFFD.</summary>
    public static Encoding StrictUtf8 { get; } = new UTF8Encoding(false, throwOnInvalidBytes: true);

    private static bool IsSpecialFile(string path)
    {
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }
        // The type bits of st_mode; .NET has no public API for them (FileAttributes reads a FIFO
        // as Normal). Offsets of st_mode in glibc's struct stat: 24 on x86-64, 16 on arm64.
        int offset = RuntimeInformation.ProcessArchitecture switch
        {
            Architecture.X64 => 24,
            Architecture.Arm64 => 16,
            _ => -1,
        };
        if (offset < 0)
        {
            return false;
        }
        Span<byte> buffer = stackalloc byte[256];
        int rc;
        try
        {
            rc = Stat(path, ref MemoryMarshal.GetReference(buffer));
        }
        catch (EntryPointNotFoundException)
        {
            return false;
        }
        if (rc != 0)
        {
            return false;
        }
        const uint TypeMask = 0xF000, Regular = 0x8000, Dir = 0x4000;
        uint mode = BitConverter.ToUInt32(buffer.Slice(offset, 4)) & TypeMask;
        return mode != Regular && mode != Dir;
    }

    [LibraryImport("libc", EntryPoint = "stat", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Stat(string path, ref byte buffer);
}
