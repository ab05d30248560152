using System.Text.Json.Nodes;
using ZeTT.Runtime.Tokenizers;

namespace ZeTT.Runtime.Formats;

/// <summary>The <c>tokenizer.*</c> metadata of a GGUF file and what it could not express
/// exactly.</summary>
/// <param name="Metadata">Keys and values, in the order written.</param>
/// <param name="Notes">Differences between llama.cpp's tokenization under this metadata and
/// Hugging Face's, one sentence each (empty when there are none known).</param>
/// <param name="PrependsSpace">True when Hugging Face prepends a space to the text and
/// llama.cpp's tokenizer model cannot (byte-level BPE): callers of llama.cpp must tokenize
/// <c>" " + text</c>.</param>
public sealed record GgufTokenizerMetadata(IReadOnlyList<KeyValuePair<string, GgufValue>> Metadata,
    IReadOnlyList<string> Notes, bool PrependsSpace);

/// <summary>
/// Expresses a Hugging Face tokenizer (tokenizer.json + tokenizer_config.json) in llama.cpp's
/// GGUF tokenizer keys. Two tokenizer models can be written:
/// <list type="bullet">
/// <item>byte-level BPE → <c>tokenizer.ggml.model = gpt2</c>: tokens in the byte alphabet, the
/// merges, and <c>tokenizer.ggml.pre</c>, the llama.cpp pre-tokenizer whose regex is the one the
/// tokenizer splits on;</item>
/// <item>SentencePiece-style BPE (▁ for spaces, optional byte fallback) → <c>llama</c>: llama.cpp
/// merges such vocabularies by token score, so each token's score is minus the rank of the first
/// merge that makes it — the order Hugging Face merges in (equal scores, as llama.cpp's own
/// converter writes for a tokenizer.json-only vocabulary, make llama.cpp merge left to
/// right).</item>
/// </list>
/// Anything else (Unigram, WordPiece, normalizers llama.cpp lacks, a regex no llama.cpp
/// pre-tokenizer has) is refused with a <see cref="ZettException"/> that says why.
/// </summary>
public static class GgufTokenizer
{
    /// <summary>llama.cpp token types (<c>llama_token_type</c>).</summary>
    private const int Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6;

    private const string Gpt2Regex =
        @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private const string Cl100kRegex =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
        + @"|\s*[\r\n]+|\s+(?!\S)|\s+";

    private const string Qwen2Regex =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
        + @"|\s*[\r\n]+|\s+(?!\S)|\s+";

    private const string O200kRegex =
        @"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
        + @"(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+"
        + @"[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}"
        + @"| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>Split regexes → the llama.cpp pre-tokenizer that splits the same way, with the
    /// known difference (null when exact).</summary>
    private static readonly (string Regex, string Pre, string? Difference)[] PreTokenizers =
    [
        (Gpt2Regex, "gpt-2", null),
        (TokenizerPipeline.SplitRegex, "gpt-2",
            "the tokenizer's regex keeps combining marks (\\p{M}) with the letters before them; "
            + "llama.cpp's gpt-2 pre-tokenizer, the nearest it has, splits them off, so words with "
            + "combining marks (Devanagari, Thai, Arabic vowel signs, decomposed accents) can "
            + "tokenize differently where the vocabulary has tokens joining a letter and a mark "
            + "(GPT-2's has none)"),
        (Cl100kRegex, "llama-bpe", null),
        (Qwen2Regex, "qwen2", null),
        (O200kRegex, "gpt-4o", null),
    ];

