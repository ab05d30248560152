using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Parquet;
using Parquet.Schema;
using ZeTT.Runtime.IO;

namespace ZeTT.Runtime.Models;

/// <summary>One evaluation document: its text and where it came from.</summary>
/// <param name="Source">File (and line or row) for messages.</param>
/// <param name="Text">The document.</param>
/// <param name="Bytes">Its length in UTF-8 bytes.</param>
public sealed record EvalDocument(string Source, string Text, long Bytes);

/// <summary>
/// Reads evaluation text: a <c>.txt</c> file is one document; a <c>.jsonl</c> file holds one
/// JSON object per line with a string <c>text</c> field; a <c>.parquet</c> file has a string
/// column <c>text</c> (or its only string column), one document per row. Text must be valid
/// UTF-8: the error names the file and the byte offset. With a byte cap, documents are taken
/// in order and the one that crosses the cap is cut at the last character boundary inside it.
/// <see cref="Stream"/> yields a file's documents one at a time (a JSONL file line by line, a
/// Parquet file row group by row group), which is how training reads its corpora.
/// </summary>
public static class EvalText
{
    private static readonly UTF8Encoding StrictUtf8 = new(false, true);

    /// <summary>The documents of <paramref name="files"/> in order, at most
    /// <paramref name="maxBytes"/> UTF-8 bytes in all (null: no cap).</summary>
    public static IReadOnlyList<EvalDocument> Read(IReadOnlyList<string> files, long? maxBytes)
    {
        ArgumentNullException.ThrowIfNull(files);
        var docs = new List<EvalDocument>();
        long total = 0;
        foreach (string file in files)
        {
            foreach (EvalDocument doc in Stream(file))
            {
                if (maxBytes is { } cap && total + doc.Bytes > cap)
                {
                    long room = cap - total;
                    if (room > 0)
                    {
                        string cut = CutUtf8(doc.Text, room);
                        docs.Add(doc with { Text = cut, Bytes = Encoding.UTF8.GetByteCount(cut) });
                    }
                    return docs;
                }
                docs.Add(doc);
                total += doc.Bytes;
            }
        }
        return docs;
    }

    /// <summary>The documents of one file, streamed in order. A missing file or an unknown
    /// extension is an error at once; a Parquet file without a string column <c>text</c> (and
    /// not exactly one string column) is an error when its schema is read, before any row.
    /// </summary>
    public static IEnumerable<EvalDocument> Stream(string file)
    {
        ArgumentNullException.ThrowIfNull(file);
        // A FIFO would block, /dev/zero grow without end, a directory is not text.
        InputFile.RequireRegularFile(file, "text file");
        string ext = Path.GetExtension(file).ToLowerInvariant();
        return ext switch
        {
            ".txt" => [Document(file, InputFile.ReadAllBytes(file, InputFile.TextDocumentLimit,
                "text document"), 0)],
            ".jsonl" => ReadJsonl(file),
            ".parquet" => ReadParquet(file),
            _ => throw new ZettException($"{file}: unknown text format '{ext}' (.txt, .jsonl or "
                + ".parquet)"),
        };
    }

    /// <summary>Decodes bytes strictly; <paramref name="baseOffset"/> is where they start in
    /// the file.</summary>
    private static EvalDocument Document(string source, byte[] bytes, long baseOffset)
    {
        int start = bytes.Length >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF
            ? 3 : 0;
        try
        {
            string text = StrictUtf8.GetString(bytes, start, bytes.Length - start);
            return new EvalDocument(source, text, bytes.Length - start);
        }
        catch (DecoderFallbackException)
        {
            throw new ZettException($"{source}: not UTF-8 at byte offset "
                + $"{baseOffset + start + FirstInvalid(bytes.AsSpan(start))}");
        }
    }

    private static int FirstInvalid(ReadOnlySpan<byte> bytes)
    {
        System.Buffers.OperationStatus status = System.Text.Unicode.Utf8.ToUtf16(bytes,
            new char[bytes.Length], out int read, out _, replaceInvalidSequences: false);
        return status == System.Buffers.OperationStatus.Done ? bytes.Length : read;
    }

    private static IEnumerable<EvalDocument> ReadJsonl(string file)
    {
        using FileStream stream = InputFile.OpenRead(file, "text file");
        int line = 0;
        long offset = 0;
        var buffer = new List<byte>();
        while (true)
        {
            long lineStart = offset;
            buffer.Clear();
            int b;
            while ((b = stream.ReadByte()) >= 0 && b != '\n')
            {
                if (buffer.Count >= InputFile.JsonLineLimit)
                {
                    throw new ZettException($"{file}: line {line + 1} is longer than "
                        + $"{InputFile.JsonLineLimit} bytes");
                }
                buffer.Add((byte)b);
            }
            if (b < 0 && buffer.Count == 0)
            {
                yield break;
            }
            offset += buffer.Count + (b < 0 ? 0 : 1);
            line++;
            byte[] bytes = [.. buffer];
            if (bytes.AsSpan().Trim((byte)'\r').Trim((byte)' ').IsEmpty)
            {
                continue;
            }
            yield return JsonlDocument(file, line, bytes, lineStart);
        }
    }

