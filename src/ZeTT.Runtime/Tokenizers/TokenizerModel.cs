using System.Text.Json.Nodes;

namespace ZeTT.Runtime.Tokenizers;

/// <summary>The kind of model a tokenizer.json holds.</summary>
public enum TokenizerModelKind
{
    /// <summary>Byte-pair encoding: a vocabulary and ranked merges.</summary>
    Bpe,

    /// <summary>Unigram language model: pieces with log-probability scores, Viterbi decoding.
    /// </summary>
    Unigram,

    /// <summary>WordPiece: greedy longest-match with a continuing-subword prefix.</summary>
    WordPiece,

    /// <summary>WordLevel: whole pre-tokens looked up in a vocabulary.</summary>
    WordLevel,
}

/// <summary>
/// The model part of a tokenizer.json (no normalizer, no pre-tokenizer): the vocabulary and the
/// algorithm that splits one pre-token into ids, with the Rust <c>tokenizers</c> library's
/// semantics (ties, duplicate entries, unknown characters).
/// </summary>
internal abstract class TokenizerModel
{
    public abstract TokenizerModelKind Kind { get; }

    /// <summary>The model's own vocabulary size as the Rust library counts it.</summary>
    public abstract int Size { get; }

    /// <summary>One past the largest id the model knows.</summary>
    public abstract int IdLimit { get; }

    /// <summary>True if the model falls back to <c>&lt;0xNN&gt;</c> byte tokens.</summary>
    public virtual bool ByteFallback => false;

    public abstract string? IdToToken(int id);

    public abstract int? TokenToId(string token);

    public abstract int? TokenToId(ReadOnlySpan<char> token);

    /// <summary>Appends the ids of <paramref name="text"/> to <paramref name="output"/>.</summary>
    public abstract void Tokenize(ReadOnlySpan<char> text, List<int> output);

    /// <summary>Appends the ids of <paramref name="text"/> and their token strings as the
    /// library reports them (by default each id's vocabulary entry).</summary>
    public virtual void Tokenize(ReadOnlySpan<char> text, List<int> ids, List<string> tokens)
    {
        int first = ids.Count;
        Tokenize(text, ids);
        for (int i = first; i < ids.Count; i++)
        {
            tokens.Add(IdToToken(ids[i]) ?? "");
        }
    }

    /// <summary>Writes the model as tokenizer.json's <c>model</c> object.</summary>
    public abstract void WriteJson(System.Text.Json.Utf8JsonWriter writer);

    /// <summary>Parses tokenizer.json's <c>model</c> object (whose <c>type</c> may be absent,
    /// as in files written by older versions of the library).</summary>
    public static TokenizerModel FromJson(JsonObject model, string file)
    {
        string type = TypeOf(model);
        return type switch
        {
            "BPE" => BpeModel.FromJson(model, file),
            "Unigram" => UnigramModel.FromJson(model, file),
            "WordPiece" => WordPieceModel.FromJson(model, file),
            "WordLevel" => WordLevelModel.FromJson(model, file),
            _ => throw new ZettException(
                $"{file}: tokenizer model type '{type}' is not supported (BPE, Unigram, " +
                "WordPiece and WordLevel are)"),
        };
    }

    /// <summary>The model type of a tokenizer.json <c>model</c> object: its <c>type</c>, or for
    /// files written before <c>tokenizers</c> stored one (GPT-2's, RoBERTa's, BERT's, T5's) what
    /// its keys make it — merges: BPE; a vocabulary of [piece, score] pairs: Unigram; a
    /// continuing-subword prefix: WordPiece; else WordLevel.</summary>
    public static string TypeOf(JsonObject model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return model["type"] is JsonValue v && v.TryGetValue(out string? type) ? type
            : model.ContainsKey("merges") ? "BPE"
            : model["vocab"] is JsonArray ? "Unigram"
            : model.ContainsKey("continuing_subword_prefix")
              || model.ContainsKey("max_input_chars_per_word") ? "WordPiece"
            : "WordLevel";
    }

    /// <summary>Copies every key of <paramref name="source"/> except <paramref name="skip"/>.
    /// </summary>
    protected static JsonObject CopyExcept(JsonObject source, params string[] skip)
    {
        var copy = new JsonObject();
        foreach (KeyValuePair<string, JsonNode?> kv in source)
        {
            if (Array.IndexOf(skip, kv.Key) < 0)
            {
                copy[kv.Key] = kv.Value?.DeepClone();
            }
        }
        return copy;
    }

    /// <summary>Writes the <c>type</c> key and then every option key.</summary>
    protected static void WriteOptions(System.Text.Json.Utf8JsonWriter writer, string type,
        JsonObject options)
    {
        writer.WriteString("type", type);
        foreach (KeyValuePair<string, JsonNode?> kv in options)
        {
            writer.WritePropertyName(kv.Key);
            if (kv.Value is null)
            {
                writer.WriteNullValue();
            }
            else
            {
                kv.Value.WriteTo(writer);
            }
        }
    }

    protected static string? OptionalString(JsonObject o, string key) =>
        o[key] is JsonValue v && v.TryGetValue(out string? s) ? s : null;

    protected static bool OptionalBool(JsonObject o, string key) =>
        o[key] is JsonValue v && v.TryGetValue(out bool b) && b;
}
