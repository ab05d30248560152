using ZeTT.Ops;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.Tensors;

namespace ZeTT.Runtime.Training;

/// <summary>The sizes of a new hypernetwork; zeros take the reference's defaults from the
/// base model (TRAINING.md §6: H = n_embd, I = 2H, H/64 heads, 3 layers, L = 7).</summary>
/// <param name="HiddenSize">Encoder width H (0: the base model's n_embd).</param>
/// <param name="IntermediateSize">Encoder and projector intermediate width (0: 2H).</param>
/// <param name="Layers">Encoder layers.</param>
/// <param name="Heads">Attention heads (0: max(1, H/64)).</param>
/// <param name="SurfaceMaxLen">Surface-form length L.</param>
public sealed record HypernetShape(int HiddenSize = 0, int IntermediateSize = 0, int Layers = 3,
    int Heads = 0, int SurfaceMaxLen = 7);

/// <summary>
/// A new hypernetwork's parameters as the reference initialises them (TRAINING.md §6.3): Flax
/// Dense layers lecun-normal (truncated at 2σ) with zero biases, the RoBERTa encoder and the
/// embedding tables N(0, 0.02), LayerNorms 1 and 0; then the rescalers: in_scaler standardises
/// each column of the source embeddings to mean 0 and std 0.02, scaler and out_scaler match
/// the mean and std of the random network's predictions for anchor tokens to those of the
/// model's own embeddings. The statistics of E include the zero rows that pad it to a multiple
/// of 128, as in the reference.
/// </summary>
public static class HypernetInit
{
    /// <summary>Anchor tokens of the output-scaler statistics (n_anchors).</summary>
    public const int Anchors = 2048;

    /// <summary>The config of a new hypernetwork for a base model.</summary>
    /// <param name="nEmbd">The base model's hidden size.</param>
    /// <param name="untied">Whether the base model has separate output embeddings.</param>
    /// <param name="originalVocab">Vocabulary size of the base tokenizer.</param>
    /// <param name="extraTokens">Tokens the byte-level conversion appended.</param>
    /// <param name="padId">The hn tokenizer's pad id (eos when the tokenizer has none).</param>
    /// <param name="predictBias">Whether to predict an output bias (masked LMs).</param>
    /// <param name="shape">Sizes; zeros take the defaults.</param>
    /// <param name="langs">With language embeddings (hn_embed_lang_id): their codes, one row
    /// each, saved as the config's <c>langs</c> (what <c>zett transfer --lang</c> reads);
    /// null: none.</param>
    public static HypernetConfig Config(int nEmbd, bool untied, int originalVocab, int extraTokens,
        int padId, bool predictBias, HypernetShape shape, IReadOnlyList<string>? langs = null)
    {
        ArgumentNullException.ThrowIfNull(shape);
        int h = shape.HiddenSize > 0 ? shape.HiddenSize : nEmbd;
        int heads = shape.Heads > 0 ? shape.Heads : Math.Max(1, h / 64);
        if (h % heads != 0)
        {
            throw new ZettException($"hypernetwork hidden size {h} is not divisible by {heads} "
                + "attention heads");
        }
        return new HypernetConfig
        {
            NEmbd = nEmbd,
            HiddenSize = h,
            IntermediateSize = shape.IntermediateSize > 0 ? shape.IntermediateSize : 2 * h,
            NumLayers = shape.Layers,
            NumAttentionHeads = heads,
            SurfaceMaxLen = shape.SurfaceMaxLen,
            RescaleEmbeddings = true,
            PredictBias = predictBias,
            SeparateOutEmbeddings = untied,
            NumExtraTokens = extraTokens,
            OriginalVocabSize = originalVocab,
            PadTokenId = padId,
            EmbedUsingSourceEmbeddings = true,
            EmbedLangId = langs is not null,
            NumLangs = langs?.Count ?? 0,
            Langs = langs ?? [],
        };
    }

