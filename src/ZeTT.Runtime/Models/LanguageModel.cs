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

/// <summary>What a forward pass saved for its backward (<see cref="LanguageModel.Backward"/>):
/// every layer's inputs, norm statistics, projections and attention statistics.</summary>
public sealed class ForwardTape : IDisposable
{
    internal List<Tensor> Owned { get; } = [];
    internal List<LayerTape> Layers { get; } = [];
    internal Tensor? EmbedNormIn { get; set; }
    internal NormStats? EmbedNormStats { get; set; }
    internal Tensor? FinalIn { get; set; }
    internal NormStats? FinalStats { get; set; }
    internal Tensor? Positions { get; set; }
    internal int[]? LearnedPositions { get; set; }
    internal int Batch { get; set; }
    internal int Tokens { get; set; }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (Tensor t in Owned)
        {
            t.Dispose();
        }
        Owned.Clear();
    }
}

internal sealed record NormStats(Tensor? Mean, Tensor Rstd);

internal sealed class LayerTape
{
    public Tensor XIn = null!;
    public Tensor AttnIn = null!, Qkv = null!, Attn = null!, Lse = null!;
    public Tensor MlpIn = null!, Up = null!, Act = null!;
    public Tensor? Gate;
    public Tensor Norm1In = null!, Norm2In = null!;
    public NormStats Norm1 = null!, Norm2 = null!;
}

/// <summary>What <see cref="LanguageModel.HeadInput(Tensor, HeadTape?)"/> saved for its backward
/// (masked LMs' dense → GELU → LayerNorm).</summary>
public sealed class HeadTape : IDisposable
{
    internal List<Tensor> Owned { get; } = [];
    internal Tensor? In { get; set; }
    internal Tensor? Dense { get; set; }
    internal Tensor? Act { get; set; }
    internal NormStats? Stats { get; set; }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (Tensor t in Owned)
        {
            t.Dispose();
        }
        Owned.Clear();
    }
}

/// <summary>
/// A transformer language model of any supported family, its math written once over the op
/// layer: the family only selects norms, positions, residual arrangement and weight layout
/// (<see cref="LmArchitecture"/>). Weights stay memory-mapped in their stored dtype;
/// activations are fp32 (float64 on the CPU backend's test path). The forward pass can record a
/// <see cref="ForwardTape"/>; <see cref="Backward"/> then gives the gradient with respect to the
/// input embedding rows, and <see cref="TokenLossesBackward"/> the gradients with respect to
/// the head input and the output embeddings.
/// </summary>
public sealed class LanguageModel : IDisposable
{
    private readonly HfModelDirectory? _owned;
    private readonly LmWeights _w;

    // _dt: the arithmetic's dtype, kept by statistics (norm mean and rstd, attention
    // log-sum-exp), logits and losses; _act: what activations are stored in — _dt, or bf16 for
    // inference on a backend whose kernels read bf16 (as a bf16 model in PyTorch).
    private readonly DType _dt, _act;

    private LanguageModel(HfModelDirectory? owned, LmArchitecture architecture, LmWeights weights,
        IOpBackend backend, string path, DType activations)
    {
        _owned = owned;
        Architecture = architecture;
        _w = weights;
        Ops = backend;
        Path = path;
        _act = activations;
        _dt = activations == DType.BF16 ? DType.F32 : activations;
    }

    /// <summary>The family's settings.</summary>
    public LmArchitecture Architecture { get; }

    /// <summary>The backend the model computes on.</summary>
    public IOpBackend Ops { get; }

    /// <summary>The model directory.</summary>
    public string Path { get; }

    /// <summary>The activation dtype (F32; F64 on the CPU test path; BF16 for inference on
    /// CUDA).</summary>
    public DType ActivationType => _act;

    /// <summary>The input embedding matrix [vocab, hidden] as the model reads it.</summary>
    public Tensor InputEmbeddings => _w.Embed;

    /// <summary>The output embedding matrix [vocab, hidden] (the input one when tied).</summary>
    public Tensor OutputEmbeddings => _w.Head;

