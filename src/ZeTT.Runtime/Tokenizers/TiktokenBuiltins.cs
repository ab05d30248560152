using System.Text.Json.Nodes;
using Microsoft.ML.Tokenizers;

namespace ZeTT.Runtime.Tokenizers;

/// <summary>
/// Built-in target tokenizers with no download: the tiktoken ranks shipped in the
/// Microsoft.ML.Tokenizers.Data.* packages as byte-level BPE. Token ids are the tiktoken ranks;
/// merges are every split of a token into two tokens, ordered by the rank of the token they make
/// (the standard tiktoken → BPE conversion, which merges exactly as tiktoken does: the pair
/// whose result has the lowest rank first). Special tokens keep their tiktoken ids as added
/// tokens; gaps between ids are filled with special added tokens <c>&lt;|unused_ID|&gt;</c> so
/// that ids stay contiguous.
/// </summary>
internal static class TiktokenBuiltins
{
    private const string Cl100kRegex =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*" +
        @"|\s*[\r\n]+|\s+(?!\S)|\s+";

    private const string O200kRegex =
        @"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+" +
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+" +
        @"[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}" +
        @"| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    public static HfTokenizer Create(string name)
    {
        TiktokenTokenizer tiktoken = name == "gpt2"
            ? TiktokenTokenizer.CreateForModel("gpt2")
            : TiktokenTokenizer.CreateForEncoding(name);
        string source = $"builtin:{name}";

        List<(byte[] Bytes, int Rank)> ranks = ReadRanks(name);
        var vocab = new Dictionary<string, int>(ranks.Count, StringComparer.Ordinal);
        var byRank = new string[ranks.Max(r => r.Rank) + 1];
        foreach ((byte[] bytes, int rank) in ranks)
        {
            string token = ByteLevelAlphabet.Encode(bytes);
            vocab[token] = rank;
            byRank[rank] = token;
        }
        List<(string, string)> merges = MergesFromRanks(byRank, vocab);

        var added = new List<HfAddedToken>();
        int next = byRank.Length;
        var specials = (tiktoken.SpecialTokens ?? new Dictionary<string, int>())
            .OrderBy(kv => kv.Value).ToList();
        foreach ((string token, int id) in specials)
        {
            for (; next < id; next++)
            {
                added.Add(new HfAddedToken(next, $"<|unused_{next}|>", Special: true));
            }
            added.Add(new HfAddedToken(id, token, Special: true));
            next = Math.Max(next, id + 1);
        }

        var options = new JsonObject
        {
            ["dropout"] = null,
            ["unk_token"] = null,
            ["continuing_subword_prefix"] = null,
            ["end_of_word_suffix"] = null,
            ["fuse_unk"] = false,
            ["byte_fallback"] = false,
            ["ignore_merges"] = false,
        };
        var model = new BpeModel(vocab, merges, options, source);

        JsonNode preTokenizer = name is "gpt2" or "r50k_base"
            ? new JsonObject
            {
                ["type"] = "ByteLevel",
                ["add_prefix_space"] = false,
                ["trim_offsets"] = true,
                ["use_regex"] = true,
            }
            : new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray(
                    new JsonObject
                    {
                        ["type"] = "Split",
                        ["pattern"] = new JsonObject
                        {
                            ["Regex"] = name == "o200k_base" ? O200kRegex : Cl100kRegex,
                        },
                        ["behavior"] = "Isolated",
                        ["invert"] = false,
                    },
                    new JsonObject
                    {
                        ["type"] = "ByteLevel",
                        ["add_prefix_space"] = false,
                        ["trim_offsets"] = true,
                        ["use_regex"] = false,
                    }),
            };
        var components = new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["normalizer"] = null,
            ["pre_tokenizer"] = preTokenizer,
            ["post_processor"] = new JsonObject
            {
                ["type"] = "ByteLevel",
                ["add_prefix_space"] = true,
                ["trim_offsets"] = false,
                ["use_regex"] = true,
            },
            ["decoder"] = new JsonObject
            {
                ["type"] = "ByteLevel",
                ["add_prefix_space"] = true,
                ["trim_offsets"] = true,
                ["use_regex"] = true,
            },
        };
        SpecialTokenMap map = name is "gpt2" or "r50k_base"
            ? SpecialTokenMap.ClassDefaults("GPT2TokenizerFast")
            : new SpecialTokenMap
            {
                Eos = "<|endoftext|>",
                Additional = [.. specials.Select(kv => kv.Key).Where(t => t != "<|endoftext|>")],
            };
        return new HfTokenizer(source, model, components, added, map, tokenizerConfig: null,
            tokenizerClass: null);
    }

    /// <summary>The ranks file (<c>base64 rank</c> per line) that the data package embeds,
    /// deflated.</summary>
    private static List<(byte[], int)> ReadRanks(string name)
    {
        string package = name switch
        {
            "gpt2" => "Gpt2",
            "r50k_base" => "R50kBase",
            "cl100k_base" => "Cl100kBase",
            "o200k_base" => "O200kBase",
            _ => throw new ZettException($"'{name}' is not a built-in tokenizer"),
        };
        var assembly = System.Reflection.Assembly.Load(
            new System.Reflection.AssemblyName($"Microsoft.ML.Tokenizers.Data.{package}"));
        string resource = $"{name}.tiktoken.deflate";
        using Stream compressed = assembly.GetManifestResourceStream(resource)
            ?? throw new ZettException($"built-in tokenizer data '{resource}' is missing");
        using var inflated = new System.IO.Compression.DeflateStream(compressed,
            System.IO.Compression.CompressionMode.Decompress);
        using var reader = new StreamReader(inflated);
        // One token per line, base64; its rank is the line's index unless the line gives one
        // ("base64 rank"). A first line "Capacity: N" sizes the table.
        var ranks = new List<(byte[], int)>();
        int next = 0;
        while (reader.ReadLine() is { } line)
        {
            if (line.Length == 0 || line.StartsWith("Capacity:", StringComparison.Ordinal))
            {
                continue;
            }
            int space = line.IndexOf(' ', StringComparison.Ordinal);
            int rank = space > 0
                ? int.Parse(line.AsSpan(space + 1), System.Globalization.CultureInfo.InvariantCulture)
                : next;
            ranks.Add((System.Convert.FromBase64String(space > 0 ? line[..space] : line), rank));
            next = rank + 1;
        }
        return ranks;
    }

    /// <summary>For every token, each split into two tokens, sorted by the made token's rank and
    /// then by the ranks of the two parts.</summary>
    private static List<(string, string)> MergesFromRanks(string[] byRank,
        Dictionary<string, int> vocab)
    {
        Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> lookup =
            vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        var merges = new List<(string, string)>(byRank.Length * 2);
        var local = new List<(int Left, int Right)>();
        foreach (string? token in byRank)
        {
            if (token is null || token.Length < 2)
            {
                continue;
            }
            local.Clear();
            for (int k = 1; k < token.Length; k++)
            {
                if (lookup.TryGetValue(token.AsSpan(0, k), out int left)
                    && lookup.TryGetValue(token.AsSpan(k), out int right))
                {
                    local.Add((left, right));
                }
            }
            local.Sort();
            foreach ((int left, int right) in local)
            {
                merges.Add((byRank[left], byRank[right]));
            }
        }
        return merges;
    }
}