    /// <summary>Random parameters for <paramref name="c"/> (rescalers at w = 1, b = 0), by the
    /// PyTorch port's names, from <paramref name="seed"/>.</summary>
    public static Dictionary<string, HostTensor> RandomWeights(HypernetConfig c, int seed)
    {
        ArgumentNullException.ThrowIfNull(c);
        var rng = new Random(seed);
        var w = new Dictionary<string, HostTensor>(StringComparer.Ordinal);
        int h = c.HiddenSize, i = c.IntermediateSize, d = c.SourceWidth, n = c.NEmbd;
        void Normal(string name, double std, params int[] shape) =>
            w[name] = new HostTensor(name, shape, Sample(rng, shape, std, truncated: false));
        void Const(string name, float value, params int[] shape)
        {
            var data = new float[shape.Aggregate(1, (a, b) => a * b)];
            Array.Fill(data, value);
            w[name] = new HostTensor(name, shape, data);
        }
        void Dense(string prefix, int inDim, int outDim)
        {
            // lecun_normal: variance 1/fan_in from a normal truncated at ±2σ, whose std the
            // truncation shrinks by 0.8796 (jax.nn.initializers.variance_scaling).
            w[prefix + ".weight"] = new HostTensor(prefix + ".weight", [outDim, inDim],
                Sample(rng, [outDim, inDim], Math.Sqrt(1.0 / inDim) / 0.87962566103423978,
                    truncated: true));
            Const(prefix + ".bias", 0f, outDim);
        }
        void Roberta(string prefix, int inDim, int outDim)
        {
            Normal(prefix + ".weight", 0.02, outDim, inDim);
            Const(prefix + ".bias", 0f, outDim);
        }
        void Ln(string prefix, int dim)
        {
            Const(prefix + ".weight", 1f, dim);
            Const(prefix + ".bias", 0f, dim);
        }
        void Block(string prefix)
        {
            Dense(prefix + ".dense1", h, i);
            Dense(prefix + ".dense2", i, h);
            Ln(prefix + ".ln", h);
        }
        void Rescaler(string prefix, int dim)
        {
            Const(prefix + ".w", 1f, 1, dim);
            Const(prefix + ".b", 0f, 1, dim);
        }
        Normal("fallback_embeddings.weight", 0.02, Math.Max(c.NumExtraTokens, 1), d);
        Dense("input_projection.0", d, h);
        Block("input_projection.1");
        Normal("model.embeddings.position_embeddings.weight", 0.02, 514, h);
        Normal("model.embeddings.token_type_embeddings.weight", 0.02, 1, h);
        Ln("model.embeddings.LayerNorm", h);
        for (int l = 0; l < c.NumLayers; l++)
        {
            string p = $"model.encoder.layer.{l}.";
            Roberta(p + "attention.self.query", h, h);
            Roberta(p + "attention.self.key", h, h);
            Roberta(p + "attention.self.value", h, h);
            Roberta(p + "attention.output.dense", h, h);
            Ln(p + "attention.output.LayerNorm", h);
            Roberta(p + "intermediate.dense", h, i);
            Roberta(p + "output.dense", i, h);
            Ln(p + "output.LayerNorm", h);
        }
        if (c.EmbedLangId)
        {
            Normal("lang_embeddings.weight", 0.02, c.NumLangs, h);
        }
        Block("output_projection.0");
        Dense("output_projection.1", h, c.SingleHead ? d : n);
        if (c.SeparateOutEmbeddings && !c.SingleHead)
        {
            Block("output_projection_out.0");
            Dense("output_projection_out.1", h, n);
        }
        if (c.PredictBias)
        {
            Dense("bias_projection", h, 1);
        }
        if (c.RescaleEmbeddings)
        {
            Rescaler("in_scaler", d);
            Rescaler("scaler", n);
            if (c.SeparateOutEmbeddings)
            {
                Rescaler("out_scaler", n);
            }
        }
        return w;
    }

