using System.Text.Json;
using System.Text.Json.Nodes;


namespace ZeTT.Runtime.Tokenizers;

/// <summary>WordLevel: each pre-token is looked up whole; a missing one is the unknown token
/// (an error if the unknown token itself is not in the vocabulary, as in the library).
/// </summary>
internal sealed class WordLevelModel : TokenizerModel
{
    private readonly Dictionary<string, int> vocab;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> lookup;
    private readonly string?[] idToToken;
    private readonly string source;

    private WordLevelModel(Dictionary<string, int> vocab, JsonObject options, string file)
    {
        this.vocab = vocab;
        lookup = vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        Options = options;
        source = file;
        UnkToken = OptionalString(options, "unk_token") ?? "<unk>";
        idToToken = new string?[vocab.Count == 0 ? 0 : vocab.Values.Max() + 1];
        foreach (KeyValuePair<string, int> kv in vocab)
        {
            idToToken[kv.Value] = kv.Key;
        }
    }

    public override TokenizerModelKind Kind => TokenizerModelKind.WordLevel;

    public override int Size => vocab.Count;

    public override int IdLimit => idToToken.Length;

    public JsonObject Options { get; }

    public string UnkToken { get; }

    public static new WordLevelModel FromJson(JsonObject model, string file)
    {
        Dictionary<string, int> vocab = TokenizerLimits.ReadVocab(model, file, "WordLevel");
        return new WordLevelModel(vocab, CopyExcept(model, "type", "vocab"), file);
    }

    public override string? IdToToken(int id) =>
        id >= 0 && id < idToToken.Length ? idToToken[id] : null;

    public override int? TokenToId(string token) => vocab.TryGetValue(token, out int id) ? id : null;

    public override int? TokenToId(ReadOnlySpan<char> token) =>
        lookup.TryGetValue(token, out int id) ? id : null;

    public override void Tokenize(ReadOnlySpan<char> text, List<int> output)
    {
        if (lookup.TryGetValue(text, out int id) || vocab.TryGetValue(UnkToken, out id))
        {
            output.Add(id);
            return;
        }
        throw new ZettException($"{source}: WordLevel token '{text.ToString()}' is not in the " +
            $"vocabulary and neither is the unknown token '{UnkToken}'");
    }

    public override void WriteJson(Utf8JsonWriter writer)
    {
        writer.WriteStartObject();
        WriteOptions(writer, "WordLevel", new JsonObject());
        writer.WritePropertyName("vocab");
        writer.WriteStartObject();
        foreach (KeyValuePair<string, int> kv in vocab.OrderBy(kv => kv.Value))
        {
            writer.WriteNumber(kv.Key, kv.Value);
        }
        writer.WriteEndObject();
        foreach (KeyValuePair<string, JsonNode?> kv in Options)
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
        writer.WriteEndObject();
    }
}
