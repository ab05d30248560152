using System.Diagnostics;
using ZeTT.Ops;

namespace ZeTT.Runtime.Hypernetwork;

/// <summary>
/// The hypernetwork (ZETT.md §3, TRAINING.md §6.1) written once over the op layer, forward and
/// backward, on any <see cref="IOpBackend"/>: the graph that training differentiates and that
/// <see cref="HypernetPredictor"/> runs for <c>zett transfer</c> and <c>zett predict</c>.
/// </summary>
/// <remarks>
/// <para>Layout: each surface-form row becomes one encoder sequence. Attention only needs which
/// keys a query sees, and everything else in the encoder acts position by position, so the
/// positions of a row may be stored in any order as long as each carries its own position
/// embedding, and positions nothing reads may be left out. A row stores its attended positions
/// first (its non-padding ids, in order), then its language position, then position 0 when that
/// is padding (a masked key, but the pooled output reads its query); the op's per-sequence key
/// lengths express the mask exactly. Every other padding position is a masked key whose output
/// nothing reads, so it is not computed at all: exact, because a masked key's softmax weight is
/// exactly 0 in the reference too. A row whose every key is masked (padding only, no language
/// position) attends uniformly in the reference (every score gets the same finfo.min); it keeps
/// all L positions and its queries are zeroed, which gives the same uniform weights.</para>
/// <para>Rows are grouped by sequence length (stable), so that each group is one [B, S, heads,
/// head_dim] attention call over a packed token matrix; the outputs come back in row order.
/// Only position 0 of the last encoder layer reaches the heads (ZETT.md §3 step 7), so that
/// layer computes keys and values for every position but queries, attention output and
/// feed-forward for the pooled position only — exact, not an approximation.</para>
/// <para>The in_scaler is frozen in the reference (TRAINING.md §6.3), so it is applied to the
/// source embeddings once when the graph is built; every other parameter is read from
/// <see cref="Parameters"/> at each pass, so optimizer updates are seen.</para>
/// <para><see cref="Forward"/> keeps every activation for <see cref="Backward"/> (training);
/// <see cref="Predict"/> keeps none: its tensors come from two workspaces the graph reuses from
/// batch to batch (one for what lives through the pass, one for a block's or layer's
/// temporaries), so inference neither allocates nor keeps activations after its first batch.
/// One <see cref="Predict"/> at a time per graph.</para>
/// <para>Inference may store its activations in bf16 (the constructor's activation dtype; the
/// CUDA backend's kernels read and write bf16 with fp32 arithmetic): then every activation
/// between two ops is a bf16 tensor, as in the reference's bf16 forward pass, while the
/// statistics (LayerNorm mean and rstd, attention log-sum-exp) and the outputs (the heads'
/// results, the rescaled embeddings and the bias) stay fp32. Training always computes in the
/// parameters' dtype.</para>
/// </remarks>
public sealed class HypernetGraph : IDisposable
{
    private readonly IOpBackend _ops;
    private readonly HypernetConfig _c;
    private readonly DType _dt, _act;
    private readonly Tensor _table; // in_scaler(E) [V, D_in], activation dtype
    private readonly int _l, _h, _i, _d, _n, _heads;
    private readonly Workspace _live, _temp, _stats, _indices;

    // Outputs alternate between two workspaces, so that one batch's results can still be on
    // their way to the host (Submit … Complete) while the next batch writes its own.
    private readonly Workspace[] _outputs;
    private readonly bool[] _submitted = new bool[2];
    private int _parity;

    /// <summary>Builds the graph over <paramref name="parameters"/> (which it reads, never owns)
    /// and the source embeddings <paramref name="sourceEmbeddings"/> [V, D_in] (a host or
    /// device tensor of any float dtype; for untied models [E_in, E_out] per row).
    /// <paramref name="activationDType"/> is the dtype of <see cref="Predict"/>'s activations:
    /// the parameters' dtype (the default) or BF16 (on a backend whose ops take bf16
    /// activations: CUDA).</summary>
    public HypernetGraph(HypernetConfig config, HypernetParameters parameters,
        Tensor sourceEmbeddings, DType? activationDType = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(sourceEmbeddings);
        _c = config;
        Parameters = parameters;
        _ops = parameters.Backend;
        _dt = parameters.DType;
        _act = activationDType ?? _dt;
        if (_act != _dt && _act != DType.BF16)
        {
            throw new ArgumentException($"inference activations are {_dt} (the parameters') or "
                + $"BF16, not {_act}", nameof(activationDType));
        }
        _l = config.SurfaceMaxLen;
        _h = config.HiddenSize;
        _i = config.IntermediateSize;
        _d = config.SourceWidth;
        _n = config.NEmbd;
        _heads = config.NumAttentionHeads;
        if (sourceEmbeddings.Rank != 2 || sourceEmbeddings.Shape[1] != _d
            || sourceEmbeddings.Shape[0] < config.OriginalVocabSize)
        {
            throw new ZettException($"source embeddings '{sourceEmbeddings.Name}' have shape "
                + $"{Tensor.ShapeText(sourceEmbeddings.Shape)}, expected [≥{config.OriginalVocabSize}"
                + $", {_d}]" + (config.SeparateOutEmbeddings
                    ? " (untied model: [E_in, E_out] per row)" : ""));
        }
        long v = config.OriginalVocabSize;
        Tensor src = _ops.Upload(sourceEmbeddings);
        try
        {
            _table = _ops.Empty(_dt, [v, _d], "source embeddings");
            _ops.Copy(src.Slice(0, 0, v), _table);
        }
        finally
        {
            if (!ReferenceEquals(src, sourceEmbeddings))
            {
                src.Dispose();
            }
        }
        if (parameters.Find("in_scaler.w") is { } w)
        {
            _ops.ScaleShift(_table, w.View(-1), parameters["in_scaler.b"].View(-1), _table);
        }
        _live = new Workspace(_ops, _act);
        _temp = new Workspace(_ops, _act);
        _stats = new Workspace(_ops, Wide);
        _indices = new Workspace(_ops, DType.I32);
        _outputs = [new Workspace(_ops, Wide), new Workspace(_ops, Wide)];
    }

    /// <summary>The dtype of <see cref="Predict"/>'s activations.</summary>
    public DType ActivationDType => _act;

    /// <summary>The dtype of inference statistics and outputs: fp32 for bf16 activations.
    /// </summary>
    private DType Wide => _act == DType.BF16 ? DType.F32 : _act;

    /// <summary>The parameters the graph reads.</summary>
    public HypernetParameters Parameters { get; }

    /// <summary>The configuration.</summary>
    public HypernetConfig Config => _c;

    private Tensor P(string name) => Parameters[name];

    private Tensor? Maybe(string name) => Parameters.Find(name);

    /// <summary>Predicts embeddings for <paramref name="rows"/> surface forms [rows, L]
    /// (hn-tokenizer ids, padded with the pad id), keeping what the backward needs.
    /// <paramref name="surfaceLength"/> L may be shorter than the config's (the identity stage
    /// feeds single ids, L = 1); 0 means the config's.</summary>
    public HypernetPass Forward(ReadOnlySpan<int> surfaceForms, int rows, int langIndex,
        int surfaceLength = 0) => Run(surfaceForms, rows, langIndex, surfaceLength, training: true);