    /// <summary>Sets in_scaler from the source embeddings <paramref name="e"/> [V, D_in]:
    /// w = 0.02 / (std + 1e-8), b = −mean · w per column.</summary>
    public static void InitInScaler(Dictionary<string, HostTensor> weights, HostTensor e)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(e);
        (double[] mean, double[] std) = ColumnStats(e.Data, e.Shape[0], e.Shape[1], 0, e.Shape[1],
            padRows: true);
        float[] w = weights["in_scaler.w"].Data, b = weights["in_scaler.b"].Data;
        for (int j = 0; j < w.Length; j++)
        {
            w[j] = (float)(0.02 / (std[j] + 1e-8));
            b[j] = (float)(-mean[j] * w[j]);
        }
    }

    /// <summary>Sets scaler (and out_scaler) from a forward pass of the network over the
    /// anchor tokens <paramref name="anchorForms"/> [rows, L] on <paramref name="backend"/>:
    /// w = std(E) / (std(pred) + 1e-8), b = mean(E) − mean(pred) · w per column.</summary>
    public static void InitOutputScalers(HypernetConfig config,
        Dictionary<string, HostTensor> weights, HostTensor e, int[] anchorForms, IOpBackend backend)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(e);
        ArgumentNullException.ThrowIfNull(anchorForms);
        int rows = anchorForms.Length / config.SurfaceMaxLen, n = config.NEmbd;
        HypernetWeights bound = HypernetWeights.FromTensors(config, weights, "new hypernetwork");
        HypernetOutput o;
        using (HypernetParameters p = HypernetParameters.FromWeights(bound, backend, DType.F32))
        using (Tensor source = Tensor.FromFloats(e.Data, e.Shape[0], e.Shape[1]))
        using (var graph = new HypernetGraph(config, p, source))
        using (HypernetPass pass = graph.Forward(anchorForms, rows, config.EmbedLangId ? 0 : -1))
        {
            o = pass.Download();
        }
        Fit(weights["scaler.w"].Data, weights["scaler.b"].Data, e, 0, o.EmbeddingsIn, rows, n);
        if (config.SeparateOutEmbeddings && o.EmbeddingsOut is not null)
        {
            Fit(weights["out_scaler.w"].Data, weights["out_scaler.b"].Data, e, n, o.EmbeddingsOut,
                rows, n);
        }
    }

    private static void Fit(float[] w, float[] b, HostTensor e, int column, float[] pred, int rows,
        int n)
    {
        (double[] em, double[] es) = ColumnStats(e.Data, e.Shape[0], e.Shape[1], column, n,
            padRows: true);
        (double[] pm, double[] ps) = ColumnStats(pred, rows, n, 0, n, padRows: false);
        for (int j = 0; j < n; j++)
        {
            w[j] = (float)(es[j] / (ps[j] + 1e-8));
            b[j] = (float)(em[j] - (pm[j] * w[j]));
        }
    }

    /// <summary>Mean and (population) std of columns column … column+n−1 of a [rows, width]
    /// matrix, counting zero rows up to a multiple of 128 when <paramref name="padRows"/>.
    /// </summary>
    private static (double[] Mean, double[] Std) ColumnStats(float[] data, int rows, int width,
        int column, int n, bool padRows)
    {
        var sum = new double[n];
        var sq = new double[n];
        for (int r = 0; r < rows; r++)
        {
            for (int j = 0; j < n; j++)
            {
                double x = data[((long)r * width) + column + j];
                sum[j] += x;
                sq[j] += x * x;
            }
        }
        long count = padRows ? (rows + 127) / 128 * 128 : rows;
        var mean = new double[n];
        var std = new double[n];
        for (int j = 0; j < n; j++)
        {
            mean[j] = sum[j] / count;
            std[j] = Math.Sqrt(Math.Max(0, (sq[j] / count) - (mean[j] * mean[j])));
        }
        return (mean, std);
    }

    /// <summary>A fresh language-embedding table [langs, H] drawn as
    /// <see cref="RandomWeights"/> draws it (N(0, 0.02)), from its own seeded stream.</summary>
    public static HostTensor LangEmbeddings(int langs, int hidden, int seed) =>
        new("lang_embeddings.weight", [langs, hidden],
            Sample(new Random(SeedMix.Of(seed, 0, 0x1a9)), [langs, hidden], 0.02, truncated: false));

    private static float[] Sample(Random rng, int[] shape, double std, bool truncated)
    {
        long count = shape.Aggregate(1L, (a, b) => a * b);
        var data = new float[count];
        for (long k = 0; k < count; k++)
        {
            double z;
            do
            {
                // Box–Muller; the truncated variant redraws outside ±2σ.
                double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
                z = Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
            }
            while (truncated && Math.Abs(z) > 2);
            data[k] = (float)(z * std);
        }
        return data;
    }
}
