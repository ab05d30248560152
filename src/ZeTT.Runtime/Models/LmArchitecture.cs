using System.Text.Json;
using System.Text.Json.Nodes;
using ZeTT.Ops;
using ZeTT.Runtime.Formats;

namespace ZeTT.Runtime.Models;

/// <summary>Normalisation layer kinds.</summary>
public enum NormKind
{
    /// <summary>RMSNorm (Llama, Mistral, Qwen2, Gemma).</summary>
    Rms,
    /// <summary>LayerNorm with bias (GPT-2, GPT-NeoX, RoBERTa).</summary>
    Layer,
}

/// <summary>Where the residual stream is normalised.</summary>
public enum BlockKind
{
    /// <summary>x += attn(norm1(x)); x += mlp(norm2(x)); final norm (decoders).</summary>
    PreNorm,
    /// <summary>x += attn(norm1(x)) + mlp(norm2(x)); final norm (GPT-NeoX
    /// use_parallel_residual).</summary>
    ParallelPreNorm,
    /// <summary>x = norm1(x + attn(x)); x = norm2(x + mlp(x)); no final norm (BERT/RoBERTa).
    /// </summary>
    PostNorm,
}

/// <summary>How a fused QKV projection's output columns are laid out.</summary>
public enum QkvLayout
{
    /// <summary>[q heads | k heads | v heads] (separate projections, GPT-2's c_attn).</summary>
    Blocks,
    /// <summary>[head][q, k, v][head_dim] (GPT-NeoX query_key_value).</summary>
    PerHead,
}

/// <summary>
/// Everything that distinguishes the transformer families, read from config.json: the model
/// graph (<see cref="LanguageModel"/>) is written once and branches only on these fields.
/// </summary>
public sealed record LmArchitecture
{
    /// <summary>config.json's model_type.</summary>
    public required string ModelType { get; init; }
    /// <summary>Decoder (causal LM) or encoder (masked LM).</summary>
    public required bool Causal { get; init; }
    /// <summary>Transformer blocks.</summary>
    public required int Layers { get; init; }
    /// <summary>Residual stream width.</summary>
    public required int Hidden { get; init; }
    /// <summary>Query heads.</summary>
    public required int Heads { get; init; }
    /// <summary>Key/value heads (grouped-query attention when fewer than the query heads).</summary>
    public required int KvHeads { get; init; }
    /// <summary>Size of one head.</summary>
    public required int HeadDim { get; init; }
    /// <summary>MLP inner width.</summary>
    public required int Intermediate { get; init; }
    /// <summary>Vocabulary (rows of the embedding matrix).</summary>
    public required int Vocab { get; init; }
    /// <summary>Longest sequence the positions cover.</summary>
    public required int MaxPositions { get; init; }
    /// <summary>Normalisation kind.</summary>
    public required NormKind Norm { get; init; }
    /// <summary>Normalisation epsilon.</summary>
    public required float NormEps { get; init; }
    /// <summary>RMSNorm scales by (1 + w) (Gemma).</summary>
    public bool NormUnitOffset { get; init; }
    /// <summary>Residual arrangement.</summary>
    public required BlockKind Block { get; init; }
    /// <summary>Rotary embedding, or null for learned absolute positions.</summary>
    public RotaryOptions? Rotary { get; init; }
    /// <summary>Added to position ids before the learned position lookup (RoBERTa: padding_idx
    /// + 1).</summary>
    public int PositionOffset { get; init; }
    /// <summary>MLP activation.</summary>
    public required ActivationFunction Activation { get; init; }
    /// <summary>Gated MLP (down(act(gate) · up)) rather than down(act(up)).</summary>
    public required bool GatedMlp { get; init; }
    /// <summary>Input embeddings are multiplied by this (Gemma: √hidden).</summary>
    public float EmbeddingScale { get; init; } = 1f;
    /// <summary>Sliding attention window (Mistral), 0 for none.</summary>
    public int SlidingWindow { get; init; }
    /// <summary>Attention logit scale.</summary>
    public required float AttentionScale { get; init; }
    /// <summary>Column layout of a fused QKV weight.</summary>
    public QkvLayout Qkv { get; init; } = QkvLayout.Blocks;
    /// <summary>Linear weights are stored [in, out] (GPT-2's Conv1D).</summary>
    public bool WeightsInOut { get; init; }
    /// <summary>Output embeddings are the input embeddings.</summary>
    public required bool Tied { get; init; }

    /// <summary>The families whose math <see cref="LanguageModel"/> implements.</summary>
    public static IReadOnlyList<string> SupportedModelTypes { get; } =
        ["llama", "mistral", "qwen2", "gemma", "gpt2", "gpt_neox", "roberta", "xlm-roberta"];