    /// <summary>Inference: the same forward pass as <see cref="Forward"/>, keeping nothing for a
    /// backward pass, its outputs copied to host float arrays.</summary>
    public HypernetOutput Predict(ReadOnlySpan<int> surfaceForms, int rows, int langIndex)
    {
        using HypernetSubmission s = Submit(surfaceForms, rows, langIndex);
        return s.Complete();
    }

    /// <summary>Inference without waiting: queues the forward pass of <see cref="Predict"/> and
    /// the copies of its outputs to the host, and returns; <see cref="HypernetSubmission.Complete()"/>
    /// waits for them. At most two submissions are outstanding at a time (the outputs
    /// alternate between two workspaces), so a caller can queue batch i + 1 before it collects
    /// batch i and the device computes while results travel.</summary>
    public HypernetSubmission Submit(ReadOnlySpan<int> surfaceForms, int rows, int langIndex)
    {
        int parity = _parity;
        if (_submitted[parity])
        {
            throw new InvalidOperationException("two submissions are outstanding: complete (or "
                + "dispose) the older one before submitting another");
        }
        _submitted[parity] = true;
        try
        {
            using HypernetPass pass = Run(surfaceForms, rows, langIndex, 0, training: false);
            _parity ^= 1;
            return new HypernetSubmission(this, parity, pass);
        }
        catch
        {
            _submitted[parity] = false;
            throw;
        }
    }

    internal void Release(int parity) => _submitted[parity] = false;

    private HypernetPass Run(ReadOnlySpan<int> surfaceForms, int rows, int langIndex,
        int surfaceLength, bool training)
    {
        long start = Stopwatch.GetTimestamp();
        try
        {
            return ForwardCore(surfaceForms, rows, langIndex, surfaceLength, training);
        }
        finally
        {
            Elapsed += Stopwatch.GetElapsedTime(start);
        }
    }

    /// <summary>Time spent in <see cref="Forward"/> and <see cref="Backward"/> so far (the
    /// training log's hypernetwork share of a step).</summary>
    public TimeSpan Elapsed { get; private set; }

    private HypernetPass ForwardCore(ReadOnlySpan<int> surfaceForms, int rows, int langIndex,
        int surfaceLength, bool training)
    {
        int l = surfaceLength == 0 ? _l : surfaceLength;
        if (l < 1 || l > _l)
        {
            throw new ArgumentOutOfRangeException(nameof(surfaceLength), surfaceLength,
                $"surface forms are 1..{_l} ids long");
        }
        if (rows <= 0 || surfaceForms.Length != (long)rows * l)
        {
            throw new ArgumentException($"surface forms hold {surfaceForms.Length} ids, expected "
                + $"rows·L = {rows}·{l} with rows > 0", nameof(surfaceForms));
        }
        if (_c.EmbedLangId ? langIndex < 0 || langIndex >= _c.NumLangs : langIndex != -1)
        {
            throw new ZettException($"language index {langIndex} does not fit this hypernetwork ("
                + (_c.EmbedLangId ? $"{_c.NumLangs} languages" : "no language embeddings") + ")");
        }
        var pass = new HypernetPass(this, rows, langIndex, training);
        try
        {
            if (!training)
            {
                _live.Reset();
                _stats.Reset();
                _indices.Reset();
                _outputs[_parity].Reset();
            }
            pass.Layout = BatchLayout.Build(surfaceForms, rows, l, _c, _ops,
                training ? null : _indices);
            RunForward(pass);
        }
        catch
        {
            pass.Dispose();
            throw;
        }
        return pass;
    }

    /// <summary>A tensor that lives through the pass (kept for the backward when training).
    /// </summary>
    private Tensor Live(HypernetPass p, long[] shape, string name, bool zero = false) =>
        p.Training ? p.Keep(zero ? _ops.Zeros(_dt, shape, name) : _ops.Empty(_dt, shape, name))
            : _live.Take(shape, zero);

    /// <summary>A block's or layer's temporary: kept for the backward when training, else from
    /// the workspace that <see cref="BeginTemporaries"/> rewinds.</summary>
    private Tensor Temp(HypernetPass p, long[] shape, string name, bool zero = false) =>
        p.Training ? p.Keep(zero ? _ops.Zeros(_dt, shape, name) : _ops.Empty(_dt, shape, name))
            : _temp.Take(shape, zero);

    /// <summary>A statistic (LayerNorm mean and rstd, attention log-sum-exp): as
    /// <see cref="Live"/>, but fp32 when the activations are bf16 (small, never rewound within
    /// a pass).</summary>
    private Tensor Stat(HypernetPass p, long[] shape, string name) =>
        p.Training ? p.Keep(_ops.Empty(_dt, shape, name)) : _stats.Take(shape, false);

    /// <summary>One of the heads' results: fp32 when the activations are bf16, in this pass's
    /// output workspace.</summary>
    private Tensor Output(HypernetPass p, long[] shape, string name) =>
        p.Training ? p.Keep(_ops.Empty(_dt, shape, name)) : _outputs[_parity].Take(shape, false);

    /// <summary>Inference only: the temporaries of the previous block or layer are dead.</summary>
    private void BeginTemporaries(HypernetPass p)
    {
        if (!p.Training)
        {
            _temp.Reset();
        }
    }