    private static EvalDocument JsonlDocument(string file, int line, byte[] bytes, long lineStart)
    {
        EvalDocument raw = Document($"{file}:{line}", bytes, lineStart);
        // The validating parse: duplicate keys, lone surrogate escapes and deep nesting are
        // errors naming the line.
        string? text = JsonInput.Parse(raw.Text, $"{file}: line {line}") is JsonObject o
            && o["text"] is JsonValue v && v.GetValueKind() == JsonValueKind.String
            ? v.GetValue<string>() : null;
        if (text is null)
        {
            throw new ZettException($"{file}: line {line}: no string field \"text\"");
        }
        return new EvalDocument($"{file}:{line}", text, Encoding.UTF8.GetByteCount(text));
    }

    private static IEnumerable<EvalDocument> ReadParquet(string file)
    {
        // The schema is read here, not lazily, so a file without the column fails when the
        // stream is made rather than on the first document.
        (ParquetReader reader, FileStream stream, DataField field) = OpenParquet(file);
        return ParquetRows(file, reader, stream, field);
    }

    private static (ParquetReader, FileStream, DataField) OpenParquet(string file)
    {
        FileStream stream = InputFile.OpenRead(file, "Parquet file");
        try
        {
            CheckParquetFrame(file, stream);
            ParquetReader reader = ParquetReader.CreateAsync(stream).GetAwaiter().GetResult();
            DataField[] all = reader.Schema.GetDataFields();
            // Parquet.Net 6 reports UTF-8 string columns as ReadOnlyMemory<char>.
            DataField[] strings = all.Where(f => f.ClrType == typeof(string)
                || f.ClrType == typeof(ReadOnlyMemory<char>)).ToArray();
            DataField? field = strings.FirstOrDefault(f => f.Name == "text")
                ?? (strings.Length == 1 ? strings[0] : null);
            if (field is null)
            {
                reader.DisposeAsync().AsTask().GetAwaiter().GetResult();
                throw new ZettException($"{file}: no string column 'text' (columns: "
                    + $"{string.Join(", ", all.Select(f => $"{f.Name} {f.ClrType.Name}"))})");
            }
            return (reader, stream, field);
        }
        catch (Exception e) when (IsCorruptParquet(e))
        {
            stream.Dispose();
            throw new ZettException($"{file}: cannot read as Parquet ({e.Message})");
        }
        catch (ZettException)
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>What Parquet.Net throws on corrupt bytes: its own exceptions and, for Thrift
    /// metadata and pages that do not say what they claim, whatever decoding them raises
    /// (range, cast, format, null-reference and allocation errors were all seen in the hostile
    /// corpus's flipped and truncated files). The file is the cause of each.</summary>
    private static bool IsCorruptParquet(Exception e) => e is not ZettException;

    /// <summary>The frame of a Parquet file, checked before the library reads it: "PAR1" at
    /// both ends and a footer length that fits the file (the library allocates what that
    /// length says: 2 GiB for a hostile file of a few bytes).</summary>
    private static void CheckParquetFrame(string file, FileStream stream)
    {
        long length = stream.Length;
        Span<byte> head = stackalloc byte[4];
        Span<byte> tail = stackalloc byte[8];
        if (length < 12)
        {
            throw new ZettException($"{file}: {length} bytes, too short for a Parquet file");
        }
        stream.ReadExactly(head);
        stream.Seek(-8, SeekOrigin.End);
        stream.ReadExactly(tail);
        stream.Seek(0, SeekOrigin.Begin);
        if (!head.SequenceEqual("PAR1"u8) || !tail[4..].SequenceEqual("PAR1"u8))
        {
            throw new ZettException($"{file}: not a Parquet file (no PAR1 magic at both ends)");
        }
        int footer = System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(tail);
        if (footer <= 0 || footer > length - 12)
        {
            throw new ZettException($"{file}: Parquet footer length {footer} does not fit the "
                + $"file's {length} bytes");
        }
    }

    private static IEnumerable<EvalDocument> ParquetRows(string file, ParquetReader reader,
        FileStream stream, DataField field)
    {
        using FileStream owned = stream;
        using var close = new ParquetClose(reader);
        long row = 0;
        for (int g = 0; g < reader.RowGroupCount; g++)
        {
            foreach (string? value in RowGroup(file, reader, g, field))
            {
                row++;
                if (value is string s)
                {
                    yield return new EvalDocument($"{file}: row {row}", s,
                        Encoding.UTF8.GetByteCount(s));
                }
            }
        }
    }

    private static string?[] RowGroup(string file, ParquetReader reader, int g, DataField field)
    {
        try
        {
            using ParquetRowGroupReader group = reader.OpenRowGroupReader(g);
            var values = new string?[group.RowCount];
            group.ReadAsync(field, values.AsMemory()!, null).AsTask().GetAwaiter().GetResult();
            return values;
        }
        catch (Exception e) when (IsCorruptParquet(e))
        {
            throw new ZettException($"{file}: cannot read as Parquet ({e.Message})");
        }
    }

    /// <summary>Disposes a reader that only offers DisposeAsync.</summary>
    private sealed class ParquetClose(ParquetReader reader) : IDisposable
    {
        public void Dispose() => reader.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }

    private static string CutUtf8(string text, long maxBytes)
    {
        int bytes = 0;
        for (int i = 0; i < text.Length;)
        {
            int len = char.IsSurrogatePair(text, i) ? 2 : 1;
            int b = Encoding.UTF8.GetByteCount(text.AsSpan(i, len));
            if (bytes + b > maxBytes)
            {
                return text[..i];
            }
            bytes += b;
            i += len;
        }
        return text;
    }
}