    /// <summary>Reads the tokenizer of <paramref name="directory"/> and returns its GGUF
    /// metadata for a model with <paramref name="vocabSize"/> embedding rows.</summary>
    public static GgufTokenizerMetadata FromDirectory(string directory, int vocabSize)
    {
        ArgumentNullException.ThrowIfNull(directory);
        string file = Path.Combine(directory, "tokenizer.json");
        JsonObject root = HfModelDirectory.ReadJsonObject(file);
        HfTokenizer tokenizer = HfTokenizer.Load(directory);
        JsonObject? config = File.Exists(Path.Combine(directory, "tokenizer_config.json"))
            ? HfModelDirectory.ReadJsonObject(Path.Combine(directory, "tokenizer_config.json"))
            : null;

        if (root["model"] is not JsonObject model)
        {
            throw new ZettException($"{file}: no model object");
        }
        if (tokenizer.ModelKind != TokenizerModelKind.Bpe)
        {
            throw new ZettException($"{file}: a {tokenizer.ModelKind} tokenizer cannot be written as a GGUF "
                + "tokenizer model zett supports: llama.cpp's gpt2 and llama models are BPE "
                + "(its Unigram model needs SentencePiece's precompiled normalizer, which "
                + "tokenizer.json does not hold)");
        }
        bool byteLevel = TokenizerPipeline.IsByteLevel(root["pre_tokenizer"]);
        var notes = new List<string>();
        var kv = new List<KeyValuePair<string, GgufValue>>();

        (string[] tokens, int[] types, Dictionary<string, int> ids) =
            Vocabulary(file, model, tokenizer, vocabSize, byteLevel);
        List<(string Left, string Right)> merges = Merges(file, model);
        bool prependsSpace;
        if (byteLevel)
        {
            (string pre, bool prepend) = ByteLevelPipeline(file, root, model, notes);
            prependsSpace = prepend;
            kv.Add(new("tokenizer.ggml.model", GgufValue.String("gpt2")));
            kv.Add(new("tokenizer.ggml.pre", GgufValue.String(pre)));
            kv.Add(new("tokenizer.ggml.tokens", GgufValue.Strings(tokens)));
            kv.Add(new("tokenizer.ggml.token_type", GgufValue.Int32s(types)));
            kv.Add(new("tokenizer.ggml.merges",
                GgufValue.Strings([.. merges.Select(m => m.Left + " " + m.Right)])));
            if (prepend)
            {
                // llama.cpp reads this key for every tokenizer model but applies it only to its
                // SentencePiece-style models; for BPE it still strips the leading space when
                // detokenizing, which is what the prepended space calls for.
                kv.Add(new("tokenizer.ggml.add_space_prefix", GgufValue.Bool(true)));
                notes.Add("the tokenizer prepends a space to the text; llama.cpp's BPE tokenizer "
                    + "cannot, so give llama.cpp \" \" + text to get Hugging Face's tokens");
            }
        }
        else
        {
            bool addSpace = SentencePiecePipeline(file, root, model);
            prependsSpace = false;
            kv.Add(new("tokenizer.ggml.model", GgufValue.String("llama")));
            kv.Add(new("tokenizer.ggml.tokens", GgufValue.Strings(tokens)));
            kv.Add(new("tokenizer.ggml.scores", GgufValue.Float32s(Scores(tokens, types, ids, merges))));
            kv.Add(new("tokenizer.ggml.token_type", GgufValue.Int32s(types)));
            kv.Add(new("tokenizer.ggml.add_space_prefix", GgufValue.Bool(addSpace)));
            if (!model["byte_fallback"].IsTrue() && !tokens.Contains("<0x0A>"))
            {
                notes.Add("the tokenizer has no byte fallback; llama.cpp maps characters outside "
                    + "the vocabulary to the unknown token as Hugging Face does");
            }
        }

        AddSpecialIds(kv, tokenizer, vocabSize);
        (bool addBos, bool addEos) = SpecialsAdded(file, root["post_processor"], tokenizer);
        kv.Add(new("tokenizer.ggml.add_bos_token", GgufValue.Bool(addBos)));
        kv.Add(new("tokenizer.ggml.add_eos_token", GgufValue.Bool(addEos)));
        AddChatTemplates(kv, directory, config);
        return new GgufTokenizerMetadata(kv, notes, prependsSpace);
    }

    private static (string[] Tokens, int[] Types, Dictionary<string, int> Ids) Vocabulary(
        string file, JsonObject model, HfTokenizer tokenizer, int vocabSize,
        bool byteLevel)
    {
        if (model["vocab"] is not JsonObject vocab)
        {
            throw new ZettException($"{file}: model.vocab is not an object");
        }
        var tokens = new string?[vocabSize];
        var types = new int[vocabSize];
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        void Put(string token, int id, int type)
        {
            if (id < 0 || id >= vocabSize)
            {
                throw new ZettException($"{file}: token '{token}' has id {id} but the model has "
                    + $"{vocabSize} embedding rows");
            }
            if (tokens[id] is { } other && other != token)
            {
                throw new ZettException($"{file}: id {id} is both '{other}' and '{token}'");
            }
            tokens[id] = token;
            types[id] = type;
            ids[token] = id;
        }
        foreach (KeyValuePair<string, JsonNode?> t in vocab)
        {
            int id = t.Value is JsonValue v && v.TryGetValue(out int i) ? i
                : throw new ZettException($"{file}: model.vocab['{t.Key}'] is not an integer id");
            bool isByte = !byteLevel && t.Key.Length == 6 && t.Key.StartsWith("<0x", StringComparison.Ordinal)
                && t.Key[5] == '>';
            Put(t.Key, id, isByte ? Byte : Normal);
        }
        // As llama.cpp's converter types them: SentencePiece vocabularies mark their unknown
        // token UNKNOWN, byte-level ones (where it is an ordinary special token, GPT-2's
        // <|endoftext|>) CONTROL.
        string? unk = byteLevel ? null : tokenizer.SpecialTokens.Unk;
        foreach (HfAddedToken a in tokenizer.AddedTokens)
        {
            Put(a.Content, a.Id, a.Content == unk ? Unknown : a.Special ? Control : UserDefined);
        }
        if (unk is not null && ids.TryGetValue(unk, out int unkId))
        {
            types[unkId] = Unknown;
        }
        for (int id = 0; id < vocabSize; id++)
        {
            if (tokens[id] is null)
            {
                // llama.cpp's converter fills rows without a token the same way.
                tokens[id] = $"[PAD{id}]";
                types[id] = Unused;
            }
        }
        return (tokens.Select(t => t!).ToArray(), types, ids);
    }

