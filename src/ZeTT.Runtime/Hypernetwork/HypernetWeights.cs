using ZeTT.Runtime.Tensors;

namespace ZeTT.Runtime.Hypernetwork;

/// <summary>A dense layer, PyTorch layout: <c>y = x·Wᵀ + b</c> with W [out, in].</summary>
public sealed record LinearParams(HostTensor Weight, HostTensor Bias)
{
    /// <summary>Input width.</summary>
    public int In => Weight.Shape[1];

    /// <summary>Output width.</summary>
    public int Out => Weight.Shape[0];
}

/// <summary>LayerNorm gain and bias.</summary>
public sealed record LayerNormParams(HostTensor Weight, HostTensor Bias);

/// <summary><c>LN_1e-6(gelu_tanh(dense2(gelu_tanh(dense1(x)))) + x)</c>.</summary>
public sealed record ProjectorBlockParams(LinearParams Dense1, LinearParams Dense2, LayerNormParams Ln);

/// <summary>One post-LayerNorm RoBERTa encoder layer.</summary>
public sealed record EncoderLayerParams(
    LinearParams Query, LinearParams Key, LinearParams Value,
    LinearParams AttentionOutput, LayerNormParams AttentionLn,
    LinearParams Intermediate, LinearParams Output, LayerNormParams OutputLn);

/// <summary><c>w·x + b</c> with w, b of shape [1, dim].</summary>
public sealed record RescalerParams(HostTensor W, HostTensor B);

/// <summary>
/// Every parameter of a hypernetwork, bound by its PyTorch-port name (ZETT.md §3) and checked
/// against the shapes the config implies. Backends (CPU, CUDA) read their weights from here.
/// </summary>
public sealed class HypernetWeights
{
    private readonly IReadOnlyDictionary<string, HostTensor> _tensors;
    private readonly string _source;

    private HypernetWeights(HypernetConfig config, IReadOnlyDictionary<string, HostTensor> tensors,
        string source)
    {
        Config = config;
        _tensors = tensors;
        _source = source;
        int h = config.HiddenSize, i = config.IntermediateSize, d = config.SourceWidth;

        PositionEmbeddings = Get("model.embeddings.position_embeddings.weight", -1, h);
        if (PositionEmbeddings.Shape[0] < config.SequenceLength)
        {
            throw Error("model.embeddings.position_embeddings.weight",
                $"has {PositionEmbeddings.Shape[0]} positions, fewer than the sequence length "
                + $"{config.SequenceLength}");
        }
        TokenTypeEmbeddings = Get("model.embeddings.token_type_embeddings.weight", -1, h);
        EmbeddingsLn = Ln("model.embeddings.LayerNorm", h);
        var layers = new List<EncoderLayerParams>();
        for (int l = 0; l < config.NumLayers; l++)
        {
            string p = $"model.encoder.layer.{l}.";
            layers.Add(new EncoderLayerParams(
                Lin(p + "attention.self.query", h, h),
                Lin(p + "attention.self.key", h, h),
                Lin(p + "attention.self.value", h, h),
                Lin(p + "attention.output.dense", h, h),
                Ln(p + "attention.output.LayerNorm", h),
                Lin(p + "intermediate.dense", h, i),
                Lin(p + "output.dense", i, h),
                Ln(p + "output.LayerNorm", h)));
        }
        Layers = layers;
        FallbackEmbeddings = Get("fallback_embeddings.weight", Math.Max(config.NumExtraTokens, 1), d);
        LangEmbeddings = config.EmbedLangId
            ? Get("lang_embeddings.weight", config.NumLangs, h)
            : null;
        InputProjection = Lin("input_projection.0", d, h);
        InputBlock = Block("input_projection.1", h, i);
        // The output heads take width H (the reference builds them as ProjectorBlock(H, H, I)
        // and Linear(H, ·)), so the flattened state of hn_concat_last_hidden_state fits only
        // when the encoder sequence has length 1, where it equals h[:, 0].
        if (config.ConcatLastHiddenState && config.SequenceLength != 1)
        {
            throw new ZettException($"{source}: hn_concat_last_hidden_state needs an encoder "
                + "sequence length of 1 (the output heads take width hn_hidden_size = "
                + $"{h}, the flattened state would be {config.SequenceLength}·{h}); this config has "
                + $"hn_surface_maxlen {config.SurfaceMaxLen}"
                + (config.EmbedLangId ? " plus a language position" : ""));
        }
        int pooled = h;
        OutputBlock = Block("output_projection.0", pooled, i);
        int headOut = config.SingleHead ? d : config.NEmbd;
        OutputLinear = Lin("output_projection.1", pooled, headOut);
        if (config.SeparateOutEmbeddings && !config.SingleHead)
        {
            OutputOutBlock = Block("output_projection_out.0", pooled, i);
            OutputOutLinear = Lin("output_projection_out.1", pooled, config.NEmbd);
        }
        if (config.RescaleEmbeddings)
        {
            InScaler = Rescaler("in_scaler", d);
            Scaler = Rescaler("scaler", config.NEmbd);
            OutScaler = config.SeparateOutEmbeddings ? Rescaler("out_scaler", config.NEmbd) : null;
        }
        BiasProjection = config.PredictBias ? Lin("bias_projection", pooled, 1) : null;
    }