    /// <summary>Reads the architecture of <paramref name="model"/>'s config.json.</summary>
    /// <exception cref="ZettException">An unsupported family or setting, or a missing or
    /// ill-typed config value, naming config.json.</exception>
    public static LmArchitecture FromConfig(HfModelDirectory model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var c = new ConfigReader(model);
        string type = model.ModelType;
        switch (type)
        {
            case "llama" or "mistral" or "qwen2" or "gemma":
                return Llama(c, type);
            case "gpt2":
                return Gpt2(c);
            case "gpt_neox":
                return GptNeoX(c);
            case "roberta" or "xlm-roberta":
                return Roberta(c, type);
            default:
                throw new ZettException($"{model.ConfigPath}: model_type '{type}' cannot be run "
                    + $"(supported: {string.Join(", ", SupportedModelTypes)})");
        }
    }

    private static LmArchitecture Llama(ConfigReader c, string type)
    {
        int hidden = c.Int("hidden_size");
        int heads = c.Int("num_attention_heads");
        bool gemma = type == "gemma";
        int headDim = c.OptionalInt("head_dim") ?? hidden / heads;
        if (c.Has("rope_scaling"))
        {
            throw new ZettException($"{c.Path}: rope_scaling is not supported (only plain rotary "
                + "embeddings are implemented)");
        }
        int window = 0;
        if (type == "mistral")
        {
            window = c.OptionalInt("sliding_window") ?? 0;
        }
        else if (type == "qwen2" && (c.OptionalBool("use_sliding_window") ?? false))
        {
            throw new ZettException($"{c.Path}: qwen2 use_sliding_window=true is not supported");
        }
        string act = gemma
            ? c.OptionalString("hidden_activation") ?? "gelu_pytorch_tanh"
            : c.OptionalString("hidden_act") ?? "silu";
        return new LmArchitecture
        {
            ModelType = type,
            Causal = true,
            Layers = c.Int("num_hidden_layers"),
            Hidden = hidden,
            Heads = heads,
            KvHeads = c.OptionalInt("num_key_value_heads") ?? heads,
            HeadDim = headDim,
            Intermediate = c.Int("intermediate_size"),
            Vocab = c.Int("vocab_size"),
            MaxPositions = c.OptionalInt("max_position_embeddings") ?? 2048,
            Norm = NormKind.Rms,
            NormEps = (float)(c.OptionalDouble("rms_norm_eps") ?? 1e-6),
            NormUnitOffset = gemma,
            Block = BlockKind.PreNorm,
            Rotary = new RotaryOptions(RotaryStyle.HalfSplit, headDim,
                c.OptionalDouble("rope_theta") ?? 10000),
            Activation = ParseActivation(c, act),
            GatedMlp = true,
            EmbeddingScale = gemma ? MathF.Sqrt(hidden) : 1f,
            SlidingWindow = window,
            AttentionScale = 1f / MathF.Sqrt(headDim),
            Tied = c.OptionalBool("tie_word_embeddings") ?? gemma,
        };
    }

    private static LmArchitecture Gpt2(ConfigReader c)
    {
        int hidden = c.Int("n_embd");
        int heads = c.Int("n_head");
        int headDim = hidden / heads;
        return new LmArchitecture
        {
            ModelType = "gpt2",
            Causal = true,
            Layers = c.Int("n_layer"),
            Hidden = hidden,
            Heads = heads,
            KvHeads = heads,
            HeadDim = headDim,
            Intermediate = c.OptionalInt("n_inner") ?? 4 * hidden,
            Vocab = c.Int("vocab_size"),
            MaxPositions = c.Int("n_positions"),
            Norm = NormKind.Layer,
            NormEps = (float)(c.OptionalDouble("layer_norm_epsilon") ?? 1e-5),
            Block = BlockKind.PreNorm,
            Activation = ParseActivation(c, c.OptionalString("activation_function") ?? "gelu_new"),
            GatedMlp = false,
            AttentionScale = (c.OptionalBool("scale_attn_weights") ?? true)
                ? 1f / MathF.Sqrt(headDim) : 1f,
            WeightsInOut = true,
            Tied = c.OptionalBool("tie_word_embeddings") ?? true,
        };
    }