    private void RunForward(HypernetPass p)
    {
        BatchLayout lay = p.Layout!;
        long n = lay.Tokens, t = lay.Sequence;
        int rows = p.Rows;

        // x_j: in_scaler(E[s_j]) for s_j < V0, fallback[s_j − V0] otherwise; both gathered into
        // one [2N, D_in] buffer, then each position picks its row.
        BeginTemporaries(p);
        Tensor both = Temp(p, [2 * n, _d], "gathered");
        _ops.EmbeddingForward(_table, lay.SourceIds, both.Slice(0, 0, n));
        _ops.EmbeddingForward(P("fallback_embeddings.weight"), lay.FallbackIds,
            both.Slice(0, n, n));
        p.X = Temp(p, [n, _d], "x");
        _ops.EmbeddingForward(both, lay.Pick, p.X);

        p.P0 = Live(p, [n, _h], "projected");
        Linear(p.X, "input_projection.0", p.P0);
        // U: the projector's output per surface position, then the language row.
        p.U = Live(p, [n + 1, _h], "u", zero: true);
        p.InputBlock = Block("input_projection.1", p.P0, p.U.Slice(0, 0, n), p);
        if (_c.EmbedLangId)
        {
            // The PyTorch port's way: lang − pos[L] − type[0], to which the embedding layer
            // adds pos[L] + type[0] back (the language row's position id is L).
            Tensor langRow = p.U.Slice(0, n, 1);
            _ops.Copy(P("lang_embeddings.weight").Slice(0, p.LangIndex, 1), langRow);
            _ops.AddScaled(P("model.embeddings.position_embeddings.weight").Slice(0, lay.L, 1),
                -1f, langRow);
            _ops.AddScaled(P("model.embeddings.token_type_embeddings.weight").Slice(0, 0, 1), -1f,
                langRow);
        }
        BeginTemporaries(p);
        p.E0 = Temp(p, [t, _h], "embeddings");
        Tensor tmp = Temp(p, [t, _h], "embedding terms");
        _ops.EmbeddingForward(p.U, lay.SequenceSource, p.E0);
        _ops.EmbeddingForward(P("model.embeddings.position_embeddings.weight"), lay.Positions,
            tmp);
        _ops.Add(p.E0, tmp, p.E0);
        _ops.EmbeddingForward(P("model.embeddings.token_type_embeddings.weight"),
            lay.ZeroIds, tmp);
        _ops.Add(p.E0, tmp, p.E0);
        Tensor h = Live(p, [t, _h], "h0");
        p.EmbLn = Norm(p.E0, "model.embeddings.LayerNorm", _c.EncoderLayerNormEps, h, p);
        p.H0 = h;
        for (int li = 0; li < _c.NumLayers; li++)
        {
            var layer = new LayerState { Input = h, Pooled = li == _c.NumLayers - 1 };
            p.Layers.Add(layer);
            h = Layer(li, h, lay, layer, p);
        }
        // z = h[:, 0] per row, in row order: the last layer computed the pooled positions only
        // (in group order); without layers, the embeddings' position 0.
        p.Z = Live(p, [rows, _h], "z");
        _ops.EmbeddingForward(h, _c.NumLayers > 0 ? lay.Unsort : lay.Pool, p.Z);
        p.HLast = h;

        int headOut = (int)P("output_projection.1.weight").Shape[0];
        // Both heads' first dense layers read z: stored back to back (HypernetParameters'
        // fuseAttention) they run as one GEMM at inference, each block reading its half.
        Tensor? a1Head = null, a1Out = null;
        if (!p.Training && Maybe("output_projection_out.1.weight") is not null
            && Adjacent("output_projection.0.dense1", "output_projection_out.0.dense1") is { } heads)
        {
            Tensor headsA1 = Live(p, [rows, 2 * _i], "heads a1");
            _ops.Linear(p.Z, heads.W, heads.B, headsA1, false, ActivationFunction.GeluTanh);
            (a1Head, a1Out) = (headsA1.Slice(1, 0, _i), headsA1.Slice(1, _i, _i));
        }
        Tensor o1 = Live(p, [rows, _h], "head block");
        p.OutputBlock = Block("output_projection.0", p.Z, o1, p, a1Head);
        p.HeadRaw = Output(p, [rows, headOut], "head");
        Linear(o1, "output_projection.1", p.HeadRaw);
        p.HeadBlockOut = o1;
        Tensor rawIn = p.HeadRaw.Slice(1, 0, _n);
        Tensor? rawOut = null;
        if (_c.SeparateOutEmbeddings)
        {
            if (Maybe("output_projection_out.1.weight") is not null)
            {
                Tensor o2 = Live(p, [rows, _h], "out head block");
                p.OutBlock = Block("output_projection_out.0", p.Z, o2, p, a1Out);
                p.OutRaw = Output(p, [rows, _n], "out head");
                Linear(o2, "output_projection_out.1", p.OutRaw);
                p.OutBlockOut = o2;
                rawOut = p.OutRaw;
            }
            else
            {
                rawOut = p.HeadRaw.Slice(1, _n, _n);
            }
        }
        p.RawIn = rawIn;
        p.RawOut = rawOut;
        p.EmbeddingsIn = Output(p, [rows, _n], "embeddings_in");
        Rescale(rawIn, "scaler", p.EmbeddingsIn);
        if (rawOut is not null)
        {
            p.EmbeddingsOut = Output(p, [rows, _n], "embeddings_out");
            Rescale(rawOut, "out_scaler", p.EmbeddingsOut);
        }
        if (Maybe("bias_projection.weight") is not null)
        {
            p.Bias = Output(p, [rows, 1], "bias");
            Linear(p.Z, "bias_projection", p.Bias);
        }
    }

    /// <summary>One post-LayerNorm RoBERTa layer. Queries, attention output and feed-forward
    /// run on every position, or on the pooled positions only in the last layer
    /// (<see cref="LayerState.Pooled"/>; rows in group order).</summary>
    private Tensor Layer(int li, Tensor h, BatchLayout lay, LayerState s, HypernetPass p)
    {
        string pre = $"model.encoder.layer.{li}.";
        long t = lay.Sequence;
        long tq = s.Pooled ? lay.Rows : t;
        BeginTemporaries(p);
        Tensor hq = h;
        if (s.Pooled)
        {
            hq = Temp(p, [tq, _h], "pooled");
            _ops.EmbeddingForward(h, lay.PoolSorted, hq);
        }
        s.QueryInput = hq;
        string q = pre + "attention.self.query", k = pre + "attention.self.key";
        string v = pre + "attention.self.value";
        // Parameters stored back to back (HypernetParameters' fuseAttention) run as one GEMM:
        // q, k and v of a full layer, k and v of the pooled one; the outputs are column views.
        (Tensor W, Tensor B)? kv = Adjacent(k, v), qkv = kv is { } pair ? Adjacent(q, pair) : null;
        Tensor? pick = s.Pooled ? lay.UniformPooled : lay.UniformQueries;
        if (!s.Pooled && pick is null && qkv is { } f3)
        {
            Tensor all = Temp(p, [t, 3 * _h], "qkv");
            _ops.Linear(h, f3.W, f3.B, all);
            (s.Q, s.K, s.V) = (all.Slice(1, 0, _h), all.Slice(1, _h, _h), all.Slice(1, 2 * _h, _h));
        }
        else
        {
            s.Q = Temp(p, [tq, _h], "q");
            if (pick is not null)
            {
                s.QRaw = Temp(p, [tq + 1, _h], "q raw", zero: true);
                Linear(hq, q, s.QRaw.Slice(0, 0, tq));
                _ops.EmbeddingForward(s.QRaw, pick, s.Q);
            }
            else
            {
                Linear(hq, q, s.Q);
            }
            if (kv is { } f2)
            {
                Tensor both = Temp(p, [t, 2 * _h], "kv");
                _ops.Linear(h, f2.W, f2.B, both);
                (s.K, s.V) = (both.Slice(1, 0, _h), both.Slice(1, _h, _h));
            }
            else
            {
                s.K = Temp(p, [t, _h], "k");
                s.V = Temp(p, [t, _h], "v");
                Linear(h, k, s.K);
                Linear(h, v, s.V);
            }
        }
        s.Context = Temp(p, [tq, _h], "context");
        s.Lse = Stat(p, [tq * _heads], "lse");
        foreach (AttentionGroup g in Groups(lay, s, s.Q, s.K, s.V, s.Context, s.Lse))
        {
            _ops.AttentionForward(g.Q, g.K, g.V, g.Options, g.Out, g.Lse);
        }
        s.R1 = Temp(p, [tq, _h], "r1");
        Linear(s.Context, pre + "attention.output.dense", s.R1);
        s.H1 = Temp(p, [tq, _h], "h1");
        s.Ln1 = Norm(s.R1, pre + "attention.output.LayerNorm", _c.EncoderLayerNormEps, s.H1, p,
            residual: hq);
        s.G = Temp(p, [tq, _i], "gelu");
        if (p.Training)
        {
            s.F = Temp(p, [tq, _i], "ffn");
            Linear(s.H1, pre + "intermediate.dense", s.F);
            _ops.Activation(ActivationFunction.GeluErf, s.F, s.G);
        }
        else
        {
            // Nothing needs the pre-activation: the GELU runs in the GEMM's epilogue.
            Linear(s.H1, pre + "intermediate.dense", s.G, ActivationFunction.GeluErf);
        }
        s.R2 = Temp(p, [tq, _h], "r2");
        Linear(s.G, pre + "output.dense", s.R2);
        Tensor h2 = Live(p, [tq, _h], "h2");
        s.Ln2 = Norm(s.R2, pre + "output.LayerNorm", _c.EncoderLayerNormEps, h2, p,
            residual: s.H1);
        return h2;
    }

