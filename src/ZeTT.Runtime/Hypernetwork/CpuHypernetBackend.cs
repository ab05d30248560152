using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ZeTT.Ops.Cpu;
using ZeTT.Runtime.Tensors;

namespace ZeTT.Runtime.Hypernetwork;

/// <summary>
/// The hypernetwork forward pass (ZETT.md §3) on the CPU: the reference every other backend is
/// tested against, and the way ZeTT runs without a GPU.
/// </summary>
/// <remarks>
/// <para>Every Linear runs through a blocked, vectorised SGEMM against weights packed once at
/// construction, with bias and GELU fused into its epilogue; residual adds are fused into the
/// LayerNorm pass; all cores are used. Workspaces for <see cref="MaxBatchSize"/> rows are
/// allocated once and reused by every <see cref="Predict"/> call, so memory stays bounded
/// however many tokens are streamed through (see <see cref="HypernetBatching.PredictAll"/>).
/// Instances are not thread-safe: one <see cref="Predict"/> at a time.</para>
/// <para>Only position 0 of the last encoder layer reaches the output (ZETT.md §3 step 7), so
/// that layer computes keys and values for every position but queries, attention output and
/// feed-forward for position 0 only — exact, not an approximation.</para>
/// <para><see cref="HypernetPrecision.BFloat16"/> emulates bf16 tensor-core matmuls: every
/// Linear weight and bias, and every matmul input (the A operand of each GEMM, and the queries,
/// keys and values of attention) is rounded to bf16 (round-to-nearest-even) and widened back;
/// products accumulate in fp32; embeddings lookups, LayerNorm, softmax, GELU, residual adds and
/// rescaling stay fp32.</para>
/// </remarks>
public sealed unsafe class CpuHypernetBackend : IHypernetBackend
{
    /// <summary>Default bound on the floats held by the per-batch workspace (~256 MB).</summary>
    public const long DefaultWorkspaceFloats = 64L * 1024 * 1024;

    private readonly HypernetConfig _config;
    private readonly HypernetWeights _weights;
    private readonly float[] _source;
    private readonly int _vocab;
    private readonly bool _bf16;
    private readonly int _l, _s, _h, _i, _d, _heads, _headDim;

    private readonly PackedWeight _inputProjection;
    private readonly PackedBlock _inputBlock;
    private readonly PackedLayer[] _layers;
    private readonly PackedBlock _outputBlock;
    private readonly PackedWeight _outputLinear;
    private readonly PackedBlock? _outputOutBlock;
    private readonly PackedWeight? _outputOutLinear;
    private readonly PackedWeight? _biasProjection;
    private readonly float[] _embLnGamma, _embLnBeta;

    // Workspaces, pinned, sized for MaxBatchSize rows.
    private readonly float[] _gathered;   // [B·L, D_in]
    private readonly float[] _projected;  // [B·L, H]
    private readonly float[] _hidden;     // [B·S, H] residual stream
    private readonly float[] _wide;       // [B·S, max(I, 2H)] intermediate / keys+values
    private readonly float[] _narrow;     // [B·S, H] dense outputs
    private readonly float[] _query;      // [B·S, H]
    private readonly float[] _context;    // [B·S, H]
    private readonly float[] _pooled;     // [B, H]
    private readonly float[] _headOut;    // [B, max(n_out)]
    private readonly bool[] _mask;        // [B·S] key attended
    private readonly int[] _positions;    // [B] surface-form positions computed per row
    private readonly int[] _tokenStart;   // [B + 1] first row of each row's tokens in _projected
    private readonly int[] _seqStart;     // [B + 1] first row of each row's sequence in _hidden
    private bool _disposed;

    /// <summary>Builds the backend with a workspace bounded by
    /// <see cref="DefaultWorkspaceFloats"/>.</summary>
    /// <param name="weights">The bound hypernetwork parameters.</param>
    /// <param name="sourceEmbeddings">E [V, D_in] (for untied models [E_in, E_out] per row);
    /// V must cover <c>original_vocab_size</c>.</param>
    /// <param name="precision">fp32, or bf16 emulation (see remarks).</param>
    public CpuHypernetBackend(HypernetWeights weights, HostTensor sourceEmbeddings,
        HypernetPrecision precision)
        : this(weights, sourceEmbeddings, precision, maxBatchSize: 0)
    {
    }

