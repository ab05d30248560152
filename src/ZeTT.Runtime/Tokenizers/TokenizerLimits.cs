using System.Text.Json.Nodes;
using ZeTT.Runtime.IO;

namespace ZeTT.Runtime.Tokenizers;

/// <summary>
/// Limits on what a tokenizer may hold. A 1 MB token made every tokenizer command quadratic
/// (about 15 minutes: BPE merges and surface forms scan a token once per merge); the longest
/// token of any real vocabulary we read is under 300 characters (o200k_base: 128 bytes;
/// code tokenizers' whitespace runs: 256), so <see cref="MaxTokenLength"/> leaves a wide margin
/// while keeping the worst case below a second.
/// </summary>
public static class TokenizerLimits
{
    /// <summary>Longest token (vocabulary entry, added token, merge half, line of a token list)
    /// in UTF-16 characters.</summary>
    public const int MaxTokenLength = 4096;

    /// <summary>Largest token id: below <see cref="int.MaxValue"/>, so that id + 1 and
    /// vocabulary sizes stay ints.</summary>
    public const int MaxId = int.MaxValue - 1;

    /// <summary>Throws when <paramref name="token"/> is longer than
    /// <see cref="MaxTokenLength"/>; <paramref name="at"/> is where it was read.</summary>
    public static void CheckToken(string token, string file, JsonNode? at)
    {
        ArgumentNullException.ThrowIfNull(token);
        if (token.Length > MaxTokenLength)
        {
            throw JsonInput.Error(file, at, $"a token of {token.Length} characters, more than "
                + $"the {MaxTokenLength} a token may have");
        }
    }

    /// <summary>The id at <paramref name="node"/>, an integer in [0, <see cref="MaxId"/>].
    /// </summary>
    public static int Id(JsonNode? node, string file) => JsonInput.AsInt32(node, file, 0, MaxId);

    /// <summary>A <c>{token: id}</c> vocabulary object, every key and id checked.</summary>
    public static Dictionary<string, int> ReadVocab(JsonObject model, string file, string kind)
    {
        ArgumentNullException.ThrowIfNull(model);
        JsonObject vocabJson = JsonInput.Object(model, "vocab", file)
            ?? throw new ZettException($"{file}: {kind} model has no 'vocab' object");
        if (vocabJson.Count == 0)
        {
            throw JsonInput.Error(file, vocabJson, "the vocabulary is empty");
        }
        var vocab = new Dictionary<string, int>(vocabJson.Count, StringComparer.Ordinal);
        foreach (KeyValuePair<string, JsonNode?> kv in vocabJson)
        {
            CheckToken(kv.Key, file, vocabJson);
            vocab[kv.Key] = kv.Value is null
                ? throw JsonInput.Error(file, vocabJson, kv.Key, "token has no id")
                : Id(kv.Value, file);
        }
        return vocab;
    }
}
