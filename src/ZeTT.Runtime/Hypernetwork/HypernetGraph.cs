using System.Diagnostics;
using ZeTT.Ops;

namespace ZeTT.Runtime.Hypernetwork;

/// <summary>
/// The hypernetwork (ZETT.md §3, TRAINING.md §6.1) written once over the op layer, forward and
/// backward, on any <see cref="IOpBackend"/>: the graph that training differentiates.
/// </summary>
/// <remarks>
/// <para>Layout: each surface-form row becomes one encoder sequence of S = L (+1 with a language
/// position) positions. Attention only needs which keys a query sees, and everything else in
/// the encoder acts position by position, so the positions of a row may be stored in any order
/// as long as each carries its own position embedding: a row stores its attended positions
/// first (in order), then its language position, then its masked (padding) positions, and the
/// op's per-sequence key lengths express the mask exactly. A row whose every key is masked
/// (a special token without a language position) attends uniformly in the reference (every
/// score gets the same finfo.min); here its queries are zeroed, which gives the same uniform
/// weights.</para>
/// <para>The in_scaler is frozen in the reference (TRAINING.md §6.3), so it is applied to the
/// source embeddings once when the graph is built; every other parameter is read from
/// <see cref="Parameters"/> at each pass, so optimizer updates are seen.</para>
/// </remarks>
public sealed class HypernetGraph : IDisposable
{
    private readonly IOpBackend _ops;
    private readonly HypernetConfig _c;
    private readonly DType _dt;
    private readonly Tensor _table; // in_scaler(E) [V, D_in], activation dtype
    private readonly int _l, _h, _i, _d, _n, _heads;