    private static List<(string Left, string Right)> Merges(string file, JsonObject model)
    {
        var merges = new List<(string, string)>();
        foreach (JsonNode? m in model["merges"] as JsonArray ?? [])
        {
            if (m is JsonValue v && v.TryGetValue(out string? s))
            {
                int space = s.IndexOf(' ', StringComparison.Ordinal);
                if (space <= 0 || s.IndexOf(' ', space + 1) >= 0)
                {
                    throw new ZettException($"{file}: merge \"{s}\" is not two tokens separated by "
                        + "one space");
                }
                merges.Add((s[..space], s[(space + 1)..]));
            }
            else if (m is JsonArray { Count: 2 } pair && Str(pair[0]) is { } l && Str(pair[1]) is { } r)
            {
                if (l.Contains(' ', StringComparison.Ordinal) || r.Contains(' ', StringComparison.Ordinal))
                {
                    throw new ZettException($"{file}: merge [\"{l}\", \"{r}\"] has a space inside a "
                        + "token, which GGUF's \"left right\" merges cannot hold");
                }
                merges.Add((l, r));
            }
            else
            {
                throw new ZettException($"{file}: a merge is neither \"a b\" nor [\"a\", \"b\"]: "
                    + m?.ToJsonString());
            }
        }
        return merges;
    }

    /// <summary>The pre-tokenizer name of a byte-level pipeline, and whether it prepends a
    /// space (a Prepend(" ") normalizer or ByteLevel's add_prefix_space).</summary>
    private static (string Pre, bool Prepend) ByteLevelPipeline(string file, JsonObject root,
        JsonObject model, List<string> notes)
    {
        bool prepend = false;
        JsonNode? normalizer = root["normalizer"];
        if (normalizer is not null)
        {
            if (Str(normalizer["type"]) == "Prepend" && Str(normalizer["prepend"]) == " ")
            {
                prepend = true;
            }
            else if (Str(normalizer["type"]) == "NFC")
            {
                // As llama.cpp's converter does: NFC changes nothing in text that is already
                // NFC, which is how text is normally stored.
                notes.Add("the tokenizer's NFC normalizer is not written (llama.cpp has none): "
                    + "text that is not in NFC tokenizes differently");
            }
            else
            {
                throw new ZettException($"{file}: normalizer {normalizer.ToJsonString()} cannot be "
                    + "expressed in GGUF: llama.cpp's BPE tokenizer has no normalizer");
            }
        }
        if (Str(model["continuing_subword_prefix"]) is { Length: > 0 } || Str(model["end_of_word_suffix"])
            is { Length: > 0 })
        {
            throw new ZettException($"{file}: BPE with a continuing-subword prefix or end-of-word "
                + "suffix cannot be expressed in GGUF's gpt2 tokenizer model");
        }
        var regexes = new List<string>();
        JsonNode pre = root["pre_tokenizer"]!;
        IEnumerable<JsonNode?> steps = Str(pre["type"]) == "Sequence"
            ? pre["pretokenizers"] as JsonArray ?? [] : new List<JsonNode?> { pre };
        foreach (JsonNode? step in steps)
        {
            switch (Str(step?["type"]))
            {
                case "ByteLevel":
                    prepend |= step!["add_prefix_space"].IsTrue();
                    if (step["use_regex"] is null || step["use_regex"].IsTrue())
                    {
                        regexes.Add(Gpt2Regex);
                    }
                    break;
                case "Split" when SplitRegex(step!) is { } regex:
                    regexes.Add(regex);
                    break;
                default:
                    throw new ZettException($"{file}: pre-tokenizer step {step?.ToJsonString()} "
                        + "cannot be expressed in GGUF: llama.cpp splits only by its fixed "
                        + "pre-tokenizer regexes");
            }
        }
        if (regexes.Count != 1)
        {
            throw new ZettException($"{file}: the pre-tokenizer splits by {regexes.Count} regexes; "
                + "zett maps exactly one to a llama.cpp pre-tokenizer");
        }
        foreach ((string regex, string name, string? difference) in PreTokenizers)
        {
            if (regex == regexes[0])
            {
                if (difference is not null)
                {
                    notes.Add($"pre-tokenizer written as '{name}': {difference}");
                }
                if (name == "llama-bpe" && !model["ignore_merges"].IsTrue())
                {
                    notes.Add("llama.cpp's llama-bpe pre-tokenizer looks whole words up before "
                        + "merging (ignore_merges); this tokenizer merges every word");
                }
                return (name, prepend);
            }
        }
        throw new ZettException($"{file}: the pre-tokenizer regex {JsonValue.Create(regexes[0]).ToJsonString()} "
            + "is not one of llama.cpp's pre-tokenizers (it knows gpt-2, llama-bpe, qwen2, gpt-4o "
            + "and others by name, each with a fixed regex), so GGUF cannot say how to split text");
    }