    /// <summary>One attention call per group of rows with the same sequence length: views of
    /// the packed query, key, value, output and log-sum-exp rows. A pooled layer has one query
    /// per row (rows in group order).</summary>
    private IEnumerable<AttentionGroup> Groups(BatchLayout lay, LayerState s, Tensor q, Tensor k,
        Tensor v, Tensor output, Tensor lse)
    {
        int dh = _h / _heads;
        float scale = 1f / MathF.Sqrt(dh);
        long lseAt = 0;
        foreach (SequenceGroup g in lay.Groups)
        {
            int tq = s.Pooled ? 1 : g.Length;
            long q0 = s.Pooled ? g.Row0 : g.Token0, nq = (long)g.Rows * tq;
            long nk = (long)g.Rows * g.Length;
            yield return new AttentionGroup(
                HeadView(q, q0, g.Rows, tq),
                HeadView(k, g.Token0, g.Rows, g.Length),
                HeadView(v, g.Token0, g.Rows, g.Length),
                HeadView(output, q0, g.Rows, tq),
                lse.Slice(0, lseAt, nq * _heads).View(g.Rows, _heads, tq),
                new AttentionOptions(scale, Causal: false,
                    KeyLengths: lay.KeyLengths.Slice(0, g.Row0, g.Rows)));
            lseAt += nq * _heads;
        }
    }

    /// <summary>Rows <paramref name="row0"/> … of x [N, H] (any row stride) as
    /// [b, s, heads, head_dim].</summary>
    private Tensor HeadView(Tensor x, long row0, int b, int s)
    {
        long ld = x.Strides[0];
        int dh = _h / _heads;
        return x.AsStrided([b, s, _heads, dh], [s * ld, ld, dh, 1], row0 * ld);
    }

    /// <summary>The weights and biases of layers <paramref name="first"/> and
    /// <paramref name="second"/> as one, when both are stored back to back (the second's
    /// elements right after the first's in the same storage); else null.</summary>
    private (Tensor W, Tensor B)? Adjacent(string first, string second)
    {
        Tensor? w = Adjacent(P(first + ".weight"), P(second + ".weight"));
        Tensor? b = w is null ? null : Adjacent(P(first + ".bias"), P(second + ".bias"));
        return b is null ? null : (w!, b);
    }

    private (Tensor W, Tensor B)? Adjacent(string first, (Tensor W, Tensor B) second)
    {
        Tensor? w = Adjacent(P(first + ".weight"), second.W);
        Tensor? b = w is null ? null : Adjacent(P(first + ".bias"), second.B);
        return b is null ? null : (w!, b);
    }

    private static Tensor? Adjacent(Tensor a, Tensor b)
    {
        if (!ReferenceEquals(a.Storage, b.Storage) || a.DType != b.DType || !a.IsContiguous
            || !b.IsContiguous || b.Offset != a.Offset + a.Count || a.Rank != b.Rank
            || !a.Shape.AsSpan(1).SequenceEqual(b.Shape.AsSpan(1)))
        {
            return null;
        }
        long[] shape = [a.Shape[0] + b.Shape[0], .. a.Shape[1..]];
        return a.AsStrided(shape, Tensor.ContiguousStrides(shape));
    }

    private void Linear(Tensor x, string prefix, Tensor y,
        ActivationFunction? activation = null) =>
        _ops.Linear(x, P(prefix + ".weight"), Maybe(prefix + ".bias"), y, false, activation);

    /// <summary>y = LN(x + residual): for training the sum is formed in x (the backward reads
    /// it), for inference inside the norm.</summary>
    private NormState Norm(Tensor x, string prefix, float eps, Tensor y, HypernetPass p,
        Tensor? residual = null)
    {
        long rows = x.Shape[0];
        if (residual is not null && p.Training)
        {
            _ops.Add(x, residual, x);
            residual = null;
        }
        var s = new NormState
        {
            X = x,
            Prefix = prefix,
            Mean = Stat(p, [rows], "mean"),
            Rstd = Stat(p, [rows], "rstd"),
        };
        _ops.LayerNormForward(x, P(prefix + ".weight"), P(prefix + ".bias"), eps, y, s.Mean,
            s.Rstd, residual);
        return s;
    }

    /// <summary>ProjectorBlock: LN_1e-6(x + gelu_tanh(W2 · gelu_tanh(W1 x + b1) + b2)).
    /// <paramref name="a1"/>: gelu_tanh(W1 x + b1) already computed (inference).</summary>
    private BlockState Block(string prefix, Tensor x, Tensor y, HypernetPass p,
        Tensor? a1 = null)
    {
        long rows = x.Shape[0];
        BeginTemporaries(p);
        var s = new BlockState { Prefix = prefix, X = x };
        if (a1 is not null)
        {
            Debug.Assert(!p.Training, "a precomputed first layer is for inference only");
            s.A1 = a1;
            s.R = Temp(p, [rows, _h], "block r");
            Linear(a1, prefix + ".dense2", s.R, ActivationFunction.GeluTanh);
            s.Ln = Norm(s.R, prefix + ".ln", _c.ProjectorLayerNormEps, y, p, residual: x);
            return s;
        }
        s.A1 = Temp(p, [rows, _i], "block a1");
        s.R = Temp(p, [rows, _h], "block r");
        if (p.Training)
        {
            s.T1 = Temp(p, [rows, _i], "block t1");
            Linear(x, prefix + ".dense1", s.T1);
            _ops.Activation(ActivationFunction.GeluTanh, s.T1, s.A1);
            s.T2 = Temp(p, [rows, _h], "block t2");
            Linear(s.A1, prefix + ".dense2", s.T2);
            _ops.Activation(ActivationFunction.GeluTanh, s.T2, s.R);
        }
        else
        {
            Linear(x, prefix + ".dense1", s.A1, ActivationFunction.GeluTanh);
            Linear(s.A1, prefix + ".dense2", s.R, ActivationFunction.GeluTanh);
        }
        s.Ln = Norm(s.R, prefix + ".ln", _c.ProjectorLayerNormEps, y, p, residual: x);
        return s;
    }

    private void Rescale(Tensor x, string prefix, Tensor y)
    {
        if (Maybe(prefix + ".w") is { } w)
        {
            _ops.ScaleShift(x, w.View(-1), P(prefix + ".b").View(-1), y);
        }
        else
        {
            _ops.Copy(x, y);
        }
    }

    /// <summary>Accumulates into <paramref name="gradients"/> (same names as the parameters;
    /// a parameter without an entry there is treated as frozen and gets no gradient) the
    /// gradient of a loss whose gradients with respect to the pass's outputs are
    /// <paramref name="dEmbeddingsIn"/> [rows, n_embd], <paramref name="dEmbeddingsOut"/> and
    /// <paramref name="dBias"/> [rows, 1] (null: zero).</summary>
    public void Backward(HypernetPass pass, Tensor dEmbeddingsIn, Tensor? dEmbeddingsOut,
        Tensor? dBias, HypernetParameters gradients)
    {
        long start = Stopwatch.GetTimestamp();
        try
        {
            BackwardCore(pass, dEmbeddingsIn, dEmbeddingsOut, dBias, gradients);
        }
        finally
        {
            Elapsed += Stopwatch.GetElapsedTime(start);
        }
    }

