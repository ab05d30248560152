using System.Text.Json;

namespace ZeTT.Runtime.Hypernetwork;

/// <summary>
/// A hypernetwork's <c>config.json</c> (<c>model_type: zett_hypernetwork</c>), with the
/// reference's defaults for absent keys. The RoBERTa encoder's own settings are not stored there:
/// they are roberta-base's (<see cref="EncoderLayerNormEps"/> 1e-5, erf GELU, one token type,
/// 514 positions) and shapes come from the tensors.
/// </summary>
public sealed class HypernetConfig
{
    /// <summary>Width of the base model's embeddings.</summary>
    public int NEmbd { get; init; } = 768;

    /// <summary>Encoder width H.</summary>
    public int HiddenSize { get; init; }

    /// <summary>Encoder and projector intermediate width I.</summary>
    public int IntermediateSize { get; init; }

    /// <summary>Number of encoder layers.</summary>
    public int NumLayers { get; init; } = 3;

    /// <summary>Attention heads (default H/64).</summary>
    public int NumAttentionHeads { get; init; }

    /// <summary>Surface-form length L.</summary>
    public int SurfaceMaxLen { get; init; } = 16;

    /// <summary>Whether in/out scalers are applied.</summary>
    public bool RescaleEmbeddings { get; init; }

    /// <summary>Whether a bias is predicted.</summary>
    public bool PredictBias { get; init; } = true;

    /// <summary>One output head of width D_in instead of separate in/out heads.</summary>
    public bool SingleHead { get; init; }

    /// <summary>Whether a language embedding is appended as an extra position.</summary>
    public bool EmbedLangId { get; init; }

    /// <summary>Number of language embeddings.</summary>
    public int NumLangs { get; init; }

    /// <summary>Language codes, indexed like the language embeddings (may be empty).</summary>
    public IReadOnlyList<string> Langs { get; init; } = [];

    /// <summary>Extra (fallback) embeddings for ids ≥ <see cref="OriginalVocabSize"/>.</summary>
    public int NumExtraTokens { get; init; }

    /// <summary>Vocabulary size of the base model's tokenizer before byte-level conversion.</summary>
    public int OriginalVocabSize { get; init; }

    /// <summary>The hn tokenizer's pad id; positions holding it are masked.</summary>
    public int PadTokenId { get; init; }

    /// <summary>Whether the model is untied: source embeddings are [E_in, E_out].</summary>
    public bool SeparateOutEmbeddings { get; init; }

    /// <summary>Pool all positions flattened instead of position 0.</summary>
    public bool ConcatLastHiddenState { get; init; }

    /// <summary>Must be true: the released checkpoints embed via the source embeddings.</summary>
    public bool EmbedUsingSourceEmbeddings { get; init; }

    /// <summary>LayerNorm eps of the RoBERTa encoder (roberta-base).</summary>
    public float EncoderLayerNormEps { get; init; } = 1e-5f;

    /// <summary>LayerNorm eps of the projector blocks.</summary>
    public float ProjectorLayerNormEps { get; init; } = 1e-6f;

    /// <summary>Width of the source embeddings: n_embd, or 2·n_embd when untied.</summary>
    public int SourceWidth => SeparateOutEmbeddings ? 2 * NEmbd : NEmbd;

    /// <summary>Sequence length the encoder sees: L, plus one for the language position.</summary>
    public int SequenceLength => SurfaceMaxLen + (EmbedLangId ? 1 : 0);

    /// <summary>Head dimension H / heads.</summary>
    public int HeadDim => HiddenSize / NumAttentionHeads;