    /// <summary>The regex of a Split step that keeps its matches (Isolated, or Removed with
    /// invert), or null.</summary>
    private static string? SplitRegex(JsonNode step)
    {
        string? regex = Str(step["pattern"]?["Regex"]);
        string? behavior = Str(step["behavior"]);
        bool keepsMatches = behavior == "Isolated" || (behavior == "Removed" && step["invert"].IsTrue());
        return keepsMatches ? regex : null;
    }

    /// <summary>Checks a SentencePiece-style pipeline (▁ for spaces) and returns whether it
    /// prepends ▁ to the text.</summary>
    private static bool SentencePiecePipeline(string file, JsonObject root, JsonObject model)
    {
        bool prepend = false, replaced = false;
        JsonNode? normalizer = root["normalizer"];
        IEnumerable<JsonNode?> norms = normalizer is null ? []
            : Str(normalizer["type"]) == "Sequence" ? normalizer["normalizers"] as JsonArray ?? []
            : new List<JsonNode?> { normalizer };
        foreach (JsonNode? n in norms)
        {
            if (Str(n?["type"]) == "Prepend" && Str(n!["prepend"]) == "\u2581")
            {
                prepend = true;
            }
            else if (Str(n?["type"]) == "Replace" && Str(n!["pattern"]?["String"]) == " "
                && Str(n["content"]) == "\u2581")
            {
                replaced = true;
            }
            else
            {
                throw new ZettException($"{file}: normalizer {n?.ToJsonString()} cannot be expressed "
                    + "in GGUF's llama tokenizer model (it only maps spaces to ▁)");
            }
        }
        JsonNode? pre = root["pre_tokenizer"];
        if (pre is not null)
        {
            if (Str(pre["type"]) == "Metaspace" && Str(pre["replacement"]) == "\u2581"
                && !pre["split"].IsTrue())
            {
                replaced = true;
                prepend |= Str(pre["prepend_scheme"]) is "always" or "first"
                    || pre["add_prefix_space"].IsTrue();
            }
            else
            {
                throw new ZettException($"{file}: pre-tokenizer {pre.ToJsonString()} cannot be "
                    + "expressed in GGUF's llama tokenizer model (it does not split text)");
            }
        }
        if (!replaced)
        {
            throw new ZettException($"{file}: a BPE tokenizer that is neither byte-level nor "
                + "SentencePiece-style (spaces as ▁) has no GGUF tokenizer model");
        }
        if (model["continuing_subword_prefix"] is JsonValue { } p && Str(p) is { Length: > 0 })
        {
            throw new ZettException($"{file}: a continuing-subword prefix cannot be expressed in GGUF");
        }
        return prepend;
    }

    /// <summary>Scores that make llama.cpp's score-driven merging follow the merge ranks: a
    /// token made by merge <c>r</c> (its first) scores <c>-r</c>; tokens no merge makes score
    /// below every merge (they are never the result of one in Hugging Face).</summary>
    private static float[] Scores(string[] tokens, int[] types, Dictionary<string, int> ids,
        List<(string Left, string Right)> merges)
    {
        float[] scores = new float[tokens.Length];
        float unreachable = -(merges.Count + 1);
        Array.Fill(scores, unreachable);
        var seen = new HashSet<int>();
        for (int rank = 0; rank < merges.Count; rank++)
        {
            if (ids.TryGetValue(merges[rank].Left + merges[rank].Right, out int id) && seen.Add(id))
            {
                scores[id] = -rank;
            }
        }
        for (int id = 0; id < tokens.Length; id++)
        {
            if (types[id] != Normal)
            {
                scores[id] = 0;
            }
        }
        return scores;
    }

