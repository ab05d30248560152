using ZeTT.Ops;
using ZeTT.Runtime.Formats;

namespace ZeTT.Runtime.Models;

/// <summary>Keys and values of earlier positions, per layer, for incremental decoding.</summary>
public sealed class KvCache : IDisposable
{
    internal KvCache(Tensor[] keys, Tensor[] values, int capacity)
    {
        Keys = keys;
        Values = values;
        Capacity = capacity;
    }

    internal Tensor[] Keys { get; }
    internal Tensor[] Values { get; }

    /// <summary>Positions the cache can hold.</summary>
    public int Capacity { get; }

    /// <summary>Positions already in the cache.</summary>
    public int Length { get; internal set; }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (Tensor t in Keys.Concat(Values))
        {
            t.Dispose();
        }
    }
}

/// <summary>
/// A transformer language model of any supported family, its math written once over the op
/// layer: the family only selects norms, positions, residual arrangement and weight layout
/// (<see cref="LmArchitecture"/>). Weights stay memory-mapped in their stored dtype;
/// activations are fp32.
/// </summary>
public sealed class LanguageModel : IDisposable
{
    private readonly HfModelDirectory? _owned;
    private readonly LmWeights _w;

    private LanguageModel(HfModelDirectory? owned, LmArchitecture architecture, LmWeights weights,
        IOpBackend backend, string path)
    {
        _owned = owned;
        Architecture = architecture;
        _w = weights;
        Ops = backend;
        Path = path;
    }

    /// <summary>The family's settings.</summary>
    public LmArchitecture Architecture { get; }

    /// <summary>The backend the model computes on.</summary>
    public IOpBackend Ops { get; }

    /// <summary>The model directory.</summary>
    public string Path { get; }