    /// <summary>Builds the graph over <paramref name="parameters"/> (which it reads, never owns)
    /// and the source embeddings <paramref name="sourceEmbeddings"/> [V, D_in] (a host or
    /// device tensor of any float dtype; for untied models [E_in, E_out] per row).</summary>
    public HypernetGraph(HypernetConfig config, HypernetParameters parameters,
        Tensor sourceEmbeddings)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(sourceEmbeddings);
        _c = config;
        Parameters = parameters;
        _ops = parameters.Backend;
        _dt = parameters.DType;
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
                + $", {_d}]");
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
    }

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
        int surfaceLength = 0)
    {
        long start = Stopwatch.GetTimestamp();
        try
        {
            return ForwardCore(surfaceForms, rows, langIndex, surfaceLength);
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
        int surfaceLength)
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
        var pass = new HypernetPass(this, rows, langIndex);
        try
        {
            pass.Layout = BatchLayout.Build(surfaceForms, rows, l, _c, _ops);
            RunForward(pass);
        }
        catch
        {
            pass.Dispose();
            throw;
        }
        return pass;
    }

    private void RunForward(HypernetPass p)
    {
        BatchLayout lay = p.Layout!;
        long n = lay.Tokens, t = lay.Sequence;
        int rows = p.Rows;

        // x_j: in_scaler(E[s_j]) for s_j < V0, fallback[s_j − V0] otherwise; both gathered into
        // one [2N, D_in] buffer, then each position picks its row.
        Tensor both = p.Keep(_ops.Empty(_dt, [2 * n, _d], "gathered"));
        _ops.EmbeddingForward(_table, lay.SourceIds, both.Slice(0, 0, n));
        _ops.EmbeddingForward(P("fallback_embeddings.weight"), lay.FallbackIds,
            both.Slice(0, n, n));
        p.X = p.Keep(_ops.Empty(_dt, [n, _d], "x"));
        _ops.EmbeddingForward(both, lay.Pick, p.X);

        p.P0 = p.Keep(_ops.Empty(_dt, [n, _h], "projected"));
        Linear(p.X, "input_projection.0", p.P0);
        // U: the projector's output per surface position, then the language row.
        p.U = p.Keep(_ops.Zeros(_dt, [n + 1, _h], "u"));
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
        p.E0 = p.Keep(_ops.Empty(_dt, [t, _h], "embeddings"));
        using (Tensor tmp = _ops.Empty(_dt, [t, _h]))
        {
            _ops.EmbeddingForward(p.U, lay.SequenceSource, p.E0);
            _ops.EmbeddingForward(P("model.embeddings.position_embeddings.weight"), lay.Positions,
                tmp);
            _ops.Add(p.E0, tmp, p.E0);
            _ops.EmbeddingForward(P("model.embeddings.token_type_embeddings.weight"),
                lay.ZeroIds, tmp);
            _ops.Add(p.E0, tmp, p.E0);
        }
        Tensor h = p.Keep(_ops.Empty(_dt, [t, _h], "h0"));
        p.EmbLn = Norm(p.E0, "model.embeddings.LayerNorm", _c.EncoderLayerNormEps, h, p);
        p.H0 = h;
        for (int li = 0; li < _c.NumLayers; li++)
        {
            var layer = new LayerState { Input = h };
            p.Layers.Add(layer);
            h = Layer(li, h, lay, layer, p);
        }
        p.Z = p.Keep(_ops.Empty(_dt, [rows, _h], "z"));
        _ops.EmbeddingForward(h, lay.Pool, p.Z);
        p.HLast = h;

        int headOut = (int)P("output_projection.1.weight").Shape[0];
        Tensor o1 = p.Keep(_ops.Empty(_dt, [rows, _h], "head block"));
        p.OutputBlock = Block("output_projection.0", p.Z, o1, p);
        p.HeadRaw = p.Keep(_ops.Empty(_dt, [rows, headOut], "head"));
        Linear(o1, "output_projection.1", p.HeadRaw);
        p.HeadBlockOut = o1;
        Tensor rawIn = p.HeadRaw.Slice(1, 0, _n);
        Tensor? rawOut = null;
        if (_c.SeparateOutEmbeddings)
        {
            if (Maybe("output_projection_out.1.weight") is not null)
            {
                Tensor o2 = p.Keep(_ops.Empty(_dt, [rows, _h], "out head block"));
                p.OutBlock = Block("output_projection_out.0", p.Z, o2, p);
                p.OutRaw = p.Keep(_ops.Empty(_dt, [rows, _n], "out head"));
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
        p.EmbeddingsIn = p.Keep(_ops.Empty(_dt, [rows, _n], "embeddings_in"));
        Rescale(rawIn, "scaler", p.EmbeddingsIn);
        if (rawOut is not null)
        {
            p.EmbeddingsOut = p.Keep(_ops.Empty(_dt, [rows, _n], "embeddings_out"));
            Rescale(rawOut, "out_scaler", p.EmbeddingsOut);
        }
        if (Maybe("bias_projection.weight") is not null)
        {
            p.Bias = p.Keep(_ops.Empty(_dt, [rows, 1], "bias"));
            Linear(p.Z, "bias_projection", p.Bias);
        }
    }

    private Tensor Layer(int li, Tensor h, BatchLayout lay, LayerState s, HypernetPass p)
    {
        string pre = $"model.encoder.layer.{li}.";
        long t = lay.Sequence;
        int dh = _h / _heads;
        s.Q = p.Keep(_ops.Empty(_dt, [t, _h], "q"));
        if (lay.UniformQueries is { } pick)
        {
            s.QRaw = p.Keep(_ops.Zeros(_dt, [t + 1, _h], "q raw"));
            Linear(h, pre + "attention.self.query", s.QRaw.Slice(0, 0, t));
            _ops.EmbeddingForward(s.QRaw, pick, s.Q);
        }
        else
        {
            Linear(h, pre + "attention.self.query", s.Q);
        }
        s.K = p.Keep(_ops.Empty(_dt, [t, _h], "k"));
        s.V = p.Keep(_ops.Empty(_dt, [t, _h], "v"));
        Linear(h, pre + "attention.self.key", s.K);
        Linear(h, pre + "attention.self.value", s.V);
        s.Context = p.Keep(_ops.Empty(_dt, [t, _h], "context"));
        s.Lse = p.Keep(_ops.Empty(_dt, [lay.Rows, _heads, lay.S], "lse"));
        _ops.AttentionForward(Heads(s.Q, lay), Heads(s.K, lay), Heads(s.V, lay), Options(lay, dh),
            Heads(s.Context, lay), s.Lse);
        s.R1 = p.Keep(_ops.Empty(_dt, [t, _h], "r1"));
        Linear(s.Context, pre + "attention.output.dense", s.R1);
        _ops.Add(s.R1, h, s.R1);
        s.H1 = p.Keep(_ops.Empty(_dt, [t, _h], "h1"));
        s.Ln1 = Norm(s.R1, pre + "attention.output.LayerNorm", _c.EncoderLayerNormEps, s.H1, p);
        s.F = p.Keep(_ops.Empty(_dt, [t, _i], "ffn"));
        Linear(s.H1, pre + "intermediate.dense", s.F);
        s.G = p.Keep(_ops.Empty(_dt, [t, _i], "gelu"));
        _ops.Activation(ActivationFunction.GeluErf, s.F, s.G);
        s.R2 = p.Keep(_ops.Empty(_dt, [t, _h], "r2"));
        Linear(s.G, pre + "output.dense", s.R2);
        _ops.Add(s.R2, s.H1, s.R2);
        Tensor h2 = p.Keep(_ops.Empty(_dt, [t, _h], "h2"));
        s.Ln2 = Norm(s.R2, pre + "output.LayerNorm", _c.EncoderLayerNormEps, h2, p);
        return h2;
    }

    private Tensor Heads(Tensor x, BatchLayout lay) =>
        x.View(lay.Rows, lay.S, _heads, _h / _heads);

    private AttentionOptions Options(BatchLayout lay, int dh) =>
        new(1f / MathF.Sqrt(dh), Causal: false, KeyLengths: lay.KeyLengths);

    private void Linear(Tensor x, string prefix, Tensor y) =>
        _ops.Linear(x, P(prefix + ".weight"), Maybe(prefix + ".bias"), y);

    private NormState Norm(Tensor x, string prefix, float eps, Tensor y, HypernetPass p)
    {
        long rows = x.Shape[0];
        var s = new NormState
        {
            X = x,
            Prefix = prefix,
            Mean = p.Keep(_ops.Empty(_dt, [rows], "mean")),
            Rstd = p.Keep(_ops.Empty(_dt, [rows], "rstd")),
        };
        _ops.LayerNormForward(x, P(prefix + ".weight"), P(prefix + ".bias"), eps, y, s.Mean,
            s.Rstd);
        return s;
    }

    /// <summary>ProjectorBlock: LN_1e-6(x + gelu_tanh(W2 · gelu_tanh(W1 x + b1) + b2)).</summary>
    private BlockState Block(string prefix, Tensor x, Tensor y, HypernetPass p)
    {
        long rows = x.Shape[0];
        var s = new BlockState { Prefix = prefix, X = x };
        s.T1 = p.Keep(_ops.Empty(_dt, [rows, _i], "block t1"));
        Linear(x, prefix + ".dense1", s.T1);
        s.A1 = p.Keep(_ops.Empty(_dt, [rows, _i], "block a1"));
        _ops.Activation(ActivationFunction.GeluTanh, s.T1, s.A1);
        s.T2 = p.Keep(_ops.Empty(_dt, [rows, _h], "block t2"));
        Linear(s.A1, prefix + ".dense2", s.T2);
        s.R = p.Keep(_ops.Empty(_dt, [rows, _h], "block r"));
        _ops.Activation(ActivationFunction.GeluTanh, s.T2, s.R);
        _ops.Add(s.R, x, s.R);
        s.Ln = Norm(s.R, prefix + ".ln", _c.ProjectorLayerNormEps, y, p);
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
        if (pass.Graph != this || pass.Layout is null)
        {
            throw new ArgumentException("the pass was not made by this graph", nameof(pass));
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

        // Encoder.
        Tensor dh = scratch.Add(_ops.Zeros(_dt, [t, _h], "dh"));
        _ops.EmbeddingBackward(dz, lay.Pool, dh);
        Tensor dr = scratch.Add(_ops.Empty(_dt, [t, _h]));
        Tensor dx = scratch.Add(_ops.Empty(_dt, [t, _h]));
        Tensor dwide = scratch.Add(_ops.Empty(_dt, [t, _i]));
        Tensor dq = scratch.Add(_ops.Empty(_dt, [t, _h]));
        Tensor dk = scratch.Add(_ops.Empty(_dt, [t, _h]));
        Tensor dv = scratch.Add(_ops.Empty(_dt, [t, _h]));
        Tensor dctx = scratch.Add(_ops.Empty(_dt, [t, _h]));
        Tensor? dqRaw = lay.UniformQueries is null ? null
            : scratch.Add(_ops.Empty(_dt, [t + 1, _h]));
        int dhd = _h / _heads;
        for (int li = _c.NumLayers - 1; li >= 0; li--)
        {
            LayerState s = pass.Layers[li];
            string pre = $"model.encoder.layer.{li}.";
            NormBackward(s.Ln2!, dh, dr, gradients);             // dr = ∂/∂r2
            LinearBack(dr, s.G!, pre + "output.dense", dwide, gradients);
            _ops.ActivationBackward(ActivationFunction.GeluErf, dwide, s.F!, dwide);
            LinearBack(dwide, s.H1!, pre + "intermediate.dense", dx, gradients);
            _ops.Add(dx, dr, dx);                                // ∂/∂h1
            NormBackward(s.Ln1!, dx, dr, gradients);             // dr = ∂/∂r1
            LinearBack(dr, s.Context!, pre + "attention.output.dense", dctx, gradients);
            _ops.AttentionBackward(Heads(dctx, lay), Heads(s.Q!, lay), Heads(s.K!, lay),
                Heads(s.V!, lay), Heads(s.Context!, lay), s.Lse!, Options(lay, dhd),
                Heads(dq, lay), Heads(dk, lay), Heads(dv, lay));
            // ∂/∂h = dr (residual) + the three projections' input gradients.
            _ops.Copy(dr, dh);
            Tensor dqIn = dq;
            if (dqRaw is not null)
            {
                _ops.Fill(dqRaw, 0);
                _ops.EmbeddingBackward(dq, lay.UniformQueries!, dqRaw);
                dqIn = dqRaw.Slice(0, 0, t);
            }
            LinearBack(dqIn, s.Input!, pre + "attention.self.query", dx, gradients);
            _ops.Add(dh, dx, dh);
            LinearBack(dk, s.Input!, pre + "attention.self.key", dx, gradients);
            _ops.Add(dh, dx, dh);
            LinearBack(dv, s.Input!, pre + "attention.self.value", dx, gradients);
            _ops.Add(dh, dx, dh);
        }
        NormBackward(pass.EmbLn!, dh, dr, gradients);            // dr = ∂/∂e0
        Tensor dU = scratch.Add(_ops.Zeros(_dt, [n + 1, _h], "dU"));
        _ops.EmbeddingBackward(dr, lay.SequenceSource, dU);
        if (Gm("model.embeddings.position_embeddings.weight") is { } dPos)
        {
            _ops.EmbeddingBackward(dr, lay.Positions, dPos);
            if (_c.EmbedLangId)
            {
                _ops.AddScaled(dU.Slice(0, n, 1), -1f, dPos.Slice(0, lay.L, 1));
            }
        }
        if (Gm("model.embeddings.token_type_embeddings.weight") is { } dType)
        {
            _ops.EmbeddingBackward(dr, lay.ZeroIds, dType);
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
    public void Dispose() => _table.Dispose();

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

/// <summary>One forward pass of a <see cref="HypernetGraph"/>: its outputs and what the
/// backward needs. Dispose it after the backward.</summary>
public sealed class HypernetPass : IDisposable
{
    private readonly List<Tensor> _owned = [];

    internal HypernetPass(HypernetGraph graph, int rows, int langIndex)
    {
        Graph = graph;
        Rows = rows;
        LangIndex = langIndex;
    }

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

/// <summary>The index tensors of one batch (see <see cref="HypernetGraph"/>'s remarks).
/// </summary>
internal sealed class BatchLayout : IDisposable
{
    private readonly List<Tensor> _owned = [];

    public int Rows { get; private init; }
    public int L { get; private init; }
    public int S { get; private init; }
    public long Tokens { get; private init; }
    public long Sequence { get; private init; }
    public Tensor SourceIds { get; private set; } = null!;
    public Tensor FallbackIds { get; private set; } = null!;
    public Tensor Pick { get; private set; } = null!;
    public Tensor SequenceSource { get; private set; } = null!;
    public Tensor Positions { get; private set; } = null!;
    public Tensor ZeroIds { get; private set; } = null!;
    public Tensor KeyLengths { get; private set; } = null!;
    public Tensor Pool { get; private set; } = null!;
    public Tensor? UniformQueries { get; private set; }

    public static BatchLayout Build(ReadOnlySpan<int> sf, int rows, int l, HypernetConfig c,
        IOpBackend ops)
    {
        int s = l + (c.EmbedLangId ? 1 : 0), v0 = c.OriginalVocabSize;
        int limit = v0 + c.NumExtraTokens;
        long n = (long)rows * l, t = (long)rows * s;
        var srcIds = new int[n];
        var fbIds = new int[n];
        var pick = new int[n];
        for (int k = 0; k < n; k++)
        {
            int id = sf[k];
            if (id < 0 || id >= limit)
            {
                throw new ZettException($"surface form row {k / l}, position {k % l}: id {id} is "
                    + $"outside the hypernetwork's vocabulary 0..{limit - 1}");
            }
            bool extra = id >= v0;
            srcIds[k] = extra ? 0 : id;
            fbIds[k] = extra ? id - v0 : 0;
            pick[k] = extra ? (int)(n + k) : k;
        }
        var seqSrc = new int[t];
        var pos = new int[t];
        var keyLen = new int[rows];
        var pool = new int[rows];
        int[]? uniform = null;
        bool lang = c.EmbedLangId;
        for (int r = 0; r < rows; r++)
        {
            int at = r * s;
            int valid = 0;
            for (int p = 0; p < l; p++)
            {
                if (sf[(r * l) + p] != c.PadTokenId)
                {
                    Place(p);
                    valid++;
                }
            }
            if (lang)
            {
                seqSrc[at] = (int)n;
                pos[at] = l;
                at++;
            }
            for (int p = 0; p < l; p++)
            {
                if (sf[(r * l) + p] == c.PadTokenId)
                {
                    Place(p);
                }
            }
            keyLen[r] = valid + (lang ? 1 : 0);
            if (keyLen[r] == 0)
            {
                keyLen[r] = s;
                uniform ??= Enumerable.Range(0, (int)t).ToArray();
                for (int q = 0; q < s; q++)
                {
                    uniform[(r * s) + q] = (int)t;
                }
            }

            void Place(int p)
            {
                seqSrc[at] = (r * l) + p;
                pos[at] = p;
                if (p == 0)
                {
                    pool[r] = at;
                }
                at++;
            }
        }
        var layout = new BatchLayout { Rows = rows, L = l, S = s, Tokens = n, Sequence = t };
        try
        {
            layout.SourceIds = layout.Up(ops, srcIds);
            layout.FallbackIds = layout.Up(ops, fbIds);
            layout.Pick = layout.Up(ops, pick);
            layout.SequenceSource = layout.Up(ops, seqSrc);
            layout.Positions = layout.Up(ops, pos);
            layout.ZeroIds = layout.Up(ops, new int[t]);
            layout.KeyLengths = layout.Up(ops, keyLen);
            layout.Pool = layout.Up(ops, pool);
            layout.UniformQueries = uniform is null ? null : layout.Up(ops, uniform);
        }
        catch
        {
            layout.Dispose();
            throw;
        }
        return layout;
    }

    private Tensor Up(IOpBackend ops, int[] values)
    {
        Tensor host = Tensor.FromInts(values);
        Tensor dev = ops.Upload(host);
        if (!ReferenceEquals(dev, host))
        {
            host.Dispose();
        }
        _owned.Add(dev);
        return dev;
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