    private void BackwardCore(HypernetPass pass, Tensor dEmbeddingsIn, Tensor? dEmbeddingsOut,
        Tensor? dBias, HypernetParameters gradients)
    {
        ArgumentNullException.ThrowIfNull(pass);
        ArgumentNullException.ThrowIfNull(dEmbeddingsIn);
        ArgumentNullException.ThrowIfNull(gradients);
        if (pass.Graph != this || pass.Layout is null || !pass.Training)
        {
            throw new ArgumentException("the pass was not made by this graph's Forward",
                nameof(pass));
        }
        BatchLayout lay = pass.Layout;
        long n = lay.Tokens, t = lay.Sequence;
        int rows = pass.Rows;
        using var scratch = new Scratch();
        Tensor? Gm(string name) => gradients.Find(name);

        // Heads → dz.
        Tensor dHead = scratch.Add(_ops.Zeros(_dt, pass.HeadRaw!.Shape, "d head"));
        RescaleBackward(dEmbeddingsIn, pass.RawIn!, "scaler", dHead.Slice(1, 0, _n), gradients);
        Tensor? dOutRaw = null;
        if (dEmbeddingsOut is not null && pass.RawOut is not null)
        {
            dOutRaw = pass.OutRaw is not null
                ? scratch.Add(_ops.Zeros(_dt, pass.OutRaw.Shape, "d out head"))
                : dHead.Slice(1, _n, _n);
            RescaleBackward(dEmbeddingsOut, pass.RawOut, "out_scaler", dOutRaw, gradients);
        }
        Tensor dz = scratch.Add(_ops.Zeros(_dt, [rows, _h], "dz"));
        Tensor dBlockOut = scratch.Add(_ops.Empty(_dt, [rows, _h]));
        LinearBack(dHead, pass.HeadBlockOut!, "output_projection.1", dBlockOut, gradients);
        Tensor tmp = scratch.Add(_ops.Empty(_dt, [rows, _h]));
        BlockBackward(pass.OutputBlock!, dBlockOut, tmp, gradients, scratch);
        _ops.Add(dz, tmp, dz);
        if (pass.OutBlock is not null && dOutRaw is not null)
        {
            LinearBack(dOutRaw, pass.OutBlockOut!, "output_projection_out.1", dBlockOut,
                gradients);
            BlockBackward(pass.OutBlock, dBlockOut, tmp, gradients, scratch);
            _ops.Add(dz, tmp, dz);
        }
        if (pass.Bias is not null && dBias is not null)
        {
            LinearBack(dBias, pass.Z!, "bias_projection", tmp, gradients);
            _ops.Add(dz, tmp, dz);
        }

        // Encoder. dOut: the gradient of the current layer's output (the last layer's is
        // [rows, H] in group order, the others' [T, H]); dh receives that of its input.
        Tensor dh = scratch.Add(_ops.Zeros(_dt, [t, _h], "dh"));
        Tensor dOut = dh;
        if (_c.NumLayers > 0)
        {
            dOut = scratch.Add(_ops.Zeros(_dt, [rows, _h], "d pooled"));
            _ops.EmbeddingBackward(dz, lay.Unsort, dOut);
        }
        else
        {
            _ops.EmbeddingBackward(dz, lay.Pool, dh);
        }
        Tensor drAll = scratch.Add(_ops.Empty(_dt, [t, _h]));
        Tensor dxAll = scratch.Add(_ops.Empty(_dt, [t, _h]));
        Tensor dwideAll = scratch.Add(_ops.Empty(_dt, [t, _i]));
        Tensor dqAll = scratch.Add(_ops.Empty(_dt, [t, _h]));
        Tensor dk = scratch.Add(_ops.Empty(_dt, [t, _h]));
        Tensor dv = scratch.Add(_ops.Empty(_dt, [t, _h]));
        Tensor dctxAll = scratch.Add(_ops.Empty(_dt, [t, _h]));
        Tensor dhqPooled = scratch.Add(_ops.Empty(_dt, [rows, _h]));
        Tensor? dqRawAll = lay.UniformQueries is null && lay.UniformPooled is null ? null
            : scratch.Add(_ops.Empty(_dt, [t + 1, _h]));
        for (int li = _c.NumLayers - 1; li >= 0; li--)
        {
            LayerState s = pass.Layers[li];
            string pre = $"model.encoder.layer.{li}.";
            long tq = s.Q!.Shape[0];
            Tensor dr = drAll.Slice(0, 0, tq), dx = dxAll.Slice(0, 0, tq);
            Tensor dwide = dwideAll.Slice(0, 0, tq), dq = dqAll.Slice(0, 0, tq);
            Tensor dctx = dctxAll.Slice(0, 0, tq);
            NormBackward(s.Ln2!, dOut, dr, gradients);           // dr = ∂/∂r2
            LinearBack(dr, s.G!, pre + "output.dense", dwide, gradients);
            _ops.ActivationBackward(ActivationFunction.GeluErf, dwide, s.F!, dwide);
            LinearBack(dwide, s.H1!, pre + "intermediate.dense", dx, gradients);
            _ops.Add(dx, dr, dx);                                // ∂/∂h1
            NormBackward(s.Ln1!, dx, dr, gradients);             // dr = ∂/∂r1
            LinearBack(dr, s.Context!, pre + "attention.output.dense", dctx, gradients);
            foreach ((AttentionGroup f, AttentionGroup b) in Groups(lay, s, s.Q!, s.K!, s.V!,
                s.Context!, s.Lse!).Zip(Groups(lay, s, dq, dk, dv, dctx, s.Lse!)))
            {
                _ops.AttentionBackward(b.Out, f.Q, f.K, f.V, f.Out, f.Lse, f.Options, b.Q, b.K,
                    b.V);
            }
            // ∂/∂(query input) = dr (residual) + the query projection's input gradient.
            Tensor dhq = s.Pooled ? dhqPooled : dh;
            _ops.Copy(dr, dhq);
            Tensor dqIn = dq;
            if (dqRawAll is not null && (s.Pooled ? lay.UniformPooled : lay.UniformQueries) is
                { } pick)
            {
                Tensor dqRaw = dqRawAll.Slice(0, 0, tq + 1);
                _ops.Fill(dqRaw, 0);
                _ops.EmbeddingBackward(dq, pick, dqRaw);
                dqIn = dqRaw.Slice(0, 0, tq);
            }
            LinearBack(dqIn, s.QueryInput!, pre + "attention.self.query", dx, gradients);
            _ops.Add(dhq, dx, dhq);
            if (s.Pooled)
            {
                _ops.Fill(dh, 0);
                _ops.EmbeddingBackward(dhq, lay.PoolSorted, dh);
            }
            // ∂/∂h += the key and value projections' input gradients.
            LinearBack(dk, s.Input!, pre + "attention.self.key", dxAll, gradients);
            _ops.Add(dh, dxAll, dh);
            LinearBack(dv, s.Input!, pre + "attention.self.value", dxAll, gradients);
            _ops.Add(dh, dxAll, dh);
            dOut = dh;
        }
        NormBackward(pass.EmbLn!, dh, drAll, gradients);         // ∂/∂e0
        Tensor dU = scratch.Add(_ops.Zeros(_dt, [n + 1, _h], "dU"));
        _ops.EmbeddingBackward(drAll, lay.SequenceSource, dU);
        if (Gm("model.embeddings.position_embeddings.weight") is { } dPos)
        {
            _ops.EmbeddingBackward(drAll, lay.Positions, dPos);
            if (_c.EmbedLangId)
            {
                _ops.AddScaled(dU.Slice(0, n, 1), -1f, dPos.Slice(0, lay.L, 1));
            }
        }
        if (Gm("model.embeddings.token_type_embeddings.weight") is { } dType)
        {
            _ops.EmbeddingBackward(drAll, lay.ZeroIds, dType);
            if (_c.EmbedLangId)
            {
                _ops.AddScaled(dU.Slice(0, n, 1), -1f, dType.Slice(0, 0, 1));
            }
        }
        if (_c.EmbedLangId && Gm("lang_embeddings.weight") is { } dLang)
        {
            _ops.AddScaled(dU.Slice(0, n, 1), 1f, dLang.Slice(0, pass.LangIndex, 1));
        }
        Tensor dp0 = scratch.Add(_ops.Empty(_dt, [n, _h]));
        BlockBackward(pass.InputBlock!, dU.Slice(0, 0, n), dp0, gradients, scratch);
        if (Gm("fallback_embeddings.weight") is { } dFallback)
        {
            Tensor dX = scratch.Add(_ops.Empty(_dt, [n, _d]));
            LinearBack(dp0, pass.X!, "input_projection.0", dX, gradients);
            Tensor dBoth = scratch.Add(_ops.Zeros(_dt, [2 * n, _d]));
            _ops.EmbeddingBackward(dX, lay.Pick, dBoth);
            _ops.EmbeddingBackward(dBoth.Slice(0, n, n), lay.FallbackIds, dFallback);
        }
        else
        {
            LinearBack(dp0, pass.X!, "input_projection.0", null, gradients);
        }
    }