    /// <summary>Opens the Hugging Face model directory <paramref name="directory"/> (weights
    /// memory-mapped) for <paramref name="backend"/>.</summary>
    public static LanguageModel Open(string directory, IOpBackend backend)
    {
        ArgumentNullException.ThrowIfNull(backend);
        HfModelDirectory model = HfModelDirectory.Open(directory);
        try
        {
            return Create(model, backend, owns: true);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>A model over an open directory that the caller keeps alive and disposes.
    /// </summary>
    public static LanguageModel Create(HfModelDirectory model, IOpBackend backend) =>
        Create(model, backend, owns: false);

    private static LanguageModel Create(HfModelDirectory model, IOpBackend backend, bool owns)
    {
        ArgumentNullException.ThrowIfNull(model);
        LmArchitecture a = LmArchitecture.FromConfig(model);
        LmWeights w = LmWeights.Load(model, a, backend);
        return new LanguageModel(owns ? model : null, a, w, backend, model.Directory);
    }

    /// <summary>A cache for <paramref name="batch"/> sequences of up to
    /// <paramref name="capacity"/> positions.</summary>
    public KvCache CreateCache(int batch, int capacity)
    {
        CheckLength(capacity);
        LmArchitecture a = Architecture;
        var keys = new Tensor[a.Layers];
        var values = new Tensor[a.Layers];
        for (int i = 0; i < a.Layers; i++)
        {
            keys[i] = Ops.Zeros(DType.F32, [batch, capacity, a.KvHeads, a.HeadDim], $"keys {i}");
            values[i] = Ops.Zeros(DType.F32, [batch, capacity, a.KvHeads, a.HeadDim], $"values {i}");
        }
        return new KvCache(keys, values, capacity);
    }

    private void CheckLength(long positions)
    {
        if (positions > Architecture.MaxPositions)
        {
            throw new ZettException($"{Path}: {positions} positions exceed the model's "
                + $"{Architecture.MaxPositions} (max_position_embeddings)");
        }
    }

    /// <summary>The final hidden states [batch · tokens, hidden] (after the final norm) of
    /// <paramref name="ids"/>, <paramref name="batch"/> sequences of equal length in row-major
    /// order. With a <paramref name="cache"/>, the tokens continue the cached positions and
    /// their keys/values are appended. The caller disposes the result.</summary>
    public Tensor Forward(ReadOnlySpan<int> ids, int batch, KvCache? cache = null)
    {
        LmArchitecture a = Architecture;
        if (batch <= 0 || ids.Length % batch != 0)
        {
            throw new ArgumentException($"{ids.Length} ids do not split into {batch} sequences");
        }
        int tokens = ids.Length / batch;
        int start = cache?.Length ?? 0;
        if (cache is not null && start + tokens > cache.Capacity)
        {
            throw new ZettException($"{Path}: {start + tokens} positions exceed the cache of "
                + cache.Capacity);
        }
        CheckLength(start + tokens);
        foreach (int id in ids)
        {
            if (id < 0 || id >= a.Vocab)
            {
                throw new ZettException($"{Path}: token id {id} is outside the vocabulary of "
                    + a.Vocab);
            }
        }
        long n = ids.Length;
        int d = a.Hidden;
        using Tensor idT = Ops.Upload(Tensor.FromInts(ids));
        var posIds = new int[n];
        for (int i = 0; i < n; i++)
        {
            posIds[i] = start + i % tokens;
        }
        using Tensor posT = Ops.Upload(Tensor.FromInts(posIds));
        Tensor x = Ops.Empty(DType.F32, [n, d], "hidden");
        Ops.EmbeddingForward(_w.Embed, idT, x, a.EmbeddingScale);
        if (_w.Positions is not null)
        {
            var learned = Array.ConvertAll(posIds, p => p + a.PositionOffset);
            using Tensor lpT = Ops.Upload(Tensor.FromInts(learned));
            using Tensor pe = Ops.Empty(DType.F32, [n, d]);
            Ops.EmbeddingForward(_w.Positions, lpT, pe);
            Ops.Add(x, pe, x);
        }
        if (_w.TokenTypes is not null)
        {
            using Tensor zeros = Ops.Zeros(DType.I32, [n]);
            using Tensor te = Ops.Empty(DType.F32, [n, d]);
            Ops.EmbeddingForward(_w.TokenTypes, zeros, te);
            Ops.Add(x, te, x);
        }
        if (_w.EmbedNorm is not null)
        {
            Norm(x, _w.EmbedNorm, _w.EmbedNormBias, x);
        }
        using Tensor h1 = Ops.Empty(DType.F32, [n, d]);
        using Tensor h2 = Ops.Empty(DType.F32, [n, d]);
        using Tensor attn = Ops.Empty(DType.F32, [n, d]);
        using Tensor mlp = Ops.Empty(DType.F32, [n, d]);
        for (int layer = 0; layer < a.Layers; layer++)
        {
            LayerWeights lw = _w.Layers[layer];
            switch (a.Block)
            {
                case BlockKind.PreNorm:
                    Norm(x, lw.Norm1, lw.Norm1Bias, h1);
                    Attention(layer, lw, h1, posT, batch, tokens, start, cache, attn);
                    Ops.Add(x, attn, x);
                    Norm(x, lw.Norm2, lw.Norm2Bias, h2);
                    Mlp(lw, h2, mlp);
                    Ops.Add(x, mlp, x);
                    break;
                case BlockKind.ParallelPreNorm:
                    Norm(x, lw.Norm1, lw.Norm1Bias, h1);
                    Norm(x, lw.Norm2, lw.Norm2Bias, h2);
                    Attention(layer, lw, h1, posT, batch, tokens, start, cache, attn);
                    Mlp(lw, h2, mlp);
                    Ops.Add(x, attn, x);
                    Ops.Add(x, mlp, x);
                    break;
                default:
                    Attention(layer, lw, x, posT, batch, tokens, start, cache, attn);
                    Ops.Add(x, attn, attn);
                    Norm(attn, lw.Norm1, lw.Norm1Bias, x);
                    Mlp(lw, x, mlp);
                    Ops.Add(x, mlp, mlp);
                    Norm(mlp, lw.Norm2, lw.Norm2Bias, x);
                    break;
            }
        }
        if (cache is not null)
        {
            cache.Length = start + tokens;
        }
        if (_w.FinalNorm is not null)
        {
            Norm(x, _w.FinalNorm, _w.FinalNormBias, x);
        }
        return x;
    }

    /// <summary>The input of the output embedding: the hidden states themselves, or for a
    /// masked LM its head's dense → GELU → LayerNorm. Returns a new tensor.</summary>
    public Tensor HeadInput(Tensor hidden)
    {
        ArgumentNullException.ThrowIfNull(hidden);
        Tensor y = Ops.Empty(DType.F32, hidden.Shape, "head input");
        if (_w.MlmDense is null)
        {
            Ops.Copy(hidden, y);
            return y;
        }
        Ops.Linear(hidden, _w.MlmDense, _w.MlmDenseBias, y);
        Ops.Activation(Architecture.Activation, y, y);
        Norm(y, _w.MlmNorm!, _w.MlmNormBias, y);
        return y;
    }

    /// <summary>Logits [rows, vocab] of head inputs (<see cref="HeadInput"/>) — for few rows
    /// (generation, golden checks); losses over many rows use <see cref="TokenLosses"/>.
    /// </summary>
    public Tensor Logits(Tensor headInput)
    {
        ArgumentNullException.ThrowIfNull(headInput);
        Tensor logits = Ops.Empty(DType.F32, [headInput.Shape[0], Architecture.Vocab], "logits");
        Ops.Linear(headInput, _w.Head, _w.HeadBias, logits);
        return logits;
    }

    /// <summary>Natural-log cross-entropy of each row's target (negative target: ignored,
    /// loss 0), through the fused vocabulary-chunked head: losses F32 [rows].</summary>
    public Tensor TokenLosses(Tensor headInput, ReadOnlySpan<int> targets)
    {
        ArgumentNullException.ThrowIfNull(headInput);
        long n = headInput.Shape[0];
        using Tensor t = Ops.Upload(Tensor.FromInts(targets));
        Tensor losses = Ops.Empty(DType.F32, [n], "losses");
        using Tensor lse = Ops.Empty(DType.F32, [n]);
        Ops.LmHeadCrossEntropy(headInput, _w.Head, _w.HeadBias, t, losses, lse);
        return losses;
    }

    private void Norm(Tensor x, Tensor w, Tensor? b, Tensor y)
    {
        LmArchitecture a = Architecture;
        long rows = x.Shape[0];
        using Tensor rstd = Ops.Empty(DType.F32, [rows]);
        if (a.Norm == NormKind.Rms)
        {
            Ops.RmsNormForward(x, w, a.NormEps, a.NormUnitOffset, y, rstd);
        }
        else
        {
            using Tensor mean = Ops.Empty(DType.F32, [rows]);
            Ops.LayerNormForward(x, w, b, a.NormEps, y, mean, rstd);
        }
    }

    private void Attention(int layer, LayerWeights lw, Tensor h, Tensor positions, int batch,
        int tokens, int start, KvCache? cache, Tensor output)
    {
        LmArchitecture a = Architecture;
        long n = h.Shape[0];
        int hq = a.Heads, hkv = a.KvHeads, dh = a.HeadDim;
        long width = (long)(hq + 2 * hkv) * dh;
        using Tensor qkv = Ops.Empty(DType.F32, [n, width], "qkv");
        Tensor q, k, v;
        if (lw.Qkv is not null)
        {
            Ops.Linear(h, lw.Qkv, lw.QkvBias, qkv, a.WeightsInOut);
        }
        else
        {
            Ops.Linear(h, lw.Q!, lw.QBias, qkv.Slice(1, 0, hq * dh), a.WeightsInOut);
            Ops.Linear(h, lw.K!, lw.KBias, qkv.Slice(1, hq * dh, hkv * dh), a.WeightsInOut);
            Ops.Linear(h, lw.V!, lw.VBias, qkv.Slice(1, (hq + hkv) * dh, hkv * dh),
                a.WeightsInOut);
        }
        if (a.Qkv == QkvLayout.PerHead)
        {
            long[] shape = [n, hq, dh], strides = [width, 3L * dh, 1];
            q = qkv.AsStrided(shape, strides);
            k = qkv.AsStrided(shape, strides, dh);
            v = qkv.AsStrided(shape, strides, 2L * dh);
        }
        else
        {
            q = qkv.AsStrided([n, hq, dh], [width, dh, 1]);
            k = qkv.AsStrided([n, hkv, dh], [width, dh, 1], (long)hq * dh);
            v = qkv.AsStrided([n, hkv, dh], [width, dh, 1], (long)(hq + hkv) * dh);
        }
        if (a.Rotary is { } rot && rot.Dims > 0)
        {
            Ops.Rotary(q, positions, rot, q);
            Ops.Rotary(k, positions, rot, k);
        }
        Tensor keys, values;
        int total = start + tokens;
        if (cache is not null)
        {
            Tensor kc = cache.Keys[layer], vc = cache.Values[layer];
            Ops.Copy(Split(k, batch, tokens), kc.Slice(1, start, tokens));
            Ops.Copy(Split(v, batch, tokens), vc.Slice(1, start, tokens));
            keys = kc.Slice(1, 0, total);
            values = vc.Slice(1, 0, total);
        }
        else
        {
            keys = Split(k, batch, tokens);
            values = Split(v, batch, tokens);
        }
        using Tensor attn = Ops.Empty(DType.F32, [n, (long)hq * dh], "attention");
        using Tensor lse = Ops.Empty(DType.F32, [batch, hq, tokens]);
        var options = new AttentionOptions(a.AttentionScale, a.Causal, a.SlidingWindow);
        Ops.AttentionForward(Split(q, batch, tokens), keys, values, options,
            attn.View(batch, tokens, hq, dh), lse);
        Ops.Linear(attn, lw.O, lw.OBias, output, a.WeightsInOut);
    }

    /// <summary>[B·T, H, Dh] as [B, T, H, Dh] (same strides).</summary>
    private static Tensor Split(Tensor t, int batch, int tokens) =>
        t.AsStrided([batch, tokens, t.Shape[1], t.Shape[2]],
            [tokens * t.Strides[0], t.Strides[0], t.Strides[1], t.Strides[2]]);

    private void Mlp(LayerWeights lw, Tensor h, Tensor output)
    {
        LmArchitecture a = Architecture;
        long n = h.Shape[0];
        using Tensor up = Ops.Empty(DType.F32, [n, a.Intermediate], "mlp");
        Ops.Linear(h, lw.Up, lw.UpBias, up, a.WeightsInOut);
        if (a.GatedMlp)
        {
            using Tensor gate = Ops.Empty(DType.F32, [n, a.Intermediate], "gate");
            Ops.Linear(h, lw.Gate!, lw.GateBias, gate, a.WeightsInOut);
            Ops.GatedActivation(a.Activation, gate, up, up);
        }
        else
        {
            Ops.Activation(a.Activation, up, up);
        }
        Ops.Linear(up, lw.Down, lw.DownBias, output, a.WeightsInOut);
    }

    /// <inheritdoc />
    public void Dispose() => _owned?.Dispose();
}
