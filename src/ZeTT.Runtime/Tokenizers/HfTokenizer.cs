using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

using ZeTT.Runtime.IO;

namespace ZeTT.Runtime.Tokenizers;

/// <summary>One entry of tokenizer.json's <c>added_tokens</c>.</summary>
/// <param name="Id">The token's id.</param>
/// <param name="Content">Its text.</param>
/// <param name="Special">Whether the library treats it as special (skipped when decoding).</param>
/// <param name="SingleWord">Matches only as a whole word.</param>
/// <param name="LStrip">Swallows whitespace on its left.</param>
/// <param name="RStrip">Swallows whitespace on its right.</param>
/// <param name="Normalized">Matched against the normalized text.</param>
public sealed record HfAddedToken(int Id, string Content, bool Special, bool SingleWord = false,
    bool LStrip = false, bool RStrip = false, bool Normalized = false);

/// <summary>
/// A Hugging Face tokenizer: tokenizer.json (BPE, Unigram or WordPiece model, added tokens,
/// normalizer, pre-tokenizer, post-processor, decoder) plus the special tokens that
/// <c>transformers</c> would give it (from tokenizer_config.json, special_tokens_map.json and the
/// defaults of its tokenizer class). Immutable; conversion returns a new instance.
/// </summary>
public sealed class HfTokenizer
{
    private static readonly string[] BuiltinNames = ["gpt2", "r50k_base", "cl100k_base", "o200k_base"];

    private readonly Dictionary<int, HfAddedToken> addedById;
    private readonly Dictionary<string, HfAddedToken> addedByContent;
    private readonly List<int> rawBuffer = [];
    private EncodingPipeline? pipeline;

    internal HfTokenizer(string source, TokenizerModel model, JsonObject components,
        IReadOnlyList<HfAddedToken> addedTokens, SpecialTokenMap specialTokens,
        JsonObject? tokenizerConfig, string? tokenizerClass)
    {
        Source = source;
        Model = model;
        Components = components;
        AddedTokens = addedTokens;
        SpecialTokens = specialTokens;
        TokenizerConfig = tokenizerConfig;
        TokenizerClass = tokenizerClass;
        addedById = [];
        addedByContent = new Dictionary<string, HfAddedToken>(StringComparer.Ordinal);
        foreach (HfAddedToken t in addedTokens)
        {
            addedById[t.Id] = t;
            addedByContent[t.Content] = t;
        }
        VocabSize = model.Size + addedByContent.Keys.Count(k => model.TokenToId(k) is null);
        IsByteLevel = TokenizerPipeline.IsByteLevel(components["pre_tokenizer"]);
    }

    /// <summary>Where the tokenizer came from (a file, or <c>builtin:NAME</c>).</summary>
    public string Source { get; }

    /// <summary>The model's kind.</summary>
    public TokenizerModelKind ModelKind => Model.Kind;

    /// <summary><c>len(tokenizer)</c> as transformers counts it: the model's vocabulary plus
    /// the added tokens that are not in it.</summary>
    public int VocabSize { get; }

    /// <summary>True if the pre-tokenizer maps text to GPT-2's byte alphabet.</summary>
    public bool IsByteLevel { get; }

    /// <summary>tokenizer.json's <c>added_tokens</c>.</summary>
    public IReadOnlyList<HfAddedToken> AddedTokens { get; }

    /// <summary>The special-token attributes (bos, eos, unk, sep, pad, cls, mask, additional).
    /// </summary>
    public SpecialTokenMap SpecialTokens { get; }

    /// <summary>The transformers tokenizer class used for the special-token defaults, if known.
    /// </summary>
    public string? TokenizerClass { get; }

    /// <summary>For a tokenizer made by <see cref="ByteLevelConverter"/> that kept every original
    /// id: the length of the original tokenizer (ids at or above it are the symbols conversion
    /// appended). Null otherwise.</summary>
    public int? OriginalVocabSize { get; internal init; }

