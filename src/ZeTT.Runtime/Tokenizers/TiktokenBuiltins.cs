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
        var specials = (tiktoken.SpecialTokens ?? new Dictionary<string, int>())
            .OrderBy(kv => kv.Value).ToList();
        return FromRanks(name, ReadRanks(name), specials, $"builtin:{name}", bos: null);
    }

    /// <summary>The special tokens of Llama 3 after its 128,000 ranks, as the tokenizer.py of
    /// meta-llama/llama-models (which ships the ranks file) defines them: twelve named ones, then
    /// <c>&lt;|reserved_special_token_N|&gt;</c> up to 256 in all.</summary>
    private static List<KeyValuePair<string, int>> Llama3Specials(int baseTokens)
    {
        string[] named =
        [
            "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
            "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|step_id|>",
            "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>",
            "<|python_tag|>", "<|image|>",
        ];
        var list = new List<KeyValuePair<string, int>>(256);
        for (int i = 0; i < 256; i++)
        {
            string token = i < named.Length ? named[i]
                : $"<|reserved_special_token_{2 + i - named.Length}|>";
            list.Add(new(token, baseTokens + i));
        }
        return list;
    }

    /// <summary>
    /// A tiktoken ranks file (a base64 token and its rank per line, what Llama 3 ships as
    /// tokenizer.model) as a byte-level BPE tokenizer. The file holds no pattern and no special
    /// tokens; they are those of the encoding the file is, recognised by its size: 128,000
    /// ranks are Llama 3 (its pattern, which is cl100k's, its 256 special tokens and
    /// <c>&lt;|begin_of_text|&gt;</c> before every text, as its Hugging Face tokenizer.json has
    /// them); the sizes of r50k_base, cl100k_base and o200k_base are those encodings. Any other
    /// size is refused: the pattern cannot be guessed.
    /// </summary>
    public static HfTokenizer FromFile(string file, byte[] bytes)
    {
        List<(byte[] Bytes, int Rank)> ranks = ParseRanks(file, new StreamReader(
            new MemoryStream(bytes), System.Text.Encoding.UTF8));
        int count = ranks.Count;
        if (count == 128_000)
        {
            return FromRanks("llama3", ranks, Llama3Specials(count), file,
                bos: "<|begin_of_text|>");
        }
        string? name = count switch
        {
            50_256 => "r50k_base",
            100_256 => "cl100k_base",
            199_998 => "o200k_base",
            _ => null,
        };
        if (name is null)
        {
            throw new ZettException($"{file}: unsupported format: tiktoken ranks of {count} " +
                "tokens, no encoding zett knows (Llama 3: 128000, r50k_base: 50256, cl100k_base: " +
                "100256, o200k_base: 199998); its split pattern cannot be guessed");
        }
        TiktokenTokenizer tiktoken = TiktokenTokenizer.CreateForEncoding(name);
        var specials = (tiktoken.SpecialTokens ?? new Dictionary<string, int>())
            .OrderBy(kv => kv.Value).ToList();
        return FromRanks(name, ranks, specials, file, bos: null);
    }

    private static HfTokenizer FromRanks(string name, List<(byte[] Bytes, int Rank)> ranks,
        List<KeyValuePair<string, int>> specials, string source, string? bos)
    {
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
            // Llama 3's tokenizer.json takes a word that is a token whole, as tiktoken does.
            ["ignore_merges"] = name == "llama3",
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
            ["post_processor"] = bos is null ? ByteLevelProcessor()
                : new JsonObject
                {
                    ["type"] = "Sequence",
                    ["processors"] = new JsonArray(ByteLevelProcessor(), BosTemplate(bos,
                        specials.First(kv => kv.Key == bos).Value)),
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
            : name == "llama3"
            ? new SpecialTokenMap { Bos = "<|begin_of_text|>", Eos = "<|end_of_text|>" }
            : new SpecialTokenMap
            {
                Eos = "<|endoftext|>",
                Additional = [.. specials.Select(kv => kv.Key).Where(t => t != "<|endoftext|>")],
            };
        return new HfTokenizer(source, model, components, added, map, tokenizerConfig: null,
            tokenizerClass: null);
    }

    private static JsonObject ByteLevelProcessor() => new()
    {
        ["type"] = "ByteLevel",
        ["add_prefix_space"] = true,
        ["trim_offsets"] = false,
        ["use_regex"] = true,
    };

    /// <summary><c>BOS $A</c> (pairs: <c>BOS $A BOS $B</c>), as Llama 3's tokenizer.json.
    /// </summary>
    private static JsonObject BosTemplate(string bos, int id) => new()
    {
        ["type"] = "TemplateProcessing",
        ["single"] = new JsonArray(Special(bos, 0), Sequence("A", 0)),
        ["pair"] = new JsonArray(Special(bos, 0), Sequence("A", 0), Special(bos, 1),
            Sequence("B", 1)),
        ["special_tokens"] = new JsonObject
        {
            [bos] = new JsonObject
            {
                ["id"] = bos,
                ["ids"] = new JsonArray(id),
                ["tokens"] = new JsonArray(bos),
            },
        },
    };

    private static JsonObject Special(string id, int typeId) => new()
    {
        ["SpecialToken"] = new JsonObject { ["id"] = id, ["type_id"] = typeId },
    };

    private static JsonObject Sequence(string id, int typeId) => new()
    {
        ["Sequence"] = new JsonObject { ["id"] = id, ["type_id"] = typeId },
    };

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
        return ParseRanks(resource, reader);
    }

    /// <summary>One token per line, base64; its rank is the line's index unless the line gives
    /// one ("base64 rank"). A first line "Capacity: N" sizes the table. A bad line, a rank out
    /// of range or a token given twice names the file and the line.</summary>
    private static List<(byte[], int)> ParseRanks(string file, TextReader reader)
    {
        var ranks = new List<(byte[], int)>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        int next = 0;
        int lineNumber = 0;
        while (reader.ReadLine() is { } line)
        {
            lineNumber++;
            if (line.Length == 0 || line.StartsWith("Capacity:", StringComparison.Ordinal))
            {
                continue;
            }
            int space = line.IndexOf(' ', StringComparison.Ordinal);
            string token = space > 0 ? line[..space] : line;
            int rank = next;
            byte[] bytes = new byte[token.Length];
            if ((space > 0 && !int.TryParse(line.AsSpan(space + 1),
                    System.Globalization.NumberStyles.None,
                    System.Globalization.CultureInfo.InvariantCulture, out rank))
                || rank > TokenizerLimits.MaxId - 1
                || !System.Convert.TryFromBase64String(token, bytes, out int length)
                || length == 0 || length > TokenizerLimits.MaxTokenLength)
            {
                throw new ZettException($"{file}:{lineNumber}: not a tiktoken line " +
                    "(a base64 token of 1 to 4096 bytes, a space, a rank)");
            }
            if (!seen.Add(token))
            {
                throw new ZettException($"{file}:{lineNumber}: token {token} is listed twice");
            }
            ranks.Add((bytes[..length], rank));
            next = rank + 1;
        }
        if (ranks.Count == 0)
        {
            throw new ZettException($"{file}: no tiktoken ranks");
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