    private void LinearBack(Tensor dy, Tensor x, string prefix, Tensor? dx,
        HypernetParameters g) =>
        _ops.LinearBackward(dy, x, P(prefix + ".weight"), false, dx, g.Find(prefix + ".weight"),
            g.Find(prefix + ".bias"));

    private void NormBackward(NormState s, Tensor dy, Tensor dx, HypernetParameters g) =>
        _ops.LayerNormBackward(dy, s.X!, P(s.Prefix + ".weight"), s.Mean!, s.Rstd!, dx,
            g.Find(s.Prefix + ".weight"), g.Find(s.Prefix + ".bias"));

    /// <summary>dx (overwritten) from dy of a projector block's output.</summary>
    private void BlockBackward(BlockState s, Tensor dy, Tensor dx, HypernetParameters g,
        Scratch scratch)
    {
        long rows = s.X!.Shape[0];
        Tensor dr = scratch.Add(_ops.Empty(_dt, [rows, _h]));
        NormBackward(s.Ln!, dy, dr, g);
        Tensor dt2 = scratch.Add(_ops.Empty(_dt, [rows, _h]));
        _ops.ActivationBackward(ActivationFunction.GeluTanh, dr, s.T2!, dt2);
        Tensor da1 = scratch.Add(_ops.Empty(_dt, [rows, _i]));
        LinearBack(dt2, s.A1!, s.Prefix + ".dense2", da1, g);
        _ops.ActivationBackward(ActivationFunction.GeluTanh, da1, s.T1!, da1);
        LinearBack(da1, s.X, s.Prefix + ".dense1", dx, g);
        _ops.Add(dx, dr, dx);
    }

    private void RescaleBackward(Tensor dy, Tensor x, string prefix, Tensor dx,
        HypernetParameters g)
    {
        if (Maybe(prefix + ".w") is { } w)
        {
            Tensor? dw = g.Find(prefix + ".w"), db = g.Find(prefix + ".b");
            _ops.ScaleShiftBackward(dy, x, w.View(-1), dx, dw?.View(-1), db?.View(-1));
        }
        else
        {
            _ops.Copy(dy, dx);
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _table.Dispose();
        _live.Dispose();
        _temp.Dispose();
        _stats.Dispose();
        _indices.Dispose();
        _outputs[0].Dispose();
        _outputs[1].Dispose();
    }

    /// <summary>The views of one attention call.</summary>
    private readonly record struct AttentionGroup(Tensor Q, Tensor K, Tensor V, Tensor Out,
        Tensor Lse, AttentionOptions Options);

    /// <summary>Temporaries of one backward pass, disposed together.</summary>
    private sealed class Scratch : IDisposable
    {
        private readonly List<Tensor> _all = [];

        public Tensor Add(Tensor t)
        {
            _all.Add(t);
            return t;
        }

        public void Dispose()
        {
            foreach (Tensor t in _all)
            {
                t.Dispose();
            }
        }
    }

    internal sealed class NormState
    {
        public string Prefix { get; init; } = "";
        public Tensor? X { get; init; }
        public Tensor? Mean { get; init; }
        public Tensor? Rstd { get; init; }
    }

    internal sealed class BlockState
    {
        public string Prefix { get; init; } = "";
        public Tensor? X { get; init; }
        public Tensor? T1 { get; set; }
        public Tensor? A1 { get; set; }
        public Tensor? T2 { get; set; }
        public Tensor? R { get; set; }
        public NormState? Ln { get; set; }
    }

    internal sealed class LayerState
    {
        public Tensor? Input { get; init; }
        public bool Pooled { get; init; }
        public Tensor? QueryInput { get; set; }
        public Tensor? QRaw { get; set; }
        public Tensor? Q { get; set; }
        public Tensor? K { get; set; }
        public Tensor? V { get; set; }
        public Tensor? Context { get; set; }
        public Tensor? Lse { get; set; }
        public Tensor? R1 { get; set; }
        public NormState? Ln1 { get; set; }
        public Tensor? H1 { get; set; }
        public Tensor? F { get; set; }
        public Tensor? G { get; set; }
        public Tensor? R2 { get; set; }
        public NormState? Ln2 { get; set; }
    }
}

/// <summary>A batch queued by <see cref="HypernetGraph.Submit"/>: its outputs on their way to
/// the host. Complete or dispose it before the graph's next-but-one submission.</summary>
public sealed class HypernetSubmission : IDisposable
{
    private readonly HypernetGraph _graph;
    private readonly int _parity;
    private readonly PendingDownload?[] _downloads = new PendingDownload?[3];
    private bool _done;

