using ZeTT.Ops;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.Tensors;

namespace ZeTT.Bench;

/// <summary>
/// Random hypernetworks of any configuration, for throughput benchmarks (the values do not
/// change the work done). Every parameter the config implies is filled by a deterministic
/// xorshift in parallel chunks — fast enough for Mistral-7B size (≈0.7 B parameters):
/// linear weights uniform in ±1/√fan_in, biases ±0.02, LayerNorm gains 1 ± 0.1, embeddings
/// ±0.1, scalers 1 ± 0.1 and ±0.01. HypernetWeights.FromTensors checks the result.
/// </summary>
internal static class RandomHypernet
{
    public static HypernetWeights Create(HypernetConfig c, int seed)
    {
        var tensors = new Dictionary<string, HostTensor>();
        foreach (Spec t in Specs(c, seed))
        {
            tensors[t.Name] = Fill(t.Name, t.Shape, t.Scale, t.Offset, t.Seed);
        }
        return HypernetWeights.FromTensors(c, tensors, "random");
    }

    /// <summary>Writes the same random parameters as <see cref="Create"/> to
    /// <paramref name="path"/> (safetensors, stored as <paramref name="storeAs"/>), generating
    /// one tensor at a time so that memory stays at the largest tensor.</summary>
    public static long WriteCheckpoint(HypernetConfig c, int seed, string path, DType storeAs)
    {
        var entries = new List<SafetensorsEntry>();
        long parameters = 0;
        foreach (Spec t in Specs(c, seed))
        {
            long[] shape = Array.ConvertAll(t.Shape, d => (long)d);
            parameters += shape.Aggregate(1L, (a, b) => a * b);
            entries.Add(new SafetensorsEntry(t.Name, storeAs, shape, stream =>
                SafetensorsEntry.FromTensor(Fill(t.Name, t.Shape, t.Scale, t.Offset, t.Seed), storeAs)
                    .WriteData(stream)));
        }
        SafetensorsWriter.Write(path, entries, new Dictionary<string, string> { ["format"] = "pt" });
        return parameters;
    }

    private sealed record Spec(string Name, int[] Shape, float Scale, float Offset, int Seed);

    private static List<Spec> Specs(HypernetConfig c, int seed)
    {
        var specs = new List<Spec>();
        int next = seed * 1000;
        void T(string name, float scale, float offset, params int[] shape) =>
            specs.Add(new Spec(name, shape, scale, offset, ++next));
        void Lin(string p, int fanIn, int fanOut)
        {
            T(p + ".weight", 1f / MathF.Sqrt(fanIn), 0, fanOut, fanIn);
            T(p + ".bias", 0.02f, 0, fanOut);
        }
        void Ln(string p, int dim)
        {
            T(p + ".weight", 0.1f, 1, dim);
            T(p + ".bias", 0.02f, 0, dim);
        }
        int h = c.HiddenSize, i = c.IntermediateSize, d = c.SourceWidth, e = c.NEmbd;
        void Block(string p)
        {
            Lin(p + ".dense1", h, i);
            Lin(p + ".dense2", i, h);
            Ln(p + ".ln", h);
        }
        T("model.embeddings.position_embeddings.weight", 0.1f, 0, 514, h);
        T("model.embeddings.token_type_embeddings.weight", 0.1f, 0, 1, h);
        Ln("model.embeddings.LayerNorm", h);
        for (int l = 0; l < c.NumLayers; l++)
        {
            string p = $"model.encoder.layer.{l}.";
            Lin(p + "attention.self.query", h, h);
            Lin(p + "attention.self.key", h, h);
            Lin(p + "attention.self.value", h, h);
            Lin(p + "attention.output.dense", h, h);
            Ln(p + "attention.output.LayerNorm", h);
            Lin(p + "intermediate.dense", h, i);
            Lin(p + "output.dense", i, h);
            Ln(p + "output.LayerNorm", h);
        }
        T("fallback_embeddings.weight", 0.1f, 0, Math.Max(c.NumExtraTokens, 1), d);
        if (c.EmbedLangId)
        {
            T("lang_embeddings.weight", 0.1f, 0, c.NumLangs, h);
        }
        Lin("input_projection.0", d, h);
        Block("input_projection.1");
        Block("output_projection.0");
        Lin("output_projection.1", h, c.SingleHead ? d : e);
        if (c.SeparateOutEmbeddings && !c.SingleHead)
        {
            Block("output_projection_out.0");
            Lin("output_projection_out.1", h, e);
        }
        if (c.RescaleEmbeddings)
        {
            T("in_scaler.w", 0.1f, 1, 1, d);
            T("in_scaler.b", 0.01f, 0, 1, d);
            T("scaler.w", 0.1f, 1, 1, e);
            T("scaler.b", 0.01f, 0, 1, e);
            if (c.SeparateOutEmbeddings)
            {
                T("out_scaler.w", 0.1f, 1, 1, e);
                T("out_scaler.b", 0.01f, 0, 1, e);
            }
        }
        if (c.PredictBias)
        {
            Lin("bias_projection", h, 1);
        }
        return specs;
    }

    /// <summary>Random source embeddings [vocab, width] (±0.05).</summary>
    public static HostTensor Source(int vocab, int width, int seed) =>
        Fill("source_embeddings", [vocab, width], 0.05f, 0, seed);

    private static HostTensor Fill(string name, int[] shape, float scale, float offset, int seed)
    {
        long n = shape.Aggregate(1L, (a, b) => a * b);
        var data = new float[n];
        const int Chunk = 65536;
        Parallel.For(0, (int)((n + Chunk - 1) / Chunk), chunk =>
        {
            uint x = (uint)(seed * 7919 + chunk * 104729) | 1;
            long end = Math.Min(n, (chunk + 1L) * Chunk);
            for (long k = chunk * (long)Chunk; k < end; k++)
            {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                data[k] = offset + scale * ((x >> 8) * (2f / (1 << 24)) - 1f);
            }
        });
        return new HostTensor(name, shape, data);
    }
}