    private static LmArchitecture GptNeoX(ConfigReader c)
    {
        int hidden = c.Int("hidden_size");
        int heads = c.Int("num_attention_heads");
        int headDim = hidden / heads;
        int rotary = (int)(headDim * (c.OptionalDouble("rotary_pct") ?? 0.25));
        if (c.Has("rope_scaling"))
        {
            throw new ZettException($"{c.Path}: rope_scaling is not supported");
        }
        return new LmArchitecture
        {
            ModelType = "gpt_neox",
            Causal = true,
            Layers = c.Int("num_hidden_layers"),
            Hidden = hidden,
            Heads = heads,
            KvHeads = heads,
            HeadDim = headDim,
            Intermediate = c.Int("intermediate_size"),
            Vocab = c.Int("vocab_size"),
            MaxPositions = c.OptionalInt("max_position_embeddings") ?? 2048,
            Norm = NormKind.Layer,
            NormEps = (float)(c.OptionalDouble("layer_norm_eps") ?? 1e-5),
            Block = (c.OptionalBool("use_parallel_residual") ?? true)
                ? BlockKind.ParallelPreNorm : BlockKind.PreNorm,
            Rotary = new RotaryOptions(RotaryStyle.HalfSplit, rotary,
                c.OptionalDouble("rotary_emb_base") ?? c.OptionalDouble("rope_theta") ?? 10000),
            Activation = ParseActivation(c, c.OptionalString("hidden_act") ?? "gelu"),
            GatedMlp = false,
            AttentionScale = 1f / MathF.Sqrt(headDim),
            Qkv = QkvLayout.PerHead,
            Tied = c.OptionalBool("tie_word_embeddings") ?? false,
        };
    }

    private static LmArchitecture Roberta(ConfigReader c, string type)
    {
        int hidden = c.Int("hidden_size");
        int heads = c.Int("num_attention_heads");
        string posType = c.OptionalString("position_embedding_type") ?? "absolute";
        if (posType != "absolute")
        {
            throw new ZettException($"{c.Path}: position_embedding_type '{posType}' is not "
                + "supported (only absolute)");
        }
        int pad = c.OptionalInt("pad_token_id") ?? 1;
        int positions = c.Int("max_position_embeddings");
        return new LmArchitecture
        {
            ModelType = type,
            Causal = false,
            Layers = c.Int("num_hidden_layers"),
            Hidden = hidden,
            Heads = heads,
            KvHeads = heads,
            HeadDim = hidden / heads,
            Intermediate = c.Int("intermediate_size"),
            Vocab = c.Int("vocab_size"),
            // Positions start at padding_idx + 1, so that many rows are not usable.
            MaxPositions = positions - pad - 1,
            PositionOffset = pad + 1,
            Norm = NormKind.Layer,
            NormEps = (float)(c.OptionalDouble("layer_norm_eps") ?? 1e-12),
            Block = BlockKind.PostNorm,
            Activation = ParseActivation(c, c.OptionalString("hidden_act") ?? "gelu"),
            GatedMlp = false,
            AttentionScale = 1f / MathF.Sqrt(hidden / heads),
            Tied = c.OptionalBool("tie_word_embeddings") ?? true,
        };
    }

    private static ActivationFunction ParseActivation(ConfigReader c, string name) => name switch
    {
        "silu" or "swish" => ActivationFunction.Silu,
        "gelu" => ActivationFunction.GeluErf,
        "gelu_new" or "gelu_pytorch_tanh" or "gelu_fast" => ActivationFunction.GeluTanh,
        "relu" => ActivationFunction.Relu,
        _ => throw new ZettException($"{c.Path}: activation '{name}' is not supported (silu, gelu, "
            + "gelu_new, gelu_pytorch_tanh, relu)"),
    };

    /// <summary>Typed config.json values; errors name the file and key.</summary>
    private sealed class ConfigReader(HfModelDirectory model)
    {
        public string Path => model.ConfigPath;

        public bool Has(string key) => model.GetConfigValue(key) is { } n
            && n.GetValueKind() != JsonValueKind.Null;

        public int Int(string key) => OptionalInt(key)
            ?? throw new ZettException($"{Path}: {key} is missing");

        public int? OptionalInt(string key) => model.GetConfigValue(key) switch
        {
            null => null,
            JsonValue v when v.GetValueKind() == JsonValueKind.Null => null,
            JsonValue v when v.TryGetValue(out int i) => i,
            JsonValue v when v.TryGetValue(out double d) && d == Math.Floor(d) => (int)d,
            var n => throw new ZettException($"{Path}: {key} must be an integer, got "
                + n.ToJsonString()),
        };

        public double? OptionalDouble(string key) => model.GetConfigValue(key) switch
        {
            null => null,
            JsonValue v when v.GetValueKind() == JsonValueKind.Null => null,
            JsonValue v when v.TryGetValue(out double d) => d,
            var n => throw new ZettException($"{Path}: {key} must be a number, got "
                + n.ToJsonString()),
        };

        public bool? OptionalBool(string key) => model.GetConfigValue(key) switch
        {
            null => null,
            JsonValue v when v.GetValueKind() == JsonValueKind.Null => null,
            JsonValue v when v.TryGetValue(out bool b) => b,
            var n => throw new ZettException($"{Path}: {key} must be true or false, got "
                + n.ToJsonString()),
        };

        public string? OptionalString(string key) => model.GetConfigValue(key) switch
        {
            null => null,
            JsonValue v when v.GetValueKind() == JsonValueKind.Null => null,
            JsonValue v when v.TryGetValue(out string? s) => s,
            var n => throw new ZettException($"{Path}: {key} must be a string, got "
                + n.ToJsonString()),
        };
    }
}