    internal HypernetSubmission(HypernetGraph graph, int parity, HypernetPass pass)
    {
        _graph = graph;
        _parity = parity;
        Rows = pass.Rows;
        IOpBackend ops = graph.Parameters.Backend;
        try
        {
            _downloads[0] = ops.BeginDownload(pass.EmbeddingsIn);
            _downloads[1] = pass.EmbeddingsOut is { } o ? ops.BeginDownload(o) : null;
            _downloads[2] = pass.Bias is { } b ? ops.BeginDownload(b) : null;
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>Rows of the batch.</summary>
    public int Rows { get; }

    /// <summary>Waits for the outputs and returns them as host arrays (then disposes).</summary>
    public HypernetOutput Complete()
    {
        ObjectDisposedException.ThrowIf(_done, this);
        float[] eIn = new float[_downloads[0]!.Count];
        float[]? eOut = _downloads[1] is { } o ? new float[o.Count] : null;
        float[]? bias = _downloads[2] is { } b ? new float[b.Count] : null;
        Complete(eIn, eOut, bias);
        return new HypernetOutput(eIn, eOut, bias);
    }

    /// <summary>Waits for the outputs and writes them into <paramref name="embeddingsIn"/>
    /// [rows·n_embd], <paramref name="embeddingsOut"/> and <paramref name="bias"/> [rows]
    /// (empty when the hypernetwork has no such output), then disposes.</summary>
    public void Complete(Span<float> embeddingsIn, Span<float> embeddingsOut, Span<float> bias)
    {
        ObjectDisposedException.ThrowIf(_done, this);
        try
        {
            _downloads[0]!.Wait(embeddingsIn);
            _downloads[1]?.Wait(embeddingsOut);
            _downloads[2]?.Wait(bias);
        }
        finally
        {
            Dispose();
        }
    }

    /// <summary>Drops the outputs (waiting for copies still running) and frees the slot.
    /// </summary>
    public void Dispose()
    {
        if (_done)
        {
            return;
        }
        _done = true;
        foreach (PendingDownload? d in _downloads)
        {
            d?.Dispose();
        }
        _graph.Release(_parity);
    }
}

/// <summary>One forward pass of a <see cref="HypernetGraph"/>: its outputs and what the
/// backward needs. Dispose it after the backward.</summary>
public sealed class HypernetPass : IDisposable
{
    private readonly List<Tensor> _owned = [];

    internal HypernetPass(HypernetGraph graph, int rows, int langIndex, bool training)
    {
        Graph = graph;
        Rows = rows;
        LangIndex = langIndex;
        Training = training;
    }

    /// <summary>True when the pass keeps what <see cref="HypernetGraph.Backward"/> needs.
    /// </summary>
    internal bool Training { get; }

    internal HypernetGraph Graph { get; }

    /// <summary>Number of surface-form rows.</summary>
    public int Rows { get; }

    internal int LangIndex { get; }

    /// <summary>Predicted input embeddings [rows, n_embd].</summary>
    public Tensor EmbeddingsIn { get; internal set; } = null!;

    /// <summary>Predicted output embeddings [rows, n_embd] (untied models), else null.</summary>
    public Tensor? EmbeddingsOut { get; internal set; }

    /// <summary>Predicted bias [rows, 1] when the hypernetwork predicts one, else null.</summary>
    public Tensor? Bias { get; internal set; }

    internal BatchLayout? Layout { get; set; }
    internal Tensor? X { get; set; }
    internal Tensor? P0 { get; set; }
    internal Tensor? U { get; set; }
    internal HypernetGraph.BlockState? InputBlock { get; set; }
    internal Tensor? E0 { get; set; }
    internal HypernetGraph.NormState? EmbLn { get; set; }
    internal Tensor? H0 { get; set; }
    internal List<HypernetGraph.LayerState> Layers { get; } = [];
    internal Tensor? HLast { get; set; }
    internal Tensor? Z { get; set; }
    internal HypernetGraph.BlockState? OutputBlock { get; set; }
    internal Tensor? HeadBlockOut { get; set; }
    internal Tensor? HeadRaw { get; set; }
    internal HypernetGraph.BlockState? OutBlock { get; set; }
    internal Tensor? OutBlockOut { get; set; }
    internal Tensor? OutRaw { get; set; }
    internal Tensor? RawIn { get; set; }
    internal Tensor? RawOut { get; set; }

    /// <summary>The outputs copied to host float arrays.</summary>
    public HypernetOutput Download()
    {
        IOpBackend ops = Graph.Parameters.Backend;
        return new HypernetOutput(Floats(ops, EmbeddingsIn), EmbeddingsOut is null ? null
            : Floats(ops, EmbeddingsOut), Bias is null ? null : Floats(ops, Bias));
    }

    private static float[] Floats(IOpBackend ops, Tensor t)
    {
        using Tensor host = Tensor.Host(DType.F32, t.Shape, t.Name);
        ops.Download(t, host);
        return host.AsSpan<float>().ToArray();
    }

    internal Tensor Keep(Tensor t)
    {
        _owned.Add(t);
        return t;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (Tensor t in _owned)
        {
            t.Dispose();
        }
        _owned.Clear();
        Layout?.Dispose();
    }
}

/// <summary>Rows <see cref="Row0"/> … + <see cref="Rows"/> (in group order) whose sequences
/// have <see cref="Length"/> positions, stored from sequence token <see cref="Token0"/> on.
/// </summary>
internal readonly record struct SequenceGroup(int Row0, int Rows, int Length, long Token0);

/// <summary>The index tensors of one batch (see <see cref="HypernetGraph"/>'s remarks).
/// </summary>
internal sealed class BatchLayout : IDisposable
{
    private readonly List<Tensor> _owned = [];

    public int Rows { get; private init; }
    public int L { get; private init; }

    /// <summary>Computed surface positions (rows of x).</summary>
    public long Tokens { get; private init; }

    /// <summary>Sequence tokens: the computed positions plus the language positions.</summary>
    public long Sequence { get; private init; }
    public IReadOnlyList<SequenceGroup> Groups { get; private init; } = [];
    public Tensor SourceIds { get; private set; } = null!;
    public Tensor FallbackIds { get; private set; } = null!;
    public Tensor Pick { get; private set; } = null!;
    public Tensor SequenceSource { get; private set; } = null!;
    public Tensor Positions { get; private set; } = null!;
    public Tensor ZeroIds { get; private set; } = null!;

    /// <summary>Attended keys per row, in group order.</summary>
    public Tensor KeyLengths { get; private set; } = null!;

    /// <summary>Sequence token of each row's position 0, in row order.</summary>
    public Tensor Pool { get; private set; } = null!;

    /// <summary>The same in group order.</summary>
    public Tensor PoolSorted { get; private set; } = null!;

    /// <summary>Group-order index of each row (row order).</summary>
    public Tensor Unsort { get; private set; } = null!;

    /// <summary>Query rows of a full layer: the token itself, or the zero row T for the
    /// tokens of rows without any attended key; null when there are none.</summary>
    public Tensor? UniformQueries { get; private set; }

    /// <summary>The same for the pooled layer's [rows] queries (zero row: rows).</summary>
    public Tensor? UniformPooled { get; private set; }

    public static BatchLayout Build(ReadOnlySpan<int> sf, int rows, int l, HypernetConfig c,
        IOpBackend ops, Workspace? indices = null)
    {
        int v0 = c.OriginalVocabSize, pad = c.PadTokenId;
        int limit = v0 + c.NumExtraTokens;
        bool lang = c.EmbedLangId;
        for (int k = 0; k < sf.Length; k++)
        {
            int id = sf[k];
            if (id < 0 || id >= limit)
            {
                throw new ZettException($"surface form row {k / l}, position {k % l}: id {id} is "
                    + $"outside the hypernetwork's vocabulary 0..{limit - 1} (original_vocab_size "
                    + $"{v0} + {c.NumExtraTokens} extra tokens)");
            }
        }
        // Per row: attended keys, sequence length, and whether it attends uniformly.
        var keys = new int[rows];
        var length = new int[rows];
        var uniform = new bool[rows];
        int maxLength = 0;
        for (int r = 0; r < rows; r++)
        {
            ReadOnlySpan<int> row = sf.Slice(r * l, l);
            int valid = l - row.Count(pad);
            if (valid == 0 && !lang)
            {
                uniform[r] = true;
                keys[r] = length[r] = l;
            }
            else
            {
                keys[r] = valid + (lang ? 1 : 0);
                length[r] = keys[r] + (row[0] == pad ? 1 : 0);
            }
            maxLength = Math.Max(maxLength, length[r]);
        }
        // Group order: by sequence length, stable (a counting sort).
        var order = new int[rows];
        var unsort = new int[rows];
        var groups = new List<SequenceGroup>();
        var bucket = new int[maxLength + 2];
        foreach (int len in length)
        {
            bucket[len + 1]++;
        }
        for (int len = 1; len < bucket.Length; len++)
        {
            bucket[len] += bucket[len - 1];
        }
        long token0 = 0;
        for (int len = 0; len <= maxLength; len++)
        {
            int count = bucket[len + 1] - bucket[len];
            if (count > 0)
            {
                groups.Add(new SequenceGroup(bucket[len], count, len, token0));
                token0 += (long)count * len;
            }
        }
        for (int r = 0; r < rows; r++)
        {
            int at = bucket[length[r]]++;
            order[at] = r;
            unsort[r] = at;
        }
        // Uniform rows occur only without a language position, so every row has one or none.
        long t = token0, n = t - (lang ? rows : 0);
        var srcIds = new int[n];
        var fbIds = new int[n];
        var pick = new int[n];
        var seqSrc = new int[t];
        var pos = new int[t];
        var keyLen = new int[rows];
        var pool = new int[rows];
        var poolSorted = new int[rows];
        int[]? uniformQ = null, uniformP = null;
        int s = 0, q = 0;
        for (int i = 0; i < rows; i++)
        {
            int r = order[i];
            ReadOnlySpan<int> row = sf.Slice(r * l, l);
            keyLen[i] = keys[r];
            if (uniform[r])
            {
                uniformQ ??= Enumerable.Range(0, checked((int)t)).ToArray();
                uniformP ??= Enumerable.Range(0, rows).ToArray();
                uniformP[i] = rows;
                for (int p = 0; p < l; p++)
                {
                    uniformQ[q] = (int)t;
                    Place(row[p], p);
                }
            }
            else
            {
                for (int p = 0; p < l; p++)
                {
                    if (row[p] != pad)
                    {
                        Place(row[p], p);
                    }
                }
                if (lang)
                {
                    seqSrc[q] = (int)n;
                    pos[q] = l;
                    q++;
                }
                if (row[0] == pad)
                {
                    Place(pad, 0);
                }
            }
            pool[r] = poolSorted[i];

            void Place(int id, int p)
            {
                bool extra = id >= v0;
                srcIds[s] = extra ? 0 : id;
                fbIds[s] = extra ? id - v0 : 0;
                pick[s] = extra ? (int)(n + s) : s;
                seqSrc[q] = s;
                pos[q] = p;
                if (p == 0)
                {
                    poolSorted[i] = q;
                }
                s++;
                q++;
            }
        }
        var layout = new BatchLayout
        {
            Rows = rows,
            L = l,
            Tokens = n,
            Sequence = t,
            Groups = groups,
        };
        // One upload of every index array, packed (each starting on a 64-byte boundary): into
        // the graph's index workspace for inference (queue-ordered, no allocation, no wait), a
        // tensor of the layout's own for training.
        int[][] parts = [srcIds, fbIds, pick, seqSrc, pos, new int[t], keyLen, pool, poolSorted,
            unsort, uniformQ ?? [], uniformP ?? []];
        var offsets = new long[parts.Length];
        long total = 0;
        for (int i = 0; i < parts.Length; i++)
        {
            offsets[i] = total;
            total += (parts[i].Length + 15) / 16 * 16;
        }
        var packed = new int[total];
        for (int i = 0; i < parts.Length; i++)
        {
            parts[i].CopyTo(packed, offsets[i]);
        }
        try
        {
            Tensor all;
            if (indices is not null)
            {
                all = indices.Take([total], zero: false);
            }
            else
            {
                all = ops.Empty(DType.I32, [total], "batch layout");
                layout._owned.Add(all);
            }
            using (Tensor host = Tensor.FromInts(packed))
            {
                ops.CopyFromHost(host, all);
            }
            Tensor Part(int i) => all.Slice(0, offsets[i], parts[i].Length);
            layout.SourceIds = Part(0);
            layout.FallbackIds = Part(1);
            layout.Pick = Part(2);
            layout.SequenceSource = Part(3);
            layout.Positions = Part(4);
            layout.ZeroIds = Part(5);
            layout.KeyLengths = Part(6);
            layout.Pool = Part(7);
            layout.PoolSorted = Part(8);
            layout.Unsort = Part(9);
            layout.UniformQueries = uniformQ is null ? null : Part(10);
            layout.UniformPooled = uniformP is null ? null : Part(11);
        }
        catch
        {
            layout.Dispose();
            throw;
        }
        return layout;
    }

    public void Dispose()
    {
        foreach (Tensor t in _owned)
        {
            t.Dispose();
        }
        _owned.Clear();
    }
}

/// <summary>
/// Activation memory that inference reuses from batch to batch: <see cref="Take"/> hands out
/// views of one buffer, <see cref="Reset"/> rewinds it. A pass that needs more than the buffer
/// holds gets separate tensors for the excess, and the next <see cref="Reset"/> grows the
/// buffer to what was needed, so from the second batch of a size on nothing is allocated (on
/// the CPU fresh memory costs a page fault and a clear per 4 KiB: measured ~25 % of a batch).
/// </summary>
internal sealed class Workspace(IOpBackend ops, DType dtype) : IDisposable
{
    /// <summary>Elements between views (64 bytes for 4-byte elements): aligned rows.</summary>
    private const long Align = 16;

    private readonly List<Tensor> _overflow = [];
    private Tensor? _buffer;
    private long _used, _needed;

    /// <summary>A contiguous tensor of <paramref name="shape"/>, zero-filled when asked.</summary>
    public Tensor Take(long[] shape, bool zero)
    {
        long count = 1;
        foreach (long d in shape)
        {
            count *= d;
        }
        long at = (_used + Align - 1) / Align * Align;
        _used = at + count;
        _needed = Math.Max(_needed, _used);
        Tensor t;
        if (_buffer is not null && _used <= _buffer.Count)
        {
            t = _buffer.Slice(0, at, count).View(shape);
        }
        else
        {
            t = ops.Empty(dtype, shape, "workspace");
            _overflow.Add(t);
        }
        if (zero)
        {
            ops.Fill(t, 0);
        }
        return t;
    }

    /// <summary>Every view handed out so far is dead: rewind (and grow when the last round
    /// overflowed).</summary>
    public void Reset()
    {
        bool grow = _needed > (_buffer?.Count ?? 0);
        if (_overflow.Count > 0 || (grow && _buffer is not null))
        {
            // Work queued on a device may still read what is freed here (batches are queued
            // ahead of their results: HypernetGraph.Submit).
            ops.Synchronize();
        }
        foreach (Tensor t in _overflow)
        {
            t.Dispose();
        }
        _overflow.Clear();
        if (grow)
        {
            _buffer?.Dispose();
            _buffer = null;
            _buffer = ops.Empty(dtype, [_needed], "workspace");
        }
        _used = 0;
    }

    public void Dispose()
    {
        foreach (Tensor t in _overflow)
        {
            t.Dispose();
        }
        _overflow.Clear();
        _buffer?.Dispose();
        _buffer = null;
    }
}