    /// <summary>The configuration these weights were checked against.</summary>
    public HypernetConfig Config { get; }

    /// <summary>RoBERTa position embeddings [P, H] (P ≥ sequence length).</summary>
    public HostTensor PositionEmbeddings { get; }

    /// <summary>RoBERTa token type embeddings [T, H]; row 0 is used.</summary>
    public HostTensor TokenTypeEmbeddings { get; }

    /// <summary>LayerNorm after the embeddings (encoder eps).</summary>
    public LayerNormParams EmbeddingsLn { get; }

    /// <summary>Encoder layers.</summary>
    public IReadOnlyList<EncoderLayerParams> Layers { get; }

    /// <summary>Embeddings for ids ≥ original_vocab_size, [max(extra, 1), D_in].</summary>
    public HostTensor FallbackEmbeddings { get; }

    /// <summary>Language embeddings [n_langs, H] when the config embeds a language id.</summary>
    public HostTensor? LangEmbeddings { get; }

    /// <summary>D_in → H projection.</summary>
    public LinearParams InputProjection { get; }

    /// <summary>Projector block after the input projection.</summary>
    public ProjectorBlockParams InputBlock { get; }

    /// <summary>Projector block of the (input or single) output head.</summary>
    public ProjectorBlockParams OutputBlock { get; }

    /// <summary>Final linear of the (input or single) output head.</summary>
    public LinearParams OutputLinear { get; }

    /// <summary>Projector block of the separate output-embedding head, if any.</summary>
    public ProjectorBlockParams? OutputOutBlock { get; }

    /// <summary>Final linear of the separate output-embedding head, if any.</summary>
    public LinearParams? OutputOutLinear { get; }

    /// <summary>Scaler applied to source embeddings before the input projection.</summary>
    public RescalerParams? InScaler { get; }

    /// <summary>Scaler applied to predicted input embeddings.</summary>
    public RescalerParams? Scaler { get; }

    /// <summary>Scaler applied to predicted output embeddings.</summary>
    public RescalerParams? OutScaler { get; }

    /// <summary>H → 1 bias head, if the config predicts a bias.</summary>
    public LinearParams? BiasProjection { get; }

    /// <summary>Binds <paramref name="tensors"/> (PyTorch-port names) to
    /// <paramref name="config"/>; a missing or mis-shaped parameter is an error naming it, the
    /// expected and the found shape. <paramref name="source"/> names the checkpoint.</summary>
    public static HypernetWeights FromTensors(HypernetConfig config,
        IReadOnlyDictionary<string, HostTensor> tensors, string source)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(tensors);
        return new HypernetWeights(config, tensors, source);
    }

    /// <summary>Every tensor the model uses, with its name.</summary>
    public IReadOnlyDictionary<string, HostTensor> Tensors => _tensors;

    /// <summary>Every Linear layer (the GEMM weights: almost all of the parameters).</summary>
    public IEnumerable<LinearParams> Linears()
    {
        yield return InputProjection;
        yield return InputBlock.Dense1;
        yield return InputBlock.Dense2;
        foreach (EncoderLayerParams l in Layers)
        {
            yield return l.Query;
            yield return l.Key;
            yield return l.Value;
            yield return l.AttentionOutput;
            yield return l.Intermediate;
            yield return l.Output;
        }
        yield return OutputBlock.Dense1;
        yield return OutputBlock.Dense2;
        yield return OutputLinear;
        if (OutputOutBlock is not null)
        {
            yield return OutputOutBlock.Dense1;
            yield return OutputOutBlock.Dense2;
        }
        if (OutputOutLinear is not null)
        {
            yield return OutputOutLinear;
        }
        if (BiasProjection is not null)
        {
            yield return BiasProjection;
        }
    }

    private ZettException Error(string name, string what) =>
        new($"{_source}: parameter '{name}' {what}");

    private HostTensor Get(string name, params int[] expected)
    {
        if (!_tensors.TryGetValue(name, out HostTensor? t))
        {
            throw Error(name, $"is missing (expected shape {Describe(expected)})");
        }
        bool ok = t.Shape.Length == expected.Length;
        for (int k = 0; ok && k < expected.Length; k++)
        {
            ok = expected[k] < 0 || expected[k] == t.Shape[k];
        }
        return ok
            ? t
            : throw Error(name, $"has shape {HostTensor.ShapeToString(t.Shape)}, expected "
                + Describe(expected));
    }

    private static string Describe(int[] shape) =>
        "[" + string.Join(", ", shape.Select(d => d < 0 ? "*" : d.ToString())) + "]";

    private LinearParams Lin(string prefix, int inDim, int outDim) =>
        new(Get(prefix + ".weight", outDim, inDim), Get(prefix + ".bias", outDim));

    private LayerNormParams Ln(string prefix, int dim) =>
        new(Get(prefix + ".weight", dim), Get(prefix + ".bias", dim));

    private ProjectorBlockParams Block(string prefix, int dim, int intermediate) =>
        new(Lin(prefix + ".dense1", dim, intermediate), Lin(prefix + ".dense2", intermediate, dim),
            Ln(prefix + ".ln", dim));

    private RescalerParams Rescaler(string prefix, int dim) =>
        new(Get(prefix + ".w", 1, dim), Get(prefix + ".b", 1, dim));
}
