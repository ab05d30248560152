using System.Buffers;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using ZeTT.Runtime.IO;

namespace ZeTT.Runtime.Tokenizers;

/// <summary>
/// What <c>zett tokenize</c> reads and writes: documents (a <c>.txt</c> file is one document,
/// a <c>.jsonl</c> file one JSON object with a <c>text</c> string per line), id lists (JSON
/// lines with an <c>ids</c> array, or <c>1,2,3</c>), and one JSON line per result
/// (<c>{"ids": [...], "tokens": [...]}</c> or <c>{"text": ...}</c>). Encoding runs in chunks on
/// all cores and writes in input order; a file output is written to a temporary name and
/// renamed, so a failed run leaves nothing.
/// </summary>
public static class TokenizeDocuments
{
    /// <summary>Documents encoded per parallel chunk (bounds memory; large enough to keep every
    /// core busy on TinyStories-sized documents).</summary>
    private const int ChunkSize = 2048;

    private static readonly JsonWriterOptions WriterOptions = new()
    {
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>Reads the documents of <paramref name="path"/> lazily (.txt or .jsonl).
    /// </summary>
    public static IEnumerable<string> ReadTexts(string path)
    {
        InputFile.RequireRegularFile(path, "text file");
        string ext = Path.GetExtension(path).ToLowerInvariant();
        if (ext == ".txt")
        {
            return [InputFile.ReadAllText(path, InputFile.TextDocumentLimit, "text file")];
        }
        if (ext == ".jsonl")
        {
            return ReadJsonLines(path, "text", (node, line) =>
                node is JsonValue v && v.TryGetValue(out string? s) ? s
                : throw new ZettException($"{path}:{line}: no \"text\" string field"));
        }
        throw new ZettException($"{path}: input must be .txt (one document) or .jsonl " +
            "(one {\"text\": ...} object per line)");
    }

    /// <summary>Reads id lists: JSON lines with an <c>ids</c> array of integers.</summary>
    public static IEnumerable<int[]> ReadIds(string path)
    {
        InputFile.RequireRegularFile(path, "JSON lines file");
        return ReadJsonLines(path, "ids", (node, line) =>
        {
            if (node is not JsonArray array)
            {
                throw new ZettException($"{path}:{line}: no \"ids\" array");
            }
            var ids = new int[array.Count];
            for (int i = 0; i < ids.Length; i++)
            {
                ids[i] = array[i] is JsonValue v && v.TryGetValue(out int id) ? id
                    : throw new ZettException($"{path}:{line}: ids[{i}] is not an integer");
            }
            return ids;
        });
    }

    /// <summary>Parses <c>1,2,3</c>.</summary>
    public static int[] ParseIds(string list)
    {
        string[] parts = list.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var ids = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i], System.Globalization.NumberStyles.Integer,
                System.Globalization.CultureInfo.InvariantCulture, out ids[i]))
            {
                throw new ZettException($"--ids: '{parts[i]}' is not an integer id");
            }
        }
        return ids;
    }

    /// <summary>Encodes <paramref name="texts"/> chunk by chunk on all cores and writes one
    /// JSON line per document in input order; returns (documents, tokens, UTF-8 bytes read).
    /// </summary>
    public static (long Documents, long Tokens, long Bytes) Encode(HfTokenizer tokenizer,
        IEnumerable<string> texts, bool addSpecialTokens, TextWriter output,
        Action<long>? progress = null)
    {
        long documents = 0, tokens = 0, bytes = 0;
        var buffer = new ArrayBufferWriter<byte>(1 << 16);
        using var writer = new Utf8JsonWriter(buffer, WriterOptions);
        var chunk = new List<string>(ChunkSize);
        void Flush()
        {
            foreach (TokenizerEncoding e in tokenizer.EncodeBatch(chunk, addSpecialTokens))
            {
                writer.WriteStartObject();
                writer.WriteStartArray("ids");
                foreach (int id in e.Ids)
                {
                    writer.WriteNumberValue(id);
                }
                writer.WriteEndArray();
                writer.WriteStartArray("tokens");
                foreach (string t in e.Tokens)
                {
                    writer.WriteStringValue(t);
                }
                writer.WriteEndArray();
                writer.WriteEndObject();
                writer.Flush();
                output.Write(Encoding.UTF8.GetString(buffer.WrittenSpan));
                output.Write('\n');
                buffer.ResetWrittenCount();
                writer.Reset();
                tokens += e.Ids.Length;
            }
            documents += chunk.Count;
            foreach (string t in chunk)
            {
                bytes += Encoding.UTF8.GetByteCount(t);
            }
            chunk.Clear();
            progress?.Invoke(documents);
        }
        foreach (string text in texts)
        {
            chunk.Add(text);
            if (chunk.Count == ChunkSize)
            {
                Flush();
            }
        }
        if (chunk.Count > 0)
        {
            Flush();
        }
        return (documents, tokens, bytes);
    }

    /// <summary>Decodes each id list and writes one <c>{"text": ...}</c> line per list.
    /// </summary>
    public static long Decode(HfTokenizer tokenizer, IEnumerable<int[]> idLists,
        bool skipSpecialTokens, TextWriter output)
    {
        long count = 0;
        var buffer = new ArrayBufferWriter<byte>(1 << 12);
        using var writer = new Utf8JsonWriter(buffer, WriterOptions);
        foreach (int[] ids in idLists)
        {
            writer.WriteStartObject();
            writer.WriteString("text", tokenizer.Decode(ids, skipSpecialTokens));
            writer.WriteEndObject();
            writer.Flush();
            output.Write(Encoding.UTF8.GetString(buffer.WrittenSpan));
            output.Write('\n');
            buffer.ResetWrittenCount();
            writer.Reset();
            count++;
        }
        return count;
    }

    /// <summary>Runs <paramref name="write"/> into <paramref name="path"/> under the output
    /// policy (<see cref="OutputTarget"/>: <paramref name="inputs"/> are never overwritten, an
    /// existing file needs <paramref name="overwrite"/>, a temporary is renamed on success and
    /// deleted on failure or a signal).</summary>
    public static T WriteAtomically<T>(string path, Func<TextWriter, T> write, bool overwrite = false,
        IEnumerable<string?>? inputs = null)
    {
        ArgumentNullException.ThrowIfNull(write);
        string full = OutputTarget.Check(path, OutputKind.File, overwrite, inputs ?? []);
        using OutputTarget target = OutputTarget.Begin(full, OutputKind.File);
        T result;
        using (var stream = new StreamWriter(target.TempPath, false, new UTF8Encoding(false)))
        {
            result = write(stream);
        }
        target.Commit();
        return result;
    }

    private static IEnumerable<T> ReadJsonLines<T>(string path, string key,
        Func<JsonNode?, long, T> read)
    {
        foreach ((long line, string text) in InputFile.ReadLines(path, "JSON lines file"))
        {
            if (string.IsNullOrWhiteSpace(text))
            {
                continue;
            }
            // The validating parse: duplicate keys, lone surrogates and deep nesting are errors
            // naming the line, not exceptions further on.
            JsonNode? node = JsonInput.Parse(text, $"{path}:{line}");
            if (node is not JsonObject obj)
            {
                throw new ZettException($"{path}:{line}: not a JSON object");
            }
            yield return read(obj[key], line);
        }
    }
}
