using System.Text.Json;
using System.Text.Json.Nodes;


namespace ZeTT.Runtime.Tokenizers;

/// <summary>
/// WordPiece with the Rust library's semantics: a word longer than
/// <c>max_input_chars_per_word</c> characters is the unknown token; otherwise the longest
/// vocabulary entry is taken greedily from the left (with the continuing-subword prefix on all
/// but the first piece), and a word with any position no entry covers is the unknown token.
/// </summary>
internal sealed class WordPieceModel : TokenizerModel
{
    private readonly Dictionary<string, int> vocab;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> lookup;
    private readonly string?[] idToToken;

    public WordPieceModel(Dictionary<string, int> vocab, JsonObject options, string file)
    {
        this.vocab = new Dictionary<string, int>(vocab, StringComparer.Ordinal);
        lookup = this.vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        Options = options;
        UnkToken = OptionalString(options, "unk_token") ?? "[UNK]";
        ContinuingSubwordPrefix = OptionalString(options, "continuing_subword_prefix") ?? "##";
        MaxInputCharsPerWord = options["max_input_chars_per_word"] is JsonValue m
            && m.TryGetValue(out int max) ? max : 100;
        longestEntry = vocab.Count == 0 ? 0 : vocab.Keys.Max(k => k.Length);
        int limit = vocab.Count == 0 ? 0 : vocab.Values.Max() + 1;
        idToToken = new string?[limit];
        foreach (KeyValuePair<string, int> kv in vocab)
        {
            if (kv.Value < 0)
            {
                throw new ZettException($"{file}: WordPiece vocabulary has a negative id");
            }
            idToToken[kv.Value] = kv.Key;
        }
    }

    // No entry is longer: the longest-match search starts here instead of at the word's end,
    // which made a long word (with a large max_input_chars_per_word) cubic.
    private readonly int longestEntry;

    public override TokenizerModelKind Kind => TokenizerModelKind.WordPiece;

    public override int Size => vocab.Count;

    public override int IdLimit => idToToken.Length;

    public IReadOnlyDictionary<string, int> Vocab => vocab;

    public JsonObject Options { get; }

    public string UnkToken { get; }

    public string ContinuingSubwordPrefix { get; }

    public int MaxInputCharsPerWord { get; }

    public static new WordPieceModel FromJson(JsonObject model, string file)
    {
        Dictionary<string, int> vocab = TokenizerLimits.ReadVocab(model, file, "WordPiece");
        return new WordPieceModel(vocab, CopyExcept(model, "type", "vocab"), file);
    }

    public override string? IdToToken(int id) =>
        (uint)id < (uint)idToToken.Length ? idToToken[id] : null;

    public override int? TokenToId(string token) =>
        vocab.TryGetValue(token, out int id) ? id : null;

    public override int? TokenToId(ReadOnlySpan<char> token) =>
        lookup.TryGetValue(token, out int id) ? id : null;

    public override void Tokenize(ReadOnlySpan<char> text, List<int> output)
    {
        if (text.IsEmpty)
        {
            return;
        }
        int chars = 0;
        for (int i = 0; i < text.Length; i++)
        {
            if (!char.IsLowSurrogate(text[i]))
            {
                chars++;
            }
        }
        if (chars > MaxInputCharsPerWord)
        {
            output.Add(UnknownId());
            return;
        }
        int first = output.Count;
        char[] buffer = new char[ContinuingSubwordPrefix.Length + text.Length];
        ContinuingSubwordPrefix.CopyTo(buffer);
        int start = 0;
        while (start < text.Length)
        {
            int found = -1;
            int foundEnd = start;
            int longest = Math.Min(text.Length,
                start + longestEntry - (start > 0 ? ContinuingSubwordPrefix.Length : 0));
            for (int end = longest; end > start; end--)
            {
                if (end < text.Length && char.IsLowSurrogate(text[end]))
                {
                    continue;
                }
                ReadOnlySpan<char> piece = text[start..end];
                if (start > 0)
                {
                    piece.CopyTo(buffer.AsSpan(ContinuingSubwordPrefix.Length));
                    piece = buffer.AsSpan(0, ContinuingSubwordPrefix.Length + piece.Length);
                }
                if (lookup.TryGetValue(piece, out int id))
                {
                    found = id;
                    foundEnd = end;
                    break;
                }
            }
            if (found < 0)
            {
                output.RemoveRange(first, output.Count - first);
                output.Add(UnknownId());
                return;
            }
            output.Add(found);
            start = foundEnd;
        }
    }

    private int UnknownId() => vocab.TryGetValue(UnkToken, out int id)
        ? id : throw new ZettException($"WordPiece unknown token '{UnkToken}' is not in the vocabulary");

    public override void WriteJson(Utf8JsonWriter writer)
    {
        writer.WriteStartObject();
        WriteOptions(writer, "WordPiece", Options);
        writer.WriteStartObject("vocab");
        foreach (KeyValuePair<string, int> kv in vocab.OrderBy(kv => kv.Value))
        {
            writer.WriteNumber(kv.Key, kv.Value);
        }
        writer.WriteEndObject();
        writer.WriteEndObject();
    }
}
