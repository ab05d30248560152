using System.Text.Json.Nodes;
using ZeTT.Runtime.IO;

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

    /// <summary>This configuration with language embeddings for <paramref name="langs"/> (one
    /// row each; hn_embed_lang_id true), everything else the same.</summary>
    public HypernetConfig WithLanguages(IReadOnlyList<string> langs)
    {
        ArgumentNullException.ThrowIfNull(langs);
        return new HypernetConfig
        {
            NEmbd = NEmbd,
            HiddenSize = HiddenSize,
            IntermediateSize = IntermediateSize,
            NumLayers = NumLayers,
            NumAttentionHeads = NumAttentionHeads,
            SurfaceMaxLen = SurfaceMaxLen,
            RescaleEmbeddings = RescaleEmbeddings,
            PredictBias = PredictBias,
            SingleHead = SingleHead,
            EmbedLangId = true,
            NumLangs = langs.Count,
            Langs = [.. langs],
            NumExtraTokens = NumExtraTokens,
            OriginalVocabSize = OriginalVocabSize,
            PadTokenId = PadTokenId,
            SeparateOutEmbeddings = SeparateOutEmbeddings,
            ConcatLastHiddenState = ConcatLastHiddenState,
            EmbedUsingSourceEmbeddings = EmbedUsingSourceEmbeddings,
            EncoderLayerNormEps = EncoderLayerNormEps,
            ProjectorLayerNormEps = ProjectorLayerNormEps,
        };
    }

    /// <summary>Width of the source embeddings: n_embd, or 2·n_embd when untied.</summary>
    public int SourceWidth => SeparateOutEmbeddings ? 2 * NEmbd : NEmbd;

    /// <summary>Sequence length the encoder sees: L, plus one for the language position.</summary>
    public int SequenceLength => SurfaceMaxLen + (EmbedLangId ? 1 : 0);

    /// <summary>Head dimension H / heads.</summary>
    public int HeadDim => HiddenSize / NumAttentionHeads;

    /// <summary>Largest width or count a config may give: far above every real hypernetwork
    /// (n_embd 8192 at most), low enough that products of two stay within a long.</summary>
    public const int MaxSize = 1 << 20;

    /// <summary>Parses config.json text; <paramref name="source"/> names it in errors.</summary>
    public static HypernetConfig Parse(string json, string source)
    {
        ArgumentNullException.ThrowIfNull(json);
        return Parse(JsonInput.Parse(json, source) as JsonObject
            ?? throw new ZettException($"{source}: expected a JSON object"), source);
    }

    /// <summary>Reads a parsed config.json; every value is checked for its type and range and
    /// an error names the file and the JSON path.</summary>
    public static HypernetConfig Parse(JsonObject r, string source)
    {
        ArgumentNullException.ThrowIfNull(r);
        string? modelType = JsonInput.String(r, "model_type", source);
        if (modelType is not null && modelType != "zett_hypernetwork")
        {
            throw new ZettException(
                $"{source}: model_type is '{modelType}', expected 'zett_hypernetwork'");
        }
        int Size(string key, int? fallback) =>
            JsonInput.Int32(r, key, source, 1, MaxSize) ?? fallback
            ?? throw new ZettException($"{source}: missing {key}");
        int Count(string key, int fallback) => JsonInput.Int32(r, key, source, 0, MaxSize) ?? fallback;
        bool Bool(string key, bool fallback) => JsonInput.Bool(r, key, source) ?? fallback;

        int hidden = Size("hn_hidden_size", null);
        int heads = JsonInput.Int32(r, "hn_num_attention_heads", source, 1, MaxSize)
            ?? Math.Max(1, hidden / 64);
        if (hidden % heads != 0)
        {
            throw new ZettException(
                $"{source}: hn_hidden_size {hidden} is not divisible by {heads} heads");
        }
        var langs = new List<string>();
        if (JsonInput.Array(r, "langs", source) is { } l)
        {
            langs.AddRange(l.Select(x => JsonInput.AsString(x, source)));
        }
        int originalVocab = Size("original_vocab_size", null);
        int extra = Count("hn_n_extra_tokens", 0);
        var config = new HypernetConfig
        {
            NEmbd = Size("n_embd", 768),
            HiddenSize = hidden,
            IntermediateSize = Size("hn_intermediate_size", null),
            NumLayers = Count("hn_n_layers", 3),
            NumAttentionHeads = heads,
            SurfaceMaxLen = Size("hn_surface_maxlen", 16),
            RescaleEmbeddings = Bool("hn_rescale_embeddings", false),
            PredictBias = Bool("hn_predict_bias", true),
            SingleHead = Bool("hn_single_head", false),
            EmbedLangId = Bool("hn_embed_lang_id", false),
            NumLangs = JsonInput.Int32(r, "n_langs", source, 0, MaxSize) ?? langs.Count,
            Langs = langs,
            NumExtraTokens = extra,
            OriginalVocabSize = originalVocab,
            PadTokenId = JsonInput.Int32(r, "pad_token_id", source, 0, int.MaxValue - 1)
                ?? throw new ZettException($"{source}: missing pad_token_id"),
            SeparateOutEmbeddings = Bool("separate_out_embeddings", false),
            ConcatLastHiddenState = Bool("hn_concat_last_hidden_state", false),
            EmbedUsingSourceEmbeddings = Bool("hn_embed_using_source_embeddings", false),
        };
        if ((long)originalVocab + extra > int.MaxValue - 1)
        {
            throw new ZettException($"{source}: original_vocab_size {originalVocab} + "
                + $"hn_n_extra_tokens {extra} exceeds the largest vocabulary");
        }
        if (config.PadTokenId >= originalVocab + extra)
        {
            throw JsonInput.Error(source, r, "pad_token_id", $"{config.PadTokenId} is outside the "
                + $"hypernetwork's vocabulary ({originalVocab} + {extra} extra tokens)");
        }
        if (config.NumLayers == 0)
        {
            throw JsonInput.Error(source, r, "hn_n_layers", "0 is out of range (at least 1)");
        }
        if (!config.EmbedUsingSourceEmbeddings)
        {
            throw new ZettException($"{source}: hn_embed_using_source_embeddings is false; "
                + "only hypernetworks that embed through the source embeddings are supported "
                + "(every released checkpoint does)");
        }
        if (Bool("hn_embed_target_priors", false) || Bool("hn_add_inter_token_attention", false))
        {
            throw new ZettException($"{source}: hn_embed_target_priors and "
                + "hn_add_inter_token_attention are not supported (no released checkpoint "
                + "uses them)");
        }
        if (config.EmbedLangId && config.NumLangs <= 0)
        {
            throw new ZettException($"{source}: hn_embed_lang_id is set but n_langs is not");
        }
        if (config.Langs.Count > config.NumLangs)
        {
            throw JsonInput.Error(source, r, "langs", $"{config.Langs.Count} languages but n_langs "
                + $"is only {config.NumLangs}");
        }
        return config;
    }

    /// <summary>Reads <c>config.json</c> from a hypernetwork directory.</summary>
    public static HypernetConfig Load(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        string path = Path.Combine(directory, "config.json");
        if (InputFile.KindOf(directory) is not PathKind.Directory)
        {
            throw new ZettException($"{directory}: not a hypernetwork directory "
                + (InputFile.KindOf(directory) == PathKind.Missing ? "(not found)" : "(not a directory)"));
        }
        if (InputFile.KindOf(path) == PathKind.Missing)
        {
            throw new ZettException($"{path}: file not found (is {directory} a hypernetwork "
                + "directory?)");
        }
        return Parse(JsonInput.ReadObject(path), path);
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
}