    /// <summary>Parses config.json text; <paramref name="source"/> names it in errors.</summary>
    public static HypernetConfig Parse(string json, string source)
    {
        ArgumentNullException.ThrowIfNull(json);
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw new ZettException($"{source}: not valid JSON: {e.Message}");
        }
        using (doc)
        {
            JsonElement r = doc.RootElement;
            if (r.ValueKind != JsonValueKind.Object)
            {
                throw new ZettException($"{source}: expected a JSON object");
            }
            string? modelType = Str(r, "model_type");
            if (modelType is not null && modelType != "zett_hypernetwork")
            {
                throw new ZettException(
                    $"{source}: model_type is '{modelType}', expected 'zett_hypernetwork'");
            }
            int hidden = Int(r, source, "hn_hidden_size", null)
                ?? throw new ZettException($"{source}: missing hn_hidden_size");
            int heads = Int(r, source, "hn_num_attention_heads", null) ?? hidden / 64;
            if (heads <= 0 || hidden % heads != 0)
            {
                throw new ZettException(
                    $"{source}: hn_hidden_size {hidden} is not divisible by {heads} heads");
            }
            var langs = new List<string>();
            if (r.TryGetProperty("langs", out JsonElement l) && l.ValueKind == JsonValueKind.Array)
            {
                langs.AddRange(l.EnumerateArray().Select(x => x.GetString() ?? ""));
            }
            var config = new HypernetConfig
            {
                NEmbd = Int(r, source, "n_embd", 768)!.Value,
                HiddenSize = hidden,
                IntermediateSize = Int(r, source, "hn_intermediate_size", null)
                    ?? throw new ZettException($"{source}: missing hn_intermediate_size"),
                NumLayers = Int(r, source, "hn_n_layers", 3)!.Value,
                NumAttentionHeads = heads,
                SurfaceMaxLen = Int(r, source, "hn_surface_maxlen", 16)!.Value,
                RescaleEmbeddings = Bool(r, "hn_rescale_embeddings", false),
                PredictBias = Bool(r, "hn_predict_bias", true),
                SingleHead = Bool(r, "hn_single_head", false),
                EmbedLangId = Bool(r, "hn_embed_lang_id", false),
                NumLangs = Int(r, source, "n_langs", null) ?? langs.Count,
                Langs = langs,
                NumExtraTokens = Int(r, source, "hn_n_extra_tokens", 0)!.Value,
                OriginalVocabSize = Int(r, source, "original_vocab_size", null)
                    ?? throw new ZettException($"{source}: missing original_vocab_size"),
                PadTokenId = Int(r, source, "pad_token_id", null)
                    ?? throw new ZettException($"{source}: missing pad_token_id"),
                SeparateOutEmbeddings = Bool(r, "separate_out_embeddings", false),
                ConcatLastHiddenState = Bool(r, "hn_concat_last_hidden_state", false),
                EmbedUsingSourceEmbeddings = Bool(r, "hn_embed_using_source_embeddings", false),
            };
            if (!config.EmbedUsingSourceEmbeddings)
            {
                throw new ZettException($"{source}: hn_embed_using_source_embeddings is false; "
                    + "only hypernetworks that embed through the source embeddings are supported "
                    + "(every released checkpoint does)");
            }
            if (Bool(r, "hn_embed_target_priors", false)
                || Bool(r, "hn_add_inter_token_attention", false))
            {
                throw new ZettException($"{source}: hn_embed_target_priors and "
                    + "hn_add_inter_token_attention are not supported (no released checkpoint "
                    + "uses them)");
            }
            if (config.EmbedLangId && config.NumLangs <= 0)
            {
                throw new ZettException($"{source}: hn_embed_lang_id is set but n_langs is not");
            }
            return config;
        }
    }

    /// <summary>Reads <c>config.json</c> from a hypernetwork directory.</summary>
    public static HypernetConfig Load(string directory)
    {
        string path = Path.Combine(directory, "config.json");
        if (!File.Exists(path))
        {
            throw new ZettException($"{path}: file not found (is {directory} a hypernetwork "
                + "directory?)");
        }
        return Parse(File.ReadAllText(path), path);
    }

    /// <summary>Index of <paramref name="langCode"/> in <see cref="Langs"/>; a clear error
    /// listing the valid codes when it is missing or unknown.</summary>
    public int ResolveLanguage(string? langCode)
    {
        if (!EmbedLangId)
        {
            if (langCode is not null)
            {
                throw new ZettException(
                    $"--lang {langCode}: this hypernetwork has no language embeddings");
            }
            return -1;
        }
        string valid = Langs.Count > 0 ? string.Join(", ", Langs) : $"indices 0..{NumLangs - 1}";
        if (langCode is null)
        {
            throw new ZettException($"this hypernetwork is multilingual: choose --lang from {valid}");
        }
        int index = Langs.ToList().IndexOf(langCode);
        if (index < 0 && Langs.Count == 0 && int.TryParse(langCode, out int n) && n >= 0
            && n < NumLangs)
        {
            index = n;
        }
        return index >= 0
            ? index
            : throw new ZettException($"--lang {langCode}: unknown language; valid: {valid}");
    }

    private static string? Str(JsonElement r, string key) =>
        r.TryGetProperty(key, out JsonElement v) && v.ValueKind == JsonValueKind.String
            ? v.GetString()
            : null;

    private static bool Bool(JsonElement r, string key, bool fallback) =>
        r.TryGetProperty(key, out JsonElement v)
            ? v.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => fallback,
            }
            : fallback;

    private static int? Int(JsonElement r, string source, string key, int? fallback)
    {
        if (!r.TryGetProperty(key, out JsonElement v) || v.ValueKind == JsonValueKind.Null)
        {
            return fallback;
        }
        return v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i)
            ? i
            : throw new ZettException($"{source}: {key} must be an integer, got {v.GetRawText()}");
    }
}