    /// <summary><c>all_special_tokens</c> with <c>all_special_ids</c>; a token that is not in the
    /// vocabulary gets the unknown token's id (as transformers does), or -1 if there is none.
    /// </summary>
    public IReadOnlyList<(string Token, int Id)> AllSpecialTokens =>
        [.. SpecialTokens.All().Select(t => (t, TokenToId(t) ?? UnkTokenId ?? -1))];

    /// <summary>The end-of-sequence token's id (unknown id if it is not in the vocabulary).
    /// </summary>
    public int? EosTokenId => SpecialId(SpecialTokens.Eos);

    /// <summary>The padding token's id.</summary>
    public int? PadTokenId => SpecialId(SpecialTokens.Pad);

    /// <summary>The beginning-of-sequence token's id.</summary>
    public int? BosTokenId => SpecialId(SpecialTokens.Bos);

    /// <summary>The unknown token's id (null if unset or not in the vocabulary).</summary>
    public int? UnkTokenId => SpecialTokens.Unk is { } unk ? TokenToId(unk) : null;

    internal TokenizerModel Model { get; }

    /// <summary>tokenizer.json without <c>model</c> and <c>added_tokens</c>.</summary>
    internal JsonObject Components { get; }

    internal JsonObject? TokenizerConfig { get; }

    /// <summary>The token with id <paramref name="id"/> (added tokens first, then the model).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">No token has that id.</exception>
    public string IdToToken(int id) => TryIdToToken(id)
        ?? throw new ArgumentOutOfRangeException(nameof(id), id, $"{Source} has no token with this id");

    /// <summary>The token with id <paramref name="id"/>, or null.</summary>
    public string? TryIdToToken(int id) =>
        addedById.TryGetValue(id, out HfAddedToken? t) ? t.Content : Model.IdToToken(id);

    /// <summary>The id of <paramref name="token"/> (added tokens first, then the model), or null.
    /// </summary>
    public int? TokenToId(string token) =>
        addedByContent.TryGetValue(token, out HfAddedToken? t) ? t.Id : Model.TokenToId(token);

    /// <summary>Tokenizes one byte-level string with the model alone (no normalizer, no
    /// pre-tokenizer, no added tokens): BPE by merge rank, Unigram by Viterbi, WordPiece by
    /// longest match.</summary>
    public int[] TokenizeRawModel(string byteLevelToken)
    {
        ArgumentNullException.ThrowIfNull(byteLevelToken);
        lock (rawBuffer)
        {
            rawBuffer.Clear();
            Model.Tokenize(byteLevelToken, rawBuffer);
            return [.. rawBuffer];
        }
    }

    /// <summary>Appends the raw-model ids of <paramref name="token"/> to <paramref name="output"/>
    /// (thread-safe, allocation-free in the steady state).</summary>
    internal void TokenizeRawModel(ReadOnlySpan<char> token, List<int> output) =>
        Model.Tokenize(token, output);

    /// <summary>The normalizer, pre-tokenizer, model, post-processor and decoder of
    /// tokenizer.json, built on first use.</summary>
    internal EncodingPipeline Pipeline => LazyInitializer.EnsureInitialized(ref pipeline,
        () => new EncodingPipeline(Model, Components, AddedTokens, Source));

    /// <summary>
    /// Encodes <paramref name="text"/> as the Rust <c>tokenizers</c> library's
    /// <c>encode(text, add_special_tokens)</c> does: added tokens, normalizer, pre-tokenizer,
    /// model, truncation, post-processor (its special tokens only if
    /// <paramref name="addSpecialTokens"/>), padding. Thread-safe.
    /// </summary>
    public TokenizerEncoding Encode(string text, bool addSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        return Pipeline.Encode(text, addSpecialTokens);
    }

    /// <summary>Encodes every text on all cores; the results are in input order and equal to
    /// <see cref="Encode"/> of each text.</summary>
    public IReadOnlyList<TokenizerEncoding> EncodeBatch(IReadOnlyList<string> texts,
        bool addSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(texts);
        EncodingPipeline p = Pipeline;
        var results = new TokenizerEncoding[texts.Count];
        Parallel.For(0, texts.Count, i => results[i] = p.Encode(
            texts[i] ?? throw new ArgumentException($"text {i} is null", nameof(texts)),
            addSpecialTokens));
        return results;
    }