    private static void AddSpecialIds(List<KeyValuePair<string, GgufValue>> kv, HfTokenizer tokenizer,
        int vocabSize)
    {
        void Id(string key, string? token)
        {
            if (token is not null && tokenizer.TokenToId(token) is int id && id < vocabSize)
            {
                kv.Add(new($"tokenizer.ggml.{key}_token_id", GgufValue.UInt32((uint)id)));
            }
        }
        SpecialTokenMap s = tokenizer.SpecialTokens;
        Id("bos", s.Bos);
        Id("eos", s.Eos);
        Id("unknown", s.Unk);
        Id("seperator", s.Sep);
        Id("padding", s.Pad);
        Id("mask", s.Mask);
    }

    /// <summary>Whether Hugging Face's post-processor adds the BOS and EOS tokens to a single
    /// sequence (the behaviour of <c>encode(text, add_special_tokens=True)</c>).</summary>
    private static (bool Bos, bool Eos) SpecialsAdded(string file, JsonNode? post, HfTokenizer tokenizer)
    {
        if (post is null)
        {
            return (false, false);
        }
        switch (Str(post["type"]))
        {
            case "ByteLevel":
                return (false, false);
            case "Sequence":
                (bool, bool) result = (false, false);
                foreach (JsonNode? p in post["processors"] as JsonArray ?? [])
                {
                    (bool b, bool e) = SpecialsAdded(file, p, tokenizer);
                    result = (result.Item1 | b, result.Item2 | e);
                }
                return result;
            case "TemplateProcessing":
                JsonArray single = post["single"] as JsonArray ?? [];
                string? first = Str(single.FirstOrDefault()?["SpecialToken"]?["id"]);
                string? last = single.Count > 1 ? Str(single[^1]?["SpecialToken"]?["id"]) : null;
                int middle = single.Count(p => p?["SpecialToken"] is not null) - (first is null ? 0 : 1)
                    - (last is null ? 0 : 1);
                if (middle != 0)
                {
                    throw new ZettException($"{file}: the post-processor puts special tokens inside "
                        + "the sequence; GGUF can only add BOS before and EOS after it");
                }
                CheckSpecial(file, first, tokenizer.SpecialTokens.Bos, "BOS");
                CheckSpecial(file, last, tokenizer.SpecialTokens.Eos, "EOS");
                return (first is not null, last is not null);
            case "RobertaProcessing" or "BertProcessing":
                CheckSpecial(file, Str(post["cls"]?[0]), tokenizer.SpecialTokens.Bos, "BOS");
                CheckSpecial(file, Str(post["sep"]?[0]), tokenizer.SpecialTokens.Eos, "EOS");
                return (true, true);
            default:
                throw new ZettException($"{file}: post-processor {Str(post["type"])} cannot be "
                    + "expressed in GGUF");
        }
    }

    private static void CheckSpecial(string file, string? added, string? declared, string what)
    {
        if (added is not null && added != declared)
        {
            throw new ZettException($"{file}: the post-processor adds '{added}' where GGUF adds the "
                + $"{what} token ('{declared ?? "none"}')");
        }
    }

    private static void AddChatTemplates(List<KeyValuePair<string, GgufValue>> kv, string directory,
        JsonObject? config)
    {
        string jinja = Path.Combine(directory, "chat_template.jinja");
        if (File.Exists(jinja))
        {
            kv.Add(new("tokenizer.chat_template", GgufValue.String(File.ReadAllText(jinja))));
            return;
        }
        switch (config?["chat_template"])
        {
            case JsonValue v when v.TryGetValue(out string? template):
                kv.Add(new("tokenizer.chat_template", GgufValue.String(template)));
                break;
            case JsonArray list:
                foreach (JsonNode? item in list)
                {
                    if (Str(item?["name"]) is { } name && Str(item!["template"]) is { } template)
                    {
                        kv.Add(new(name == "default" ? "tokenizer.chat_template"
                            : $"tokenizer.chat_template.{name}", GgufValue.String(template)));
                    }
                }
                break;
        }
    }

    private static string? Str(JsonNode? node) =>
        node is JsonValue v && v.TryGetValue(out string? s) ? s : null;

    private static bool IsTrue(this JsonNode? node) =>
        node is JsonValue v && v.TryGetValue(out bool b) && b;
}