    /// <summary>Builds the backend for batches of at most <paramref name="maxBatchSize"/> rows
    /// (0: as many as fit <see cref="DefaultWorkspaceFloats"/>, at most 512).</summary>
    /// <param name="weights">The bound hypernetwork parameters.</param>
    /// <param name="sourceEmbeddings">E [V, D_in].</param>
    /// <param name="precision">fp32, or bf16 emulation.</param>
    /// <param name="maxBatchSize">Rows per batch, 0 for the default.</param>
    /// <param name="releaseUnpacked">Release each GEMM weight matrix of
    /// <paramref name="weights"/> (<see cref="HostTensor.Release"/>) as soon as its packed copy
    /// exists, so that the hypernetwork is never held twice: for a caller that will not use
    /// <paramref name="weights"/> again (a transfer).</param>
    public CpuHypernetBackend(HypernetWeights weights, HostTensor sourceEmbeddings,
        HypernetPrecision precision, int maxBatchSize, bool releaseUnpacked = false)
        : this(weights, sourceEmbeddings, precision, maxBatchSize, releaseUnpacked, GemmKernels.Best)
    {
    }

    /// <summary>Builds the backend on a chosen GEMM micro-kernel (tests and benchmarks compare
    /// them).</summary>
    internal CpuHypernetBackend(HypernetWeights weights, HostTensor sourceEmbeddings,
        HypernetPrecision precision, int maxBatchSize, bool releaseUnpacked, GemmKernel kernel)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(sourceEmbeddings);
        ArgumentOutOfRangeException.ThrowIfNegative(maxBatchSize);
        HypernetConfig cfg = weights.Config;
        _config = cfg;
        _weights = weights;
        _l = cfg.SurfaceMaxLen;
        _s = cfg.SequenceLength;
        _h = cfg.HiddenSize;
        _i = cfg.IntermediateSize;
        _d = cfg.SourceWidth;
        _heads = cfg.NumAttentionHeads;
        _headDim = cfg.HeadDim;
        if (sourceEmbeddings.Rank != 2 || sourceEmbeddings.Shape[1] != _d)
        {
            throw new ZettException($"source embeddings '{sourceEmbeddings.Name}' have shape "
                + $"{HostTensor.ShapeToString(sourceEmbeddings.Shape)}, expected [V, {_d}]"
                + (cfg.SeparateOutEmbeddings ? " (untied model: [E_in, E_out] per row)" : ""));
        }
        _vocab = sourceEmbeddings.Shape[0];
        if (_vocab < cfg.OriginalVocabSize)
        {
            throw new ZettException($"source embeddings '{sourceEmbeddings.Name}' have {_vocab} "
                + $"rows, fewer than the hypernetwork's original_vocab_size {cfg.OriginalVocabSize}");
        }
        _source = sourceEmbeddings.Data;
        Precision = precision;
        _bf16 = precision == HypernetPrecision.BFloat16;

        bool r = releaseUnpacked;
        _inputProjection = Packed(PackedWeight.FromLinear(weights.InputProjection, _bf16, kernel), r,
            weights.InputProjection);
        _inputBlock = new PackedBlock(weights.InputBlock, _bf16, r, kernel);
        _layers = weights.Layers.Select(l => new PackedLayer(l, _bf16, r, kernel)).ToArray();
        _outputBlock = new PackedBlock(weights.OutputBlock, _bf16, r, kernel);
        _outputLinear = Packed(PackedWeight.FromLinear(weights.OutputLinear, _bf16, kernel), r,
            weights.OutputLinear);
        if (weights.OutputOutBlock is not null && weights.OutputOutLinear is not null)
        {
            _outputOutBlock = new PackedBlock(weights.OutputOutBlock, _bf16, r, kernel);
            _outputOutLinear = Packed(PackedWeight.FromLinear(weights.OutputOutLinear, _bf16, kernel), r,
                weights.OutputOutLinear);
        }
        if (weights.BiasProjection is not null)
        {
            _biasProjection = Packed(PackedWeight.FromLinear(weights.BiasProjection, _bf16, kernel), r,
                weights.BiasProjection);
        }
        _embLnGamma = Pinned(weights.EmbeddingsLn.Weight.Data);
        _embLnBeta = Pinned(weights.EmbeddingsLn.Bias.Data);