    /// <summary>Opens the Hugging Face model directory <paramref name="directory"/> (weights
    /// memory-mapped) for <paramref name="backend"/>. <paramref name="activations"/> F64 is the
    /// CPU backend's float64 test path (weights widened to float64 copies).</summary>
    /// <param name="directory">The model directory.</param>
    /// <param name="backend">Where to compute.</param>
    /// <param name="activations">F32; F64 (the test path); or BF16, inference only (no tape,
    /// not trainable), on a backend whose ops take bf16 activations (CUDA): every activation
    /// between two ops and the KV cache in bf16, statistics, logits and losses in fp32.</param>
    /// <param name="trainable">Copy the backbone (every weight but the embeddings) into
    /// writable tensors of the activation dtype (<see cref="TrainableWeights"/>), for
    /// training it.</param>
    public static LanguageModel Open(string directory, IOpBackend backend,
        DType activations = DType.F32, bool trainable = false)
    {
        ArgumentNullException.ThrowIfNull(backend);
        HfModelDirectory model = HfModelDirectory.Open(directory);
        try
        {
            return Create(model, backend, owns: true, activations, trainable);
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
        Create(model, backend, owns: false, DType.F32, trainable: false);

    /// <summary>A model over an open directory that the caller keeps alive and disposes, its
    /// backbone copied into writable fp32 tensors (<see cref="TrainableWeights"/>).</summary>
    public static LanguageModel CreateTrainable(HfModelDirectory model, IOpBackend backend) =>
        Create(model, backend, owns: false, DType.F32, trainable: true);

    private static LanguageModel Create(HfModelDirectory model, IOpBackend backend, bool owns,
        DType activations, bool trainable)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (activations is not (DType.F32 or DType.F64 or DType.BF16))
        {
            throw new ArgumentException($"activations must be F32, F64 or BF16, not {activations}");
        }
        if (activations == DType.BF16 && (trainable || backend is Ops.Cpu.CpuBackend))
        {
            throw new ArgumentException(trainable
                ? "bf16 activations are for inference; a trainable model computes in F32"
                : "the CPU backend computes activations in F32: bf16 activations need CUDA");
        }
        LmArchitecture a = LmArchitecture.FromConfig(model);
        LmWeights w = LmWeights.Load(model, a, backend,
            activations == DType.BF16 ? DType.F32 : activations, trainable);
        return new LanguageModel(owns ? model : null, a, w, backend, model.Directory, activations);
    }

    /// <summary>The backbone's writable weights when the model was opened trainable (empty
    /// otherwise): every weight but the embeddings, by checkpoint name.</summary>
    public IReadOnlyList<TrainableWeight> TrainableWeights => _w.Trainable;

    private Dictionary<Tensor, Tensor>? _gradients;

    /// <summary>Makes <see cref="Backward"/> and <see cref="HeadInputBackward"/> add
    /// ∂loss/∂weight into <paramref name="gradients"/> (by the names of
    /// <see cref="TrainableWeights"/>, same shapes and dtype); null stops it.</summary>
    public void AccumulateWeightGradients(IReadOnlyDictionary<string, Tensor>? gradients)
    {
        if (gradients is null)
        {
            _gradients = null;
            return;
        }
        var map = new Dictionary<Tensor, Tensor>(ReferenceEqualityComparer.Instance);
        foreach (TrainableWeight w in _w.Trainable)
        {
            if (!gradients.TryGetValue(w.Name, out Tensor? g))
            {
                throw new ArgumentException($"no gradient tensor for '{w.Name}'");
            }
            if (!g.Shape.AsSpan().SequenceEqual(w.Weight.Shape) || g.DType != w.Weight.DType)
            {
                throw new ArgumentException($"gradient '{w.Name}' is {g.DType} "
                    + $"{Tensor.ShapeText(g.Shape)}, the weight {w.Weight.DType} "
                    + Tensor.ShapeText(w.Weight.Shape));
            }
            map[w.Weight] = g;
        }
        _gradients = map;
    }

    /// <summary>The gradient tensor of weight <paramref name="w"/> when weight gradients are
    /// accumulated, else null.</summary>
    private Tensor? G(Tensor? w) =>
        w is not null && _gradients is not null && _gradients.TryGetValue(w, out Tensor? g) ? g : null;

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
            keys[i] = Ops.Zeros(_act, [batch, capacity, a.KvHeads, a.HeadDim], $"keys {i}");
            values[i] = Ops.Zeros(_act, [batch, capacity, a.KvHeads, a.HeadDim], $"values {i}");
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
    public Tensor Forward(ReadOnlySpan<int> ids, int batch, KvCache? cache = null,
        ForwardTape? tape = null)
    {
        LmArchitecture a = Architecture;
        if (batch <= 0 || ids.Length % batch != 0)
        {
            throw new ArgumentException($"{ids.Length} ids do not split into {batch} sequences");
        }
        foreach (int id in ids)
        {
            if (id < 0 || id >= a.Vocab)
            {
                throw new ZettException($"{Path}: token id {id} is outside the vocabulary of "
                    + a.Vocab);
            }
        }
        CheckLength((cache?.Length ?? 0) + ids.Length / batch);
        using Tensor idT = Ops.Upload(Tensor.FromInts(ids));
        using Tensor rows = Ops.Empty(_act, [ids.Length, a.Hidden], "embedding rows");
        Ops.EmbeddingForward(_w.Embed, idT, rows);
        return ForwardFromEmbeddings(rows, batch, cache, tape);
    }

    /// <summary>As <see cref="Forward"/> from the input embedding rows [batch · tokens, hidden]
    /// themselves (as stored in the embedding matrix: the family's embedding scale is applied
    /// here), e.g. rows a hypernetwork predicted. With a <paramref name="tape"/> (no cache) the
    /// activations the backward needs are kept in it. <paramref name="learnedPositionRows"/>
    /// [batch · tokens], for families with learned positions, gives the rows of the position
    /// table to read instead of position + offset (RoBERTa's ids computed from the input ids,
    /// pads at padding_idx).</summary>
    public Tensor ForwardFromEmbeddings(Tensor rows, int batch, KvCache? cache = null,
        ForwardTape? tape = null, int[]? learnedPositionRows = null)
    {
        ArgumentNullException.ThrowIfNull(rows);
        LmArchitecture a = Architecture;
        long n = rows.Shape[0];
        if (rows.Rank != 2 || rows.Shape[1] != a.Hidden || batch <= 0 || n % batch != 0)
        {
            throw new ArgumentException($"embedding rows {Tensor.ShapeText(rows.Shape)} must be "
                + $"[batch · tokens, {a.Hidden}] for {batch} sequences");
        }
        if (tape is not null && cache is not null)
        {
            throw new ArgumentException("a recorded forward pass takes no KV cache");
        }
        if (tape is not null && _act != _dt)
        {
            throw new ArgumentException($"a recorded forward pass computes in {_dt}; this model "
                + $"stores {_act} activations (inference only)");
        }
        int tokens = (int)(n / batch);
        int start = cache?.Length ?? 0;
        if (cache is not null && start + tokens > cache.Capacity)
        {
            throw new ZettException($"{Path}: {start + tokens} positions exceed the cache of "
                + cache.Capacity);
        }
        CheckLength(start + tokens);
        var scope = new List<Tensor>();
        int d = a.Hidden;
        var posIds = new int[n];
        for (int i = 0; i < n; i++)
        {
            posIds[i] = start + i % tokens;
        }
        Tensor posT = Keep(scope, Ops.Upload(Tensor.FromInts(posIds)));
        Tensor x = New(scope, n, d);
        Ops.Scale(rows, a.EmbeddingScale, x);
        if (_w.Positions is not null)
        {
            int[] learned = learnedPositionRows
                ?? Array.ConvertAll(posIds, p => p + a.PositionOffset);
            if (learned.Length != n)
            {
                throw new ArgumentException($"{learned.Length} position rows for {n} embedding "
                    + "rows");
            }
            using Tensor lpT = Ops.Upload(Tensor.FromInts(learned));
            using Tensor pe = Ops.Empty(_act, [n, d]);
            Ops.EmbeddingForward(_w.Positions, lpT, pe);
            Ops.Add(x, pe, x);
            if (tape is not null)
            {
                tape.LearnedPositions = learned;
            }
        }
        if (_w.TokenTypes is not null)
        {
            using Tensor zeros = Ops.Zeros(DType.I32, [n]);
            using Tensor te = Ops.Empty(_act, [n, d]);
            Ops.EmbeddingForward(_w.TokenTypes, zeros, te);
            Ops.Add(x, te, x);
        }
        if (_w.EmbedNorm is not null)
        {
            if (tape is not null)
            {
                tape.EmbedNormIn = x;
            }
            (x, NormStats st) = Norm(scope, x, _w.EmbedNorm, _w.EmbedNormBias);
            if (tape is not null)
            {
                tape.EmbedNormStats = st;
            }
        }
        for (int layer = 0; layer < a.Layers; layer++)
        {
            LayerWeights lw = _w.Layers[layer];
            var lt = new LayerTape { XIn = x };
            switch (a.Block)
            {
                case BlockKind.PreNorm:
                    {
                        lt.Norm1In = x;
                        (Tensor h1, lt.Norm1) = Norm(scope, x, lw.Norm1, lw.Norm1Bias);
                        Tensor attn = Attention(scope, layer, lw, h1, posT, batch, tokens, start,
                            cache, lt);
                        Tensor xm = New(scope, n, d);
                        Ops.Add(x, attn, xm);
                        lt.Norm2In = xm;
                        (Tensor h2, lt.Norm2) = Norm(scope, xm, lw.Norm2, lw.Norm2Bias);
                        Tensor mlp = Mlp(scope, lw, h2, lt);
                        x = New(scope, n, d);
                        Ops.Add(xm, mlp, x);
                        break;
                    }
                case BlockKind.ParallelPreNorm:
                    {
                        lt.Norm1In = x;
                        lt.Norm2In = x;
                        (Tensor h1, lt.Norm1) = Norm(scope, x, lw.Norm1, lw.Norm1Bias);
                        (Tensor h2, lt.Norm2) = Norm(scope, x, lw.Norm2, lw.Norm2Bias);
                        Tensor attn = Attention(scope, layer, lw, h1, posT, batch, tokens, start,
                            cache, lt);
                        Tensor mlp = Mlp(scope, lw, h2, lt);
                        Tensor y = New(scope, n, d);
                        Ops.Add(x, attn, y);
                        Ops.Add(y, mlp, y);
                        x = y;
                        break;
                    }
                default:
                    {
                        Tensor attn = Attention(scope, layer, lw, x, posT, batch, tokens, start, cache,
                            lt);
                        Tensor p1 = New(scope, n, d);
                        Ops.Add(x, attn, p1);
                        lt.Norm1In = p1;
                        (Tensor x1, lt.Norm1) = Norm(scope, p1, lw.Norm1, lw.Norm1Bias);
                        Tensor mlp = Mlp(scope, lw, x1, lt);
                        Tensor p2 = New(scope, n, d);
                        Ops.Add(x1, mlp, p2);
                        lt.Norm2In = p2;
                        (x, lt.Norm2) = Norm(scope, p2, lw.Norm2, lw.Norm2Bias);
                        break;
                    }
            }
            if (tape is null)
            {
                // Nothing of a finished layer is read again without a tape: freeing it here
                // holds one layer's activations instead of all of them (Llama-7B, 512 tokens,
                // by the tensor sizes: ~150 MB instead of ~4.8 GB).
                ReleaseAllBut(scope, posT, x);
            }
            else
            {
                tape.Layers.Add(lt);
            }
        }
        if (cache is not null)
        {
            cache.Length = start + tokens;
        }
        if (_w.FinalNorm is not null)
        {
            if (tape is not null)
            {
                tape.FinalIn = x;
            }
            (x, NormStats st) = Norm(scope, x, _w.FinalNorm, _w.FinalNormBias);
            if (tape is not null)
            {
                tape.FinalStats = st;
            }
        }
        scope.Remove(x);
        if (tape is null)
        {
            foreach (Tensor t in scope)
            {
                t.Dispose();
            }
        }
        else
        {
            tape.Owned.AddRange(scope);
            tape.Positions = posT;
            tape.Batch = batch;
            tape.Tokens = tokens;
        }
        return x;
    }

    /// <summary>The gradient with respect to the input embedding rows of a recorded forward
    /// pass, given <paramref name="dHidden"/> = ∂loss/∂(final hidden states). The family's
    /// embedding scale is included (the rows are those passed to
    /// <see cref="ForwardFromEmbeddings"/>). Scatter it into a table with
    /// <see cref="IOpBackend.EmbeddingBackward"/> when the rows came from ids.</summary>
    public Tensor Backward(ForwardTape tape, Tensor dHidden)
    {
        ArgumentNullException.ThrowIfNull(tape);
        ArgumentNullException.ThrowIfNull(dHidden);
        LmArchitecture a = Architecture;
        if (tape.Layers.Count != a.Layers)
        {
            throw new ArgumentException("the tape does not hold a whole forward pass");
        }
        long n = dHidden.Shape[0];
        int d = a.Hidden;
        var scope = new List<Tensor>();
        Tensor g = New(scope, n, d);
        if (_w.FinalNorm is not null)
        {
            NormBackward(dHidden, tape.FinalIn!, _w.FinalNorm, _w.FinalNormBias, tape.FinalStats!, g);
        }
        else
        {
            Ops.Copy(dHidden, g);
        }
        for (int layer = a.Layers - 1; layer >= 0; layer--)
        {
            LayerWeights lw = _w.Layers[layer];
            LayerTape lt = tape.Layers[layer];
            Tensor dx = New(scope, n, d);
            switch (a.Block)
            {
                case BlockKind.PreNorm:
                    {
                        Tensor dxm = New(scope, n, d);
                        Ops.Copy(g, dxm);
                        Tensor dh2 = MlpBackward(scope, lw, g, lt);
                        Tensor t2 = New(scope, n, d);
                        NormBackward(dh2, lt.Norm2In, lw.Norm2, lw.Norm2Bias, lt.Norm2, t2);
                        Ops.Add(dxm, t2, dxm);
                        Tensor dh1 = AttentionBackward(scope, lw, dxm, lt, tape);
                        NormBackward(dh1, lt.Norm1In, lw.Norm1, lw.Norm1Bias, lt.Norm1, dx);
                        Ops.Add(dx, dxm, dx);
                        break;
                    }
                case BlockKind.ParallelPreNorm:
                    {
                        Tensor dh1 = AttentionBackward(scope, lw, g, lt, tape);
                        Tensor dh2 = MlpBackward(scope, lw, g, lt);
                        NormBackward(dh1, lt.Norm1In, lw.Norm1, lw.Norm1Bias, lt.Norm1, dx);
                        Tensor t2 = New(scope, n, d);
                        NormBackward(dh2, lt.Norm2In, lw.Norm2, lw.Norm2Bias, lt.Norm2, t2);
                        Ops.Add(dx, t2, dx);
                        Ops.Add(dx, g, dx);
                        break;
                    }
                default:
                    {
                        Tensor dp2 = New(scope, n, d);
                        NormBackward(g, lt.Norm2In, lw.Norm2, lw.Norm2Bias, lt.Norm2, dp2);
                        Tensor dx1 = MlpBackward(scope, lw, dp2, lt);
                        Ops.Add(dx1, dp2, dx1);
                        Tensor dp1 = New(scope, n, d);
                        NormBackward(dx1, lt.Norm1In, lw.Norm1, lw.Norm1Bias, lt.Norm1, dp1);
                        Tensor da = AttentionBackward(scope, lw, dp1, lt, tape);
                        Ops.Add(da, dp1, dx);
                        break;
                    }
            }
            g = dx;
        }
        if (_w.EmbedNorm is not null)
        {
            Tensor t = New(scope, n, d);
            NormBackward(g, tape.EmbedNormIn!, _w.EmbedNorm, _w.EmbedNormBias,
                tape.EmbedNormStats!, t);
            g = t;
        }
        // The learned position and token-type tables take the gradient of their rows' sum.
        if (G(_w.Positions) is { } dPositions)
        {
            using Tensor lpT = Ops.Upload(Tensor.FromInts(tape.LearnedPositions!));
            Ops.EmbeddingBackward(g, lpT, dPositions);
        }
        if (G(_w.TokenTypes) is { } dTypes)
        {
            using Tensor zeros = Ops.Zeros(DType.I32, [n]);
            Ops.EmbeddingBackward(g, zeros, dTypes);
        }
        Tensor result = Ops.Empty(_dt, [n, d], "d embedding rows");
        Ops.Scale(g, Architecture.EmbeddingScale, result);
        foreach (Tensor t in scope)
        {
            t.Dispose();
        }
        return result;
    }

    /// <summary>The input of the output embedding: the hidden states themselves, or for a
    /// masked LM its head's dense → GELU → LayerNorm. Returns a new tensor; a
    /// <paramref name="tape"/> keeps what <see cref="HeadInputBackward"/> needs.</summary>
    public Tensor HeadInput(Tensor hidden, HeadTape? tape = null)
    {
        ArgumentNullException.ThrowIfNull(hidden);
        if (tape is not null && _act != _dt)
        {
            throw new ArgumentException($"a recorded head computes in {_dt}; this model stores "
                + $"{_act} activations (inference only)");
        }
        Tensor y = Ops.Empty(_act, hidden.Shape, "head input");
        if (_w.MlmDense is null)
        {
            Ops.Copy(hidden, y);
            return y;
        }
        var scope = new List<Tensor>();
        Tensor dense = New(scope, hidden.Shape);
        Ops.Linear(hidden, _w.MlmDense, _w.MlmDenseBias, dense);
        Tensor act = New(scope, hidden.Shape);
        Ops.Activation(Architecture.Activation, dense, act);
        (Tensor normed, NormStats st) = Norm(scope, act, _w.MlmNorm!, _w.MlmNormBias);
        Ops.Copy(normed, y);
        if (tape is null)
        {
            foreach (Tensor t in scope)
            {
                t.Dispose();
            }
        }
        else
        {
            tape.Owned.AddRange(scope);
            (tape.In, tape.Dense, tape.Act, tape.Stats) = (hidden, dense, act, st);
        }
        return y;
    }

    /// <summary>∂loss/∂hidden from ∂loss/∂(head input) (identity for causal LMs).</summary>
    public Tensor HeadInputBackward(HeadTape tape, Tensor dHeadInput)
    {
        ArgumentNullException.ThrowIfNull(tape);
        ArgumentNullException.ThrowIfNull(dHeadInput);
        Tensor dh = Ops.Empty(_dt, dHeadInput.Shape, "d hidden");
        if (_w.MlmDense is null)
        {
            Ops.Copy(dHeadInput, dh);
            return dh;
        }
        using Tensor dAct = Ops.Empty(_dt, dHeadInput.Shape);
        NormBackward(dHeadInput, tape.Act!, _w.MlmNorm!, _w.MlmNormBias, tape.Stats!, dAct);
        Ops.ActivationBackward(Architecture.Activation, dAct, tape.Dense!, dAct);
        Ops.LinearBackward(dAct, tape.In!, _w.MlmDense, false, dh, G(_w.MlmDense),
            G(_w.MlmDenseBias));
        return dh;
    }

    /// <summary>Logits [rows, vocab] of head inputs (<see cref="HeadInput"/>) — for few rows
    /// (generation, golden checks); losses over many rows use <see cref="TokenLosses"/>.
    /// </summary>
    public Tensor Logits(Tensor headInput)
    {
        ArgumentNullException.ThrowIfNull(headInput);
        Tensor logits = Ops.Empty(_dt, [headInput.Shape[0], Architecture.Vocab], "logits");
        Ops.Linear(headInput, _w.Head, _w.HeadBias, logits);
        return logits;
    }

    /// <summary>Natural-log cross-entropy of each row's target (negative target: ignored,
    /// loss 0), through the fused vocabulary-chunked head: losses [rows]. The output
    /// embeddings are the model's unless <paramref name="outputEmbeddings"/> is given (a
    /// predicted matrix [vocab, hidden]) with the logit bias <paramref name="outputBias"/>
    /// [vocab] (null: none; the model's own bias belongs to its own vocabulary, and the
    /// reference zeroes it under predicted embeddings); <paramref name="logSumExp"/>, when
    /// given, receives the rows' log-sum-exp for <see cref="TokenLossesBackward"/>.</summary>
    public Tensor TokenLosses(Tensor headInput, ReadOnlySpan<int> targets,
        Tensor? outputEmbeddings = null, Tensor? logSumExp = null, Tensor? outputBias = null)
    {
        ArgumentNullException.ThrowIfNull(headInput);
        long n = headInput.Shape[0];
        using Tensor t = Ops.Upload(Tensor.FromInts(targets));
        Tensor losses = Ops.Empty(_dt, [n], "losses");
        using Tensor own = Ops.Empty(_dt, [n]);
        Ops.LmHeadCrossEntropy(headInput, outputEmbeddings ?? _w.Head,
            HeadBiasFor(outputEmbeddings, outputBias), t, losses, logSumExp ?? own);
        return losses;
    }

    private Tensor? HeadBiasFor(Tensor? outputEmbeddings, Tensor? outputBias) =>
        outputEmbeddings is null ? _w.HeadBias : outputBias;

    /// <summary>Backward of <see cref="TokenLosses"/> for upstream <paramref name="dLosses"/>:
    /// returns ∂loss/∂(head input); accumulates ∂loss/∂(output embeddings) into
    /// <paramref name="dOutputEmbeddings"/> and ∂loss/∂(bias) into <paramref name="dOutputBias"/>
    /// when given (the bias as in <see cref="TokenLosses"/>).</summary>
    public Tensor TokenLossesBackward(Tensor headInput, ReadOnlySpan<int> targets,
        Tensor logSumExp, Tensor dLosses, Tensor? dOutputEmbeddings = null,
        Tensor? outputEmbeddings = null, Tensor? outputBias = null, Tensor? dOutputBias = null)
    {
        ArgumentNullException.ThrowIfNull(headInput);
        using Tensor t = Ops.Upload(Tensor.FromInts(targets));
        Tensor dHead = Ops.Empty(_dt, headInput.Shape, "d head input");
        Ops.LmHeadCrossEntropyBackward(headInput, outputEmbeddings ?? _w.Head,
            HeadBiasFor(outputEmbeddings, outputBias), t, logSumExp, dLosses, dHead,
            dOutputEmbeddings, dOutputBias);
        return dHead;
    }

    private Tensor New(List<Tensor> scope, params long[] shape)
    {
        Tensor t = Ops.Empty(_act, shape);
        scope.Add(t);
        return t;
    }

    /// <summary>A statistic (norm mean or rstd, attention log-sum-exp): in the arithmetic's
    /// dtype whatever the activations' storage.</summary>
    private Tensor Stat(List<Tensor> scope, params long[] shape)
    {
        Tensor t = Ops.Empty(_dt, shape);
        scope.Add(t);
        return t;
    }

    private static void ReleaseAllBut(List<Tensor> scope, Tensor a, Tensor b)
    {
        foreach (Tensor t in scope)
        {
            if (t != a && t != b)
            {
                t.Dispose();
            }
        }
        scope.Clear();
        scope.Add(a);
        scope.Add(b);
    }

    private static Tensor Keep(List<Tensor> scope, Tensor t)
    {
        scope.Add(t);
        return t;
    }

    private (Tensor Y, NormStats Stats) Norm(List<Tensor> scope, Tensor x, Tensor w, Tensor? b)
    {
        LmArchitecture a = Architecture;
        long rows = x.Shape[0];
        Tensor y = New(scope, x.Shape);
        Tensor rstd = Stat(scope, rows);
        if (a.Norm == NormKind.Rms)
        {
            Ops.RmsNormForward(x, w, a.NormEps, a.NormUnitOffset, y, rstd);
            return (y, new NormStats(null, rstd));
        }
        Tensor mean = Stat(scope, rows);
        Ops.LayerNormForward(x, w, b, a.NormEps, y, mean, rstd);
        return (y, new NormStats(mean, rstd));
    }

    private void NormBackward(Tensor dy, Tensor x, Tensor w, Tensor? b, NormStats st, Tensor dx)
    {
        LmArchitecture a = Architecture;
        if (a.Norm == NormKind.Rms)
        {
            Ops.RmsNormBackward(dy, x, w, a.NormUnitOffset, st.Rstd, dx, G(w));
        }
        else
        {
            Ops.LayerNormBackward(dy, x, w, st.Mean!, st.Rstd, dx, G(w), G(b));
        }
    }

    private (Tensor Q, Tensor K, Tensor V) QkvViews(Tensor qkv)
    {
        LmArchitecture a = Architecture;
        long n = qkv.Shape[0], width = qkv.Shape[1];
        int hq = a.Heads, hkv = a.KvHeads, dh = a.HeadDim;
        if (a.Qkv == QkvLayout.PerHead)
        {
            long[] shape = [n, hq, dh], strides = [width, 3L * dh, 1];
            return (qkv.AsStrided(shape, strides), qkv.AsStrided(shape, strides, dh),
                qkv.AsStrided(shape, strides, 2L * dh));
        }
        return (qkv.AsStrided([n, hq, dh], [width, dh, 1]),
            qkv.AsStrided([n, hkv, dh], [width, dh, 1], (long)hq * dh),
            qkv.AsStrided([n, hkv, dh], [width, dh, 1], (long)(hq + hkv) * dh));
    }

    private Tensor Attention(List<Tensor> scope, int layer, LayerWeights lw, Tensor h,
        Tensor positions, int batch, int tokens, int start, KvCache? cache, LayerTape lt)
    {
        LmArchitecture a = Architecture;
        long n = h.Shape[0];
        int hq = a.Heads, hkv = a.KvHeads, dh = a.HeadDim;
        Tensor qkv = New(scope, n, (long)(hq + 2 * hkv) * dh);
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
        (Tensor q, Tensor k, Tensor v) = QkvViews(qkv);
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
        Tensor attn = New(scope, n, (long)hq * dh);
        Tensor lse = Stat(scope, batch, hq, tokens);
        Ops.AttentionForward(Split(q, batch, tokens), keys, values, AttentionOptions(),
            attn.View(batch, tokens, hq, dh), lse);
        Tensor output = New(scope, n, a.Hidden);
        Ops.Linear(attn, lw.O, lw.OBias, output, a.WeightsInOut);
        (lt.AttnIn, lt.Qkv, lt.Attn, lt.Lse) = (h, qkv, attn, lse);
        return output;
    }

    private AttentionOptions AttentionOptions() =>
        new(Architecture.AttentionScale, Architecture.Causal, Architecture.SlidingWindow);

    private Tensor AttentionBackward(List<Tensor> scope, LayerWeights lw, Tensor dOut,
        LayerTape lt, ForwardTape tape)
    {
        LmArchitecture a = Architecture;
        long n = dOut.Shape[0];
        int hq = a.Heads, hkv = a.KvHeads, dh = a.HeadDim, b = tape.Batch, t = tape.Tokens;
        Tensor dAttn = New(scope, n, (long)hq * dh);
        Ops.LinearBackward(dOut, lt.Attn, lw.O, a.WeightsInOut, dAttn, G(lw.O), G(lw.OBias));
        Tensor dqkv = New(scope, lt.Qkv.Shape);
        (Tensor q, Tensor k, Tensor v) = QkvViews(lt.Qkv);
        (Tensor dq, Tensor dk, Tensor dv) = QkvViews(dqkv);
        Ops.AttentionBackward(dAttn.View(b, t, hq, dh), Split(q, b, t), Split(k, b, t),
            Split(v, b, t), lt.Attn.View(b, t, hq, dh), lt.Lse, AttentionOptions(),
            Split(dq, b, t), Split(dk, b, t), Split(dv, b, t));
        if (a.Rotary is { } rot && rot.Dims > 0)
        {
            Ops.Rotary(dq, tape.Positions!, rot, dq, inverse: true);
            Ops.Rotary(dk, tape.Positions!, rot, dk, inverse: true);
        }
        Tensor dh1 = New(scope, n, a.Hidden);
        if (lw.Qkv is not null)
        {
            Ops.LinearBackward(dqkv, lt.AttnIn, lw.Qkv, a.WeightsInOut, dh1, G(lw.Qkv),
                G(lw.QkvBias));
            return dh1;
        }
        Tensor tmp = New(scope, n, a.Hidden);
        Ops.LinearBackward(dqkv.Slice(1, 0, hq * dh), lt.AttnIn, lw.Q!, a.WeightsInOut, dh1,
            G(lw.Q), G(lw.QBias));
        Ops.LinearBackward(dqkv.Slice(1, hq * dh, hkv * dh), lt.AttnIn, lw.K!, a.WeightsInOut,
            tmp, G(lw.K), G(lw.KBias));
        Ops.Add(dh1, tmp, dh1);
        Ops.LinearBackward(dqkv.Slice(1, (hq + hkv) * dh, hkv * dh), lt.AttnIn, lw.V!,
            a.WeightsInOut, tmp, G(lw.V), G(lw.VBias));
        Ops.Add(dh1, tmp, dh1);
        return dh1;
    }

    /// <summary>[B·T, H, Dh] as [B, T, H, Dh] (same strides).</summary>
    private static Tensor Split(Tensor t, int batch, int tokens) =>
        t.AsStrided([batch, tokens, t.Shape[1], t.Shape[2]],
            [tokens * t.Strides[0], t.Strides[0], t.Strides[1], t.Strides[2]]);

    private Tensor Mlp(List<Tensor> scope, LayerWeights lw, Tensor h, LayerTape lt)
    {
        LmArchitecture a = Architecture;
        long n = h.Shape[0];
        Tensor up = New(scope, n, a.Intermediate);
        Ops.Linear(h, lw.Up, lw.UpBias, up, a.WeightsInOut);
        Tensor act = New(scope, n, a.Intermediate);
        if (a.GatedMlp)
        {
            Tensor gate = New(scope, n, a.Intermediate);
            Ops.Linear(h, lw.Gate!, lw.GateBias, gate, a.WeightsInOut);
            Ops.GatedActivation(a.Activation, gate, up, act);
            lt.Gate = gate;
        }
        else
        {
            Ops.Activation(a.Activation, up, act);
        }
        Tensor output = New(scope, n, a.Hidden);
        Ops.Linear(act, lw.Down, lw.DownBias, output, a.WeightsInOut);
        (lt.MlpIn, lt.Up, lt.Act) = (h, up, act);
        return output;
    }

    private Tensor MlpBackward(List<Tensor> scope, LayerWeights lw, Tensor dOut, LayerTape lt)
    {
        LmArchitecture a = Architecture;
        long n = dOut.Shape[0];
        Tensor dAct = New(scope, n, a.Intermediate);
        Ops.LinearBackward(dOut, lt.Act, lw.Down, a.WeightsInOut, dAct, G(lw.Down),
            G(lw.DownBias));
        Tensor dh = New(scope, n, a.Hidden);
        Tensor dUp = New(scope, n, a.Intermediate);
        if (a.GatedMlp)
        {
            Tensor dGate = New(scope, n, a.Intermediate);
            Ops.GatedActivationBackward(a.Activation, dAct, lt.Gate!, lt.Up, dGate, dUp);
            Ops.LinearBackward(dGate, lt.MlpIn, lw.Gate!, a.WeightsInOut, dh, G(lw.Gate),
                G(lw.GateBias));
            Tensor tmp = New(scope, n, a.Hidden);
            Ops.LinearBackward(dUp, lt.MlpIn, lw.Up, a.WeightsInOut, tmp, G(lw.Up),
                G(lw.UpBias));
            Ops.Add(dh, tmp, dh);
            return dh;
        }
        Ops.ActivationBackward(a.Activation, dAct, lt.Up, dUp);
        Ops.LinearBackward(dUp, lt.MlpIn, lw.Up, a.WeightsInOut, dh, G(lw.Up), G(lw.UpBias));
        return dh;
    }

    /// <summary>Frees the weights' device copies and, when this model opened it, the
    /// directory's memory maps.</summary>
    public void Dispose()
    {
        _w.Dispose();
        _owned?.Dispose();
    }
}