    /// <summary>
    /// Decodes ids as the Rust library's <c>decode(ids, skip_special_tokens)</c>: each id's
    /// token (added tokens first; unknown ids are left out), special tokens dropped if
    /// <paramref name="skipSpecialTokens"/>, then the decoder (tokens joined by spaces if there
    /// is none).
    /// </summary>
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false) =>
        Pipeline.Decode(ids, skipSpecialTokens);

    /// <summary>A copy with the padding token set (as <c>tokenizer.pad_token = …</c>).</summary>
    public HfTokenizer WithPadToken(string? token) => WithSpecialTokens(SpecialTokens with { Pad = token });

    internal HfTokenizer WithSpecialTokens(SpecialTokenMap map) =>
        new(Source, Model, Components, AddedTokens, map, TokenizerConfig, TokenizerClass)
        {
            OriginalVocabSize = OriginalVocabSize,
        };

    private int? SpecialId(string? token) => token is null ? null : TokenToId(token) ?? UnkTokenId;

    /// <summary>
    /// Loads a tokenizer: a tokenizer.json file, a directory that holds one, or a built-in name
    /// (<c>gpt2</c>, <c>r50k_base</c>, <c>cl100k_base</c>, <c>o200k_base</c>). tokenizer_config.json,
    /// special_tokens_map.json and config.json beside the file are read when present.
    /// </summary>
    public static HfTokenizer Load(string pathOrDirectoryOrBuiltinName)
    {
        ArgumentException.ThrowIfNullOrEmpty(pathOrDirectoryOrBuiltinName);
        string path = pathOrDirectoryOrBuiltinName;
        if (Directory.Exists(path))
        {
            string file = Path.Combine(path, "tokenizer.json");
            if (!File.Exists(file))
            {
                string model = Path.Combine(path, "tokenizer.model");
                if (File.Exists(model))
                {
                    return LoadFile(model);
                }
                throw new ZettException($"{path}: directory has no tokenizer.json or " +
                    "tokenizer.model");
            }
            return LoadFile(file);
        }
        if (File.Exists(path))
        {
            return LoadFile(path);
        }
        if (Array.IndexOf(BuiltinNames, path) >= 0)
        {
            return TiktokenBuiltins.Create(path);
        }
        throw new ZettException(
            $"'{path}' is neither a tokenizer.json, a directory with one, nor a built-in tokenizer " +
            $"({string.Join(", ", BuiltinNames)})");
    }

    private static HfTokenizer LoadFile(string file)
    {
        byte[] bytes = InputFile.ReadAllBytes(file, InputFile.TokenizerJsonLimit, "tokenizer.json");
        JsonObject root;
        switch (Classify(file, bytes))
        {
            case FileKind.Tiktoken:
                return TiktokenBuiltins.FromFile(file, bytes);
            case FileKind.SentencePiece:
                string directory = Path.GetDirectoryName(Path.GetFullPath(file))!;
                // Through text, so that the converted file passes the same validating reader
                // as any tokenizer.json.
                root = (JsonObject)JsonInput.Parse(System.Text.Encoding.UTF8.GetBytes(
                    SentencePieceModelFile.ToTokenizerJson(file, bytes,
                        JsonInput.ReadOptionalObject(Path.Combine(directory,
                            "tokenizer_config.json"))).ToJsonString()),
                    file, JsonInput.TokenizerDepth)!;
                break;
            default:
                root = JsonInput.Parse(bytes, file, JsonInput.TokenizerDepth) as JsonObject
                    ?? throw new ZettException($"{file}: not a JSON object");
                break;
        }
        try
        {
            return Build(root, file);
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException
            or InvalidCastException && e.Source == "System.Text.Json")
        {
            // A value of the wrong type that a component reader took as given (a string where
            // an object belongs): the typed readers name the JSON path; this names the file.
            throw new ZettException($"{file}: a value has the wrong type: {e.Message}", e);
        }
    }

    private static HfTokenizer Build(JsonObject root, string file)
    {
        JsonObject modelJson = JsonInput.Object(root, "model", file)
            ?? throw new ZettException($"{file}: no 'model' object (not a tokenizer.json?)");
        TokenizerPipeline.Validate(root, file);
        TokenizerModel model = TokenizerModel.FromJson(modelJson, file);
        List<HfAddedToken> added = ParseAddedTokens(root, file);
        var components = new JsonObject();
        foreach (KeyValuePair<string, JsonNode?> kv in root)
        {
            if (kv.Key is not ("model" or "added_tokens"))
            {
                components[kv.Key] = kv.Value?.DeepClone();
            }
        }

        string directory = Path.GetDirectoryName(Path.GetFullPath(file))!;
        JsonObject? config = JsonInput.ReadOptionalObject(Path.Combine(directory, "tokenizer_config.json"));
        JsonObject? map = JsonInput.ReadOptionalObject(Path.Combine(directory, "special_tokens_map.json"));
        JsonObject? modelConfig = JsonInput.ReadOptionalObject(Path.Combine(directory, "config.json"));
        string? cls = ResolveClass(config, modelConfig, model, components, added);
        SpecialTokenMap specials = SpecialTokenMap.ClassDefaults(cls).Override(config);
        if (config is null || !config.ContainsKey("added_tokens_decoder"))
        {
            specials = specials.Override(map);
        }
        var tokenizer = new HfTokenizer(file, model, components, added, specials, config, cls);
        _ = tokenizer.Pipeline;
        return tokenizer;
    }

    private enum FileKind
    {
        Json,
        Tiktoken,
        SentencePiece,
    }

    /// <summary>Tells the files Llama-2, Mistral and Llama-3 ship beside or instead of
    /// tokenizer.json apart: a SentencePiece model (protobuf, first byte 0x0A) or tiktoken ranks
    /// (base64 token and rank per line). Anything else that does not start with <c>{</c> is
    /// refused in one line.</summary>
    private static FileKind Classify(string file, byte[] bytes)
    {
        int i = 0;
        if (bytes.Length >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF)
        {
            i = 3;
        }
        while (i < bytes.Length && bytes[i] is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n')
        {
            i++;
        }
        if (i < bytes.Length && bytes[i] == (byte)'{')
        {
            return FileKind.Json;
        }
        int end = Array.IndexOf(bytes, (byte)'\n');
        string firstLine = System.Text.Encoding.UTF8.GetString(bytes, 0,
            end < 0 ? Math.Min(bytes.Length, 200) : Math.Min(end, 200)).TrimEnd('\r');
        if (System.Text.RegularExpressions.Regex.IsMatch(firstLine, "^[A-Za-z0-9+/]+=* [0-9]+$"))
        {
            return FileKind.Tiktoken;
        }
        if (SentencePieceModelFile.LooksLikeModel(bytes))
        {
            return FileKind.SentencePiece;
        }
        throw new ZettException($"{file}: unsupported format: not a tokenizer.json (no JSON " +
            "object), a SentencePiece model or tiktoken ranks");
    }

    private static List<HfAddedToken> ParseAddedTokens(JsonObject root, string file)
    {
        var list = new List<HfAddedToken>();
        if (JsonInput.Array(root, "added_tokens", file) is not { } array)
        {
            return list;
        }
        foreach (JsonNode? t in array)
        {
            if (t is not JsonObject o)
            {
                throw JsonInput.Error(file, t, "an added token must be an object");
            }
            int id = JsonInput.Int32(o, "id", file, 0, TokenizerLimits.MaxId)
                ?? throw JsonInput.Error(file, o, "added token has no id");
            string content = JsonInput.String(o, "content", file)
                ?? throw JsonInput.Error(file, o, "added token has no content");
            TokenizerLimits.CheckToken(content, file, o["content"]);
            list.Add(new HfAddedToken(id, content,
                Flag(o, "special", file), Flag(o, "single_word", file), Flag(o, "lstrip", file),
                Flag(o, "rstrip", file), Flag(o, "normalized", file)));
        }
        return list;
    }

    private static bool Flag(JsonObject o, string key, string file) =>
        JsonInput.Bool(o, key, file) ?? false;

    /// <summary>The transformers class AutoTokenizer would pick: tokenizer_config.json's
    /// <c>tokenizer_class</c>, else config.json's <c>model_type</c>, else a guess from the
    /// tokenizer.json itself (its post-processor, model kind and special-looking tokens).</summary>
    private static string? ResolveClass(JsonObject? config, JsonObject? modelConfig,
        TokenizerModel model, JsonObject components, List<HfAddedToken> added)
    {
        if (config?["tokenizer_class"] is JsonValue c && c.TryGetValue(out string? name))
        {
            return name;
        }
        string? modelType = modelConfig?["model_type"] is JsonValue mt
            && mt.TryGetValue(out string? t) ? t : null;
        switch (modelType)
        {
            case "llama" or "mistral" or "mixtral":
                return "LlamaTokenizerFast";
            case "gpt2":
                return "GPT2TokenizerFast";
            case "gpt_neox":
                return "GPTNeoXTokenizerFast";
            case "roberta":
                return "RobertaTokenizerFast";
            case "xlm-roberta":
                return "XLMRobertaTokenizerFast";
            case "bert":
                return "BertTokenizerFast";
            case "t5" or "mt5":
                return "T5TokenizerFast";
            case "gemma" or "gemma2":
                return "GemmaTokenizerFast";
        }
        bool Has(string token) => model.TokenToId(token) is not null
            || added.Any(a => a.Content == token);
        if (components["post_processor"]?["type"]?.GetValue<string>() == "RobertaProcessing")
        {
            return "RobertaTokenizerFast";
        }
        if (model.Kind == TokenizerModelKind.WordPiece && Has("[UNK]"))
        {
            return "BertTokenizerFast";
        }
        if (model.Kind == TokenizerModelKind.Unigram && Has("<extra_id_0>"))
        {
            return "T5TokenizerFast";
        }
        if (TokenizerPipeline.IsByteLevel(components["pre_tokenizer"]) && Has("<|endoftext|>"))
        {
            return "GPT2TokenizerFast";
        }
        if (model.Kind == TokenizerModelKind.Bpe && Has("<s>") && Has("</s>") && Has("<unk>"))
        {
            return "LlamaTokenizerFast";
        }
        return null;
    }

    /// <summary>
    /// Writes tokenizer.json (loadable by the Hugging Face <c>tokenizers</c> library), and
    /// tokenizer_config.json and special_tokens_map.json that give <c>transformers</c> the same
    /// special tokens (class <c>PreTrainedTokenizerFast</c>, every special-token attribute
    /// written out, the other keys of the original tokenizer_config.json kept). Each file is
    /// written to a temporary name and then renamed.
    /// </summary>
    public void Save(string directory)
    {
        if (File.Exists(directory))
        {
            throw new ZettException($"{directory}: is a file, not a directory to write the tokenizer into");
        }
        Directory.CreateDirectory(directory);
        WriteAtomic(Path.Combine(directory, "tokenizer.json"), WriteTokenizerJson);
        WriteAtomic(Path.Combine(directory, "tokenizer_config.json"),
            w => BuildTokenizerConfig().WriteTo(w));
        WriteAtomic(Path.Combine(directory, "special_tokens_map.json"),
            w => BuildSpecialTokensMap().WriteTo(w));
    }

    /// <summary>
    /// Writes the tokenizer as a new directory <paramref name="output"/> under the output
    /// policy (<see cref="OutputTarget"/>): refused when it overlaps <paramref name="inputs"/>
    /// or exists without <paramref name="overwrite"/>; the files appear together or not at all.
    /// </summary>
    public void SaveDirectory(string output, bool overwrite, IEnumerable<string?> inputs)
    {
        string full = OutputTarget.Check(output, OutputKind.Directory, overwrite, inputs);
        using OutputTarget target = OutputTarget.Begin(full, OutputKind.Directory);
        Save(target.TempPath);
        target.Commit();
    }

    private static readonly JsonWriterOptions WriterOptions = new()
    {
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        Indented = false,
    };

    private static void WriteAtomic(string path, Action<Utf8JsonWriter> write)
    {
        string temp = path + ".tmp";
        using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write))
        using (var writer = new Utf8JsonWriter(stream, WriterOptions))
        {
            write(writer);
        }
        File.Move(temp, path, overwrite: true);
    }

    internal void WriteTokenizerJson(Utf8JsonWriter w)
    {
        w.WriteStartObject();
        w.WriteString("version", Components["version"]?.GetValue<string>() ?? "1.0");
        WriteComponent(w, "truncation");
        WriteComponent(w, "padding");
        w.WriteStartArray("added_tokens");
        foreach (HfAddedToken t in AddedTokens.OrderBy(t => t.Id))
        {
            w.WriteStartObject();
            w.WriteNumber("id", t.Id);
            w.WriteString("content", t.Content);
            w.WriteBoolean("single_word", t.SingleWord);
            w.WriteBoolean("lstrip", t.LStrip);
            w.WriteBoolean("rstrip", t.RStrip);
            w.WriteBoolean("normalized", t.Normalized);
            w.WriteBoolean("special", t.Special);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        WriteComponent(w, "normalizer");
        WriteComponent(w, "pre_tokenizer");
        WriteComponent(w, "post_processor");
        WriteComponent(w, "decoder");
        w.WritePropertyName("model");
        Model.WriteJson(w);
        w.WriteEndObject();
    }

    private void WriteComponent(Utf8JsonWriter w, string key)
    {
        w.WritePropertyName(key);
        if (Components[key] is { } node)
        {
            node.WriteTo(w);
        }
        else
        {
            w.WriteNullValue();
        }
    }

    private JsonObject BuildSpecialTokensMap()
    {
        var map = new JsonObject();
        foreach (string attribute in SpecialTokenMap.Attributes)
        {
            if (SpecialTokens.Get(attribute) is { } token)
            {
                map[attribute] = token;
            }
        }
        if (SpecialTokens.Additional.Count > 0)
        {
            map["additional_special_tokens"] =
                new JsonArray([.. SpecialTokens.Additional.Select(t => (JsonNode)t)]);
        }
        return map;
    }

    private JsonObject BuildTokenizerConfig()
    {
        var config = new JsonObject();
        foreach (KeyValuePair<string, JsonNode?> kv in TokenizerConfig ?? [])
        {
            if (kv.Key is not ("added_tokens_decoder" or "tokenizer_class" or "auto_map"
                or "additional_special_tokens") && !SpecialTokenMap.Attributes.Contains(kv.Key))
            {
                config[kv.Key] = kv.Value?.DeepClone();
            }
        }
        var decoder = new JsonObject();
        foreach (HfAddedToken t in AddedTokens.OrderBy(t => t.Id))
        {
            decoder[t.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)] = new JsonObject
            {
                ["content"] = t.Content,
                ["lstrip"] = t.LStrip,
                ["normalized"] = t.Normalized,
                ["rstrip"] = t.RStrip,
                ["single_word"] = t.SingleWord,
                ["special"] = t.Special,
            };
        }
        config["added_tokens_decoder"] = decoder;
        foreach (string attribute in SpecialTokenMap.Attributes)
        {
            config[attribute] = SpecialTokens.Get(attribute);
        }
        config["additional_special_tokens"] =
            new JsonArray([.. SpecialTokens.Additional.Select(t => (JsonNode)t)]);
        config["clean_up_tokenization_spaces"] = false;
        config["tokenizer_class"] = "PreTrainedTokenizerFast";
        return config;
    }
}