        int wideWidth = Math.Max(_i, 2 * _h);
        int headWidth = Math.Max(weights.OutputLinear.Out, 1);
        long perRow = ((long)_l * (_d + _h)) + ((long)_s * ((4 * _h) + wideWidth)) + _h + _i
            + headWidth;
        MaxBatchSize = maxBatchSize > 0
            ? maxBatchSize
            : (int)Math.Clamp(DefaultWorkspaceFloats / perRow, 1, 512);
        int b = MaxBatchSize;
        _gathered = Pinned((long)b * _l * _d);
        _projected = Pinned((long)b * _l * _h);
        _hidden = Pinned((long)b * _s * _h);
        _wide = Pinned((long)b * _s * wideWidth);
        _narrow = Pinned((long)b * _s * _h);
        _query = Pinned((long)b * _s * _h);
        _context = Pinned((long)b * _s * _h);
        _pooled = Pinned((long)b * _h);
        _headOut = Pinned((long)b * Math.Max(headWidth, _i));
        _mask = new bool[b * _s];
        _positions = new int[b];
        _tokenStart = new int[b + 1];
        _seqStart = new int[b + 1];
    }

    /// <inheritdoc />
    public string Name => "cpu";

    /// <inheritdoc />
    public int MaxBatchSize { get; }

    /// <summary>The precision this backend computes in.</summary>
    public HypernetPrecision Precision { get; }

    /// <summary>The configuration of the bound hypernetwork.</summary>
    public HypernetConfig Config => _config;

    /// <summary>Floating-point operations one <see cref="Predict"/> row executes (multiply and
    /// add counted separately; GEMMs and attention), for throughput reports.</summary>
    public double FlopsPerRow => RowFlops(_l);

    /// <summary>Floating-point operations <see cref="Predict"/> executes for these rows (counted
    /// like <see cref="FlopsPerRow"/>): trailing padding is skipped, so a row costs according to
    /// its real length.</summary>
    /// <param name="surfaceForms">[rows, L] ids, row-major.</param>
    /// <param name="rows">Number of rows.</param>
    public double Flops(ReadOnlySpan<int> surfaceForms, int rows)
    {
        if (surfaceForms.Length != (long)rows * _l)
        {
            throw new ArgumentException($"surface forms hold {surfaceForms.Length} ids, expected "
                + $"rows·L = {rows}·{_l}", nameof(surfaceForms));
        }
        double flops = 0;
        for (int r = 0; r < rows; r++)
        {
            flops += RowFlops(PositionsOf(surfaceForms.Slice(r * _l, _l)));
        }
        return flops;
    }

    /// <summary>When false, every row computes all L positions (the unpacked layout), for tests
    /// and the benchmark to compare against; results are the same either way.</summary>
    internal bool SkipPadding { get; set; } = true;

    /// <summary>Surface-form positions a row needs (<see cref="HypernetPacking.Positions"/>).
    /// </summary>
    private int PositionsOf(ReadOnlySpan<int> row) =>
        HypernetPacking.Positions(row, _config, SkipPadding);

    private double RowFlops(int positions)
    {
        double h = _h, i = _i, s = positions + (_s - _l), l = positions;
        double block = 2 * (2 * h * i);
        double flops = l * ((2 * _d * h) + block);
        for (int layer = 0; layer < _layers.Length; layer++)
        {
            bool last = layer == _layers.Length - 1;
            double q = last ? 1 : s;
            flops += (s * 2 * h * 2 * h) + (q * ((2 * h * h * 2) + (2 * 2 * h * i)))
                + (q * s * 4 * h);
        }
        int headOut = _weights.OutputLinear.Out;
        flops += block + (2 * h * headOut);
        if (_outputOutLinear is not null)
        {
            flops += block + (2 * h * _outputOutLinear.N);
        }
        if (_biasProjection is not null)
        {
            flops += 2 * h;
        }
        return flops;
    }

    /// <inheritdoc />
    public HypernetOutput Predict(ReadOnlySpan<int> surfaceForms, int rows, int langIndex)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (rows < 0 || rows > MaxBatchSize)
        {
            throw new ArgumentOutOfRangeException(nameof(rows), rows,
                $"a batch holds 0..{MaxBatchSize} rows");
        }
        if (surfaceForms.Length != rows * _l)
        {
            throw new ArgumentException($"surface forms hold {surfaceForms.Length} ids, expected "
                + $"rows·L = {rows}·{_l}", nameof(surfaceForms));
        }
        if (_config.EmbedLangId)
        {
            if (langIndex < 0 || langIndex >= _config.NumLangs)
            {
                throw new ZettException($"language index {langIndex} is out of range: this "
                    + $"hypernetwork has {_config.NumLangs} languages");
            }
        }
        else if (langIndex != -1)
        {
            throw new ZettException(
                $"language index {langIndex} given, but this hypernetwork has no language embeddings");
        }
        int limit = _config.OriginalVocabSize + _config.NumExtraTokens;
        for (int k = 0; k < surfaceForms.Length; k++)
        {
            int id = surfaceForms[k];
            if (id < 0 || id >= limit)
            {
                throw new ZettException($"surface form row {k / _l}, position {k % _l}: id {id} is "
                    + $"outside the hypernetwork's vocabulary 0..{limit - 1} (original_vocab_size "
                    + $"{_config.OriginalVocabSize} + {_config.NumExtraTokens} extra tokens)");
            }
        }

        int nEmbd = _config.NEmbd;
        var eIn = new float[rows * nEmbd];
        float[]? eOut = _config.SeparateOutEmbeddings ? new float[rows * nEmbd] : null;
        float[]? bias = _config.PredictBias ? new float[rows] : null;
        if (rows == 0)
        {
            return new HypernetOutput(eIn, eOut, bias);
        }
        Forward(surfaceForms, rows, langIndex, eIn, eOut, bias);
        return new HypernetOutput(eIn, eOut, bias);
    }

    private void Forward(ReadOnlySpan<int> ids, int rows, int langIndex, float[] eIn,
        float[]? eOut, float[]? bias)
    {
        int h = _h, l = _l, extra = _s - _l;
        float* gathered = P(_gathered), projected = P(_projected), hidden = P(_hidden);
        float* wide = P(_wide), narrow = P(_narrow), query = P(_query), context = P(_context);
        float* pooled = P(_pooled), headOut = P(_headOut);

        // Packed layout: row r's computed positions are rows _tokenStart[r].. of the token
        // matrices and _seqStart[r].. of the sequence matrices (its language position last).
        for (int r = 0; r < rows; r++)
        {
            int n = PositionsOf(ids.Slice(r * l, l));
            _positions[r] = n;
            _tokenStart[r + 1] = _tokenStart[r] + n;
            _seqStart[r + 1] = _seqStart[r] + n + extra;
            for (int p = 0; p < n; p++)
            {
                _mask[_seqStart[r] + p] = ids[(r * l) + p] != _config.PadTokenId;
            }
            if (extra > 0)
            {
                _mask[_seqStart[r] + n] = true;
            }
        }
        int tokens = _tokenStart[rows], seq = _seqStart[rows];

        Gather(ids, rows, gathered);

        // Input projection and projector block on every surface-form position.
        CpuMath.Gemm(gathered, _d, tokens, _inputProjection, projected, h, CpuActivation.None, _bf16);
        RunBlock(_inputBlock, projected, h, tokens, wide, narrow, projected, h);

        Embed(projected, rows, langIndex, hidden);
        CpuMath.AddLayerNorm(hidden, h, null, 0, seq, h, P(_embLnGamma), P(_embLnBeta),
            _config.EncoderLayerNormEps, hidden, h);

        if (_layers.Length == 0)
        {
            GatherFirst(hidden, rows, pooled);
        }
        for (int li = 0; li < _layers.Length; li++)
        {
            PackedLayer layer = _layers[li];
            bool last = li == _layers.Length - 1;
            // In the last layer only position 0 is needed downstream: its rows of `hidden` are
            // gathered into `pooled`, which then carries the layer's output for them.
            int qRows = last ? rows : seq;
            float* attended = last ? pooled : hidden;
            if (last)
            {
                GatherFirst(hidden, rows, pooled);
            }
            CpuMath.Gemm(attended, h, qRows, layer.Query, query, h, CpuActivation.None, _bf16);
            CpuMath.Gemm(hidden, h, seq, layer.KeyValue, wide, 2 * h, CpuActivation.None, _bf16);
            if (_bf16)
            {
                CpuMath.RoundToBf16(query, (long)qRows * h);
                CpuMath.RoundToBf16(wide, (long)seq * 2 * h);
            }
            Attention(query, wide, rows, last, context);
            CpuMath.Gemm(context, h, qRows, layer.AttentionOutput, narrow, h, CpuActivation.None,
                _bf16);
            CpuMath.AddLayerNorm(narrow, h, attended, h, qRows, h, P(layer.AttentionLnGamma),
                P(layer.AttentionLnBeta), _config.EncoderLayerNormEps, attended, h);
            CpuMath.Gemm(attended, h, qRows, layer.Intermediate, wide, _i, CpuActivation.GeluErf, _bf16);
            CpuMath.Gemm(wide, _i, qRows, layer.Output, narrow, h, CpuActivation.None, _bf16);
            CpuMath.AddLayerNorm(narrow, h, attended, h, qRows, h, P(layer.OutputLnGamma),
                P(layer.OutputLnBeta), _config.EncoderLayerNormEps, attended, h);
        }

        // Heads on z = h[:, 0] (hn_concat_last_hidden_state is only valid with S = 1, where the
        // flattened state is the same vector).
        int nEmbd = _config.NEmbd;
        RunBlock(_outputBlock, pooled, h, rows, wide, narrow, narrow, h);
        int nOut = _outputLinear.N;
        CpuMath.Gemm(narrow, h, rows, _outputLinear, headOut, nOut, CpuActivation.None, _bf16);
        CopyColumns(headOut, nOut, 0, rows, nEmbd, eIn);
        if (eOut is not null)
        {
            if (_outputOutBlock is not null && _outputOutLinear is not null)
            {
                RunBlock(_outputOutBlock, pooled, h, rows, wide, narrow, narrow, h);
                CpuMath.Gemm(narrow, h, rows, _outputOutLinear, headOut, nEmbd, CpuActivation.None,
                    _bf16);
                CopyColumns(headOut, nEmbd, 0, rows, nEmbd, eOut);
            }
            else
            {
                CopyColumns(headOut, nOut, nEmbd, rows, nEmbd, eOut);
            }
        }
        if (_weights.Scaler is not null)
        {
            Rescale(eIn, rows, _weights.Scaler);
        }
        if (eOut is not null && _weights.OutScaler is not null)
        {
            Rescale(eOut, rows, _weights.OutScaler);
        }
        if (bias is not null && _biasProjection is not null)
        {
            CpuMath.Gemm(pooled, h, rows, _biasProjection, headOut, 1, CpuActivation.None, _bf16);
            new ReadOnlySpan<float>(headOut, rows).CopyTo(bias);
        }
    }

    /// <summary>x rows ← source embedding (rescaled by in_scaler) or fallback embedding, for
    /// the computed positions of each row, packed.</summary>
    private void Gather(ReadOnlySpan<int> ids, int rows, float* dst)
    {
        int d = _d, l = _l, orig = _config.OriginalVocabSize;
        float[] fallback = _weights.FallbackEmbeddings.Data;
        RescalerParams? inScaler = _weights.InScaler;
        for (int r = 0; r < rows; r++)
        {
            for (int p = 0; p < _positions[r]; p++)
            {
                int id = ids[(r * l) + p];
                var row = new Span<float>(dst + ((long)(_tokenStart[r] + p) * d), d);
                if (id >= orig)
                {
                    fallback.AsSpan((id - orig) * d, d).CopyTo(row);
                    continue;
                }
                ReadOnlySpan<float> src = _source.AsSpan(id * d, d);
                if (inScaler is null)
                {
                    src.CopyTo(row);
                }
                else
                {
                    float[] w = inScaler.W.Data, b = inScaler.B.Data;
                    for (int j = 0; j < d; j++)
                    {
                        row[j] = (w[j] * src[j]) + b[j];
                    }
                }
            }
        }
    }

    /// <summary>RoBERTa embeddings: position p gets <c>(x + type₀) + pos[p]</c>; the language
    /// position gets its embedding, computed the way the PyTorch port does (pre-subtracting
    /// type₀ + pos[L], which the embedding layer adds back: its sequence index in the reference
    /// is L, whatever the row's packed length).</summary>
    private void Embed(float* projected, int rows, int langIndex, float* hidden)
    {
        int h = _h, l = _l, s = _s;
        float[] pos = _weights.PositionEmbeddings.Data, type0 = _weights.TokenTypeEmbeddings.Data;
        float[]? lang = null;
        if (s > l && _weights.LangEmbeddings is { } langTable)
        {
            lang = new float[h];
            for (int j = 0; j < h; j++)
            {
                float adjusted = langTable.Data[(langIndex * h) + j] - (type0[j] + pos[(l * h) + j]);
                lang[j] = adjusted + type0[j] + pos[(l * h) + j];
            }
        }
        for (int r = 0; r < rows; r++)
        {
            int n = _positions[r];
            for (int p = 0; p < n; p++)
            {
                float* src = projected + ((long)(_tokenStart[r] + p) * h);
                float* dst = hidden + ((long)(_seqStart[r] + p) * h);
                for (int j = 0; j < h; j++)
                {
                    dst[j] = src[j] + type0[j] + pos[(p * h) + j];
                }
            }
            if (lang is not null)
            {
                lang.AsSpan().CopyTo(new Span<float>(hidden + ((long)(_seqStart[r] + n) * h), h));
            }
        }
    }

    /// <summary>Copies position 0 of each row's sequence into <paramref name="dst"/> [rows, H].
    /// </summary>
    private void GatherFirst(float* hidden, int rows, float* dst)
    {
        for (int r = 0; r < rows; r++)
        {
            new ReadOnlySpan<float>(hidden + ((long)_seqStart[r] * _h), _h)
                .CopyTo(new Span<float>(dst + ((long)r * _h), _h));
        }
    }

    /// <summary>Multi-head attention of each row over its own packed positions, with every
    /// position querying, or only position 0 (<paramref name="firstOnly"/>; queries and contexts
    /// are then one row each). Masked keys get float.MinValue added to their score, as Hugging
    /// Face does, so a row with every key masked attends uniformly; otherwise a masked key's
    /// weight is exactly 0, which is why skipping trailing padding changes nothing.</summary>
    private void Attention(float* query, float* keyValue, int rows, bool firstOnly, float* context)
    {
        int h = _h, heads = _heads, dh = _headDim, maxLen = _s;
        float scale = 1f / MathF.Sqrt(dh);
        nint pq = (nint)query, pkv = (nint)keyValue, pc = (nint)context;
        bool[] mask = _mask;
        int[] seqStart = _seqStart;
        void Row(int r)
        {
            Span<float> scores = stackalloc float[maxLen];
            int s0 = seqStart[r], s = seqStart[r + 1] - s0;
            int queries = firstOnly ? 1 : s, q0 = firstOnly ? r : s0;
            float* kvRow = (float*)pkv + ((long)s0 * 2 * h);
            for (int q = 0; q < queries; q++)
            {
                float* qv = (float*)pq + ((long)(q0 + q) * h);
                float* ctx = (float*)pc + ((long)(q0 + q) * h);
                new Span<float>(ctx, h).Clear();
                for (int head = 0; head < heads; head++)
                {
                    int off = head * dh;
                    float max = float.NegativeInfinity;
                    for (int j = 0; j < s; j++)
                    {
                        float sc = CpuMath.Dot(qv + off, kvRow + ((long)j * 2 * h) + off, dh) * scale;
                        sc += mask[s0 + j] ? 0f : float.MinValue;
                        scores[j] = sc;
                        max = MathF.Max(max, sc);
                    }
                    float sum = 0f;
                    for (int j = 0; j < s; j++)
                    {
                        scores[j] = MathF.Exp(scores[j] - max);
                        sum += scores[j];
                    }
                    float inv = 1f / sum;
                    for (int j = 0; j < s; j++)
                    {
                        CpuMath.Axpy(scores[j] * inv, kvRow + ((long)j * 2 * h) + h + off, ctx + off,
                            dh);
                    }
                }
            }
        }
        long work = (long)seqStart[rows] * (firstOnly ? 1 : maxLen) * h;
        if (work < 100_000)
        {
            for (int r = 0; r < rows; r++)
            {
                Row(r);
            }
            return;
        }
        Parallel.For(0, rows, Row);
    }

    /// <summary>ProjectorBlock: <c>dst = LN_1e-6(gelu_tanh(dense2(gelu_tanh(dense1(x)))) + x)</c>.
    /// </summary>
    private void RunBlock(PackedBlock block, float* x, int ldx, int rows, float* wide,
        float* narrow, float* dst, int ldd)
    {
        CpuMath.Gemm(x, ldx, rows, block.Dense1, wide, block.Dense1.N, CpuActivation.GeluTanh, _bf16);
        CpuMath.Gemm(wide, block.Dense1.N, rows, block.Dense2, narrow, block.Dense2.N,
            CpuActivation.GeluTanh, _bf16);
        CpuMath.AddLayerNorm(narrow, block.Dense2.N, x, ldx, rows, block.Dense2.N, P(block.LnGamma),
            P(block.LnBeta), _config.ProjectorLayerNormEps, dst, ldd);
    }

    private static void Rescale(float[] x, int rows, RescalerParams scaler)
    {
        float[] w = scaler.W.Data, b = scaler.B.Data;
        int dim = w.Length;
        for (int r = 0; r < rows; r++)
        {
            Span<float> row = x.AsSpan(r * dim, dim);
            for (int j = 0; j < dim; j++)
            {
                row[j] = (w[j] * row[j]) + b[j];
            }
        }
    }

    private static void CopyColumns(float* src, int lds, int col0, int rows, int cols, float[] dst)
    {
        for (int r = 0; r < rows; r++)
        {
            new ReadOnlySpan<float>(src + ((long)r * lds) + col0, cols).CopyTo(dst.AsSpan(r * cols));
        }
    }

    private static float[] Pinned(long n) =>
        GC.AllocateArray<float>((int)Math.Max(1, n), pinned: true);

    private static float[] Pinned(float[] values)
    {
        float[] a = GC.AllocateArray<float>(Math.Max(1, values.Length), pinned: true);
        values.CopyTo(a, 0);
        return a;
    }

    private static float* P(float[] pinned) =>
        (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(pinned));

    /// <inheritdoc />
    public void Dispose() => _disposed = true;

    /// <summary>Returns <paramref name="packed"/>, first releasing the unpacked weight matrices
    /// of <paramref name="sources"/> when <paramref name="release"/> is set.</summary>
    private static PackedWeight Packed(PackedWeight packed, bool release,
        params LinearParams[] sources)
    {
        if (release)
        {
            foreach (LinearParams p in sources)
            {
                p.Weight.Release();
                // The released matrices are large-object-heap arrays, which a gen-2 collection
                // alone reclaims; collect every 256 MiB so that the next packed matrices reuse
                // that memory instead of adding to it (a Mistral-7B-sized hypernetwork is 2.6
                // GB in fp32).
                if (Interlocked.Add(ref s_releasedSinceCollect, (long)p.Weight.Shape[0]
                    * p.Weight.Shape[1] * sizeof(float)) > 256L << 20)
                {
                    Interlocked.Exchange(ref s_releasedSinceCollect, 0);
                    GC.Collect(2, GCCollectionMode.Forced, blocking: true);
                }
            }
        }
        return packed;
    }

    private static long s_releasedSinceCollect;

    private sealed class PackedBlock(ProjectorBlockParams p, bool bf16, bool release,
        GemmKernel kernel)
    {
        public PackedWeight Dense1 { get; } = Packed(PackedWeight.FromLinear(p.Dense1, bf16, kernel),
            release, p.Dense1);

        public PackedWeight Dense2 { get; } = Packed(PackedWeight.FromLinear(p.Dense2, bf16, kernel),
            release, p.Dense2);

        public float[] LnGamma { get; } = Pinned(p.Ln.Weight.Data);

        public float[] LnBeta { get; } = Pinned(p.Ln.Bias.Data);
    }

    private sealed class PackedLayer(EncoderLayerParams p, bool bf16, bool release,
        GemmKernel kernel)
    {
        public PackedWeight Query { get; } = Packed(PackedWeight.FromLinear(p.Query, bf16, kernel),
            release, p.Query);

        public PackedWeight KeyValue { get; } = Packed(PackedWeight.Concat([p.Key, p.Value], bf16, kernel),
            release, p.Key, p.Value);

        public PackedWeight AttentionOutput { get; } = Packed(
            PackedWeight.FromLinear(p.AttentionOutput, bf16, kernel), release, p.AttentionOutput);

        public float[] AttentionLnGamma { get; } = Pinned(p.AttentionLn.Weight.Data);

        public float[] AttentionLnBeta { get; } = Pinned(p.AttentionLn.Bias.Data);

        public PackedWeight Intermediate { get; } = Packed(
            PackedWeight.FromLinear(p.Intermediate, bf16, kernel), release, p.Intermediate);

        public PackedWeight Output { get; } = Packed(PackedWeight.FromLinear(p.Output, bf16, kernel),
            release, p.Output);

        public float[] OutputLnGamma { get; } = Pinned(p.OutputLn.Weight.Data);

        public float[] OutputLnBeta { get; } = Pinned(p.OutputLn.Bias.Data);
    }
}
