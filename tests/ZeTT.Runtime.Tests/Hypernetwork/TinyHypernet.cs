using System.Globalization;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.Tensors;

namespace ZeTT.Runtime.Tests.Hypernetwork;

/// <summary>Small hypernetworks with random weights, in every configuration §3 allows.</summary>
internal sealed record TinyOptions(bool Rescale = true, bool Bias = true, bool SingleHead = false,
    bool Separate = false, bool Lang = true, int Hidden = 64, int Intermediate = 96,
    int Heads = 4, int Layers = 2, int MaxLen = 7, int NEmbd = 24, int SourceRows = 50,
    int OriginalVocab = 45, int Extra = 5, int Langs = 3, int Pad = 1);

internal static class TinyHypernet
{
    public static (HypernetWeights Weights, HostTensor Source) Create(TinyOptions o, int seed)
    {
        string json = string.Create(CultureInfo.InvariantCulture, $$"""
            {"model_type": "zett_hypernetwork", "n_embd": {{o.NEmbd}},
             "hn_hidden_size": {{o.Hidden}}, "hn_intermediate_size": {{o.Intermediate}},
             "hn_n_layers": {{o.Layers}}, "hn_num_attention_heads": {{o.Heads}},
             "hn_surface_maxlen": {{o.MaxLen}},
             "hn_rescale_embeddings": {{Js(o.Rescale)}}, "hn_predict_bias": {{Js(o.Bias)}},
             "hn_single_head": {{Js(o.SingleHead)}}, "hn_embed_lang_id": {{Js(o.Lang)}},
             "n_langs": {{o.Langs}}, "hn_n_extra_tokens": {{o.Extra}},
             "original_vocab_size": {{o.OriginalVocab}}, "pad_token_id": {{o.Pad}},
             "separate_out_embeddings": {{Js(o.Separate)}},
             "hn_embed_using_source_embeddings": true}
            """);
        HypernetConfig c = HypernetConfig.Parse(json, "tiny/config.json");
        var rng = new Random(seed);
        var tensors = new Dictionary<string, HostTensor>();
        void T(string name, float scale, float offset, params int[] shape)
        {
            int n = shape.Aggregate(1, (a, b) => a * b);
            var data = new float[n];
            for (int i = 0; i < n; i++)
            {
                data[i] = offset + (float)(rng.NextDouble() * 2 - 1) * scale;
            }
            tensors[name] = new HostTensor(name, shape, data);
        }
        void Lin(string p, int inDim, int outDim)
        {
            T(p + ".weight", 1f / MathF.Sqrt(inDim), 0, outDim, inDim);
            T(p + ".bias", 0.1f, 0, outDim);
        }
        void Ln(string p, int dim)
        {
            T(p + ".weight", 0.2f, 1, dim);
            T(p + ".bias", 0.1f, 0, dim);
        }
        void Block(string p, int dim)
        {
            Lin(p + ".dense1", dim, o.Intermediate);
            Lin(p + ".dense2", o.Intermediate, dim);
            Ln(p + ".ln", dim);
        }
        int h = o.Hidden, d = c.SourceWidth;
        T("model.embeddings.position_embeddings.weight", 0.5f, 0, o.MaxLen + 3, h);
        T("model.embeddings.token_type_embeddings.weight", 0.5f, 0, 1, h);
        Ln("model.embeddings.LayerNorm", h);
        for (int l = 0; l < o.Layers; l++)
        {
            string p = $"model.encoder.layer.{l}.";
            Lin(p + "attention.self.query", h, h);
            Lin(p + "attention.self.key", h, h);
            Lin(p + "attention.self.value", h, h);
            Lin(p + "attention.output.dense", h, h);
            Ln(p + "attention.output.LayerNorm", h);
            Lin(p + "intermediate.dense", h, o.Intermediate);
            Lin(p + "output.dense", o.Intermediate, h);
            Ln(p + "output.LayerNorm", h);
        }
        T("fallback_embeddings.weight", 1f, 0, Math.Max(o.Extra, 1), d);
        if (o.Lang)
        {
            T("lang_embeddings.weight", 1f, 0, o.Langs, h);
        }
        Lin("input_projection.0", d, h);
        Block("input_projection.1", h);
        Block("output_projection.0", h);
        Lin("output_projection.1", h, o.SingleHead ? d : o.NEmbd);
        if (o.Separate && !o.SingleHead)
        {
            Block("output_projection_out.0", h);
            Lin("output_projection_out.1", h, o.NEmbd);
        }
        if (o.Rescale)
        {
            T("in_scaler.w", 0.5f, 1, 1, d);
            T("in_scaler.b", 0.1f, 0, 1, d);
            T("scaler.w", 0.5f, 1, 1, o.NEmbd);
            T("scaler.b", 0.1f, 0, 1, o.NEmbd);
            if (o.Separate)
            {
                T("out_scaler.w", 0.5f, 1, 1, o.NEmbd);
                T("out_scaler.b", 0.1f, 0, 1, o.NEmbd);
            }
        }
        if (o.Bias)
        {
            Lin("bias_projection", h, 1);
        }
        T("source", 1f, 0, o.SourceRows, d);
        HostTensor source = tensors["source"];
        tensors.Remove("source");
        return (HypernetWeights.FromTensors(c, tensors, "tiny"), source);
    }

    /// <summary>Surface forms: row 0 all padding, row 1 a single real id, then random lengths
    /// mixing source ids (incl. V0 − 1) and fallback ids.</summary>
    public static int[] SurfaceForms(TinyOptions o, int rows, int seed)
    {
        var rng = new Random(seed);
        var ids = new int[rows * o.MaxLen];
        for (int r = 0; r < rows; r++)
        {
            int real = r == 0 ? 0 : r == 1 ? 1 : 1 + rng.Next(o.MaxLen);
            for (int p = 0; p < o.MaxLen; p++)
            {
                ids[r * o.MaxLen + p] = p >= real ? o.Pad
                    : rng.Next(8) == 0 ? o.OriginalVocab + rng.Next(o.Extra)
                    : rng.Next(8) == 0 ? o.OriginalVocab - 1
                    : 2 + rng.Next(o.OriginalVocab - 2);
            }
        }
        return ids;
    }

    private static string Js(bool b) => b ? "true" : "false";
}
