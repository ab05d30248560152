using ZeTT.Kernels;
using ZeTT.Kernels.Blas;
using ZeTT.Kernels.Launch;

namespace ZeTT.Ops.Cuda;

public sealed partial class CudaBackend
{
    // ---- embedding ----------------------------------------------------------------------

    /// <inheritdoc />
    public void EmbeddingForward(Tensor table, Tensor ids, Tensor output, float scale = 1f)
    {
        ArgumentNullException.ThrowIfNull(table);
        ArgumentNullException.ThrowIfNull(ids);
        ArgumentNullException.ThrowIfNull(output);
        (int vocab, int cols) = DenseRows(table, "embedding");
        (_, int outCols) = DenseRows(output, "embedding");
        RequireIds(ids, output.Count / Math.Max(cols, 1), "embedding");
        if (outCols != cols)
        {
            throw new ArgumentException($"embedding: output '{output.Name}' rows of {outCols} "
                + $"but table '{table.Name}' rows of {cols}");
        }
        GatherKernels.Forward(_kernels, _stream, View(ids), View(table), vocab, cols, scale,
            View(output), _embeddingError.View);
    }

    /// <inheritdoc />
    public void EmbeddingBackward(Tensor dOutput, Tensor ids, Tensor dTable, float scale = 1f)
    {
        ArgumentNullException.ThrowIfNull(dOutput);
        ArgumentNullException.ThrowIfNull(ids);
        ArgumentNullException.ThrowIfNull(dTable);
        (int vocab, int cols) = DenseRows(dTable, "embedding backward");
        (_, int dCols) = DenseRows(dOutput, "embedding backward");
        RequireIds(ids, dOutput.Count / Math.Max(cols, 1), "embedding backward");
        if (dCols != cols)
        {
            throw new ArgumentException($"embedding backward: '{dOutput.Name}' rows of {dCols} "
                + $"but '{dTable.Name}' rows of {cols}");
        }
        GatherKernels.Backward(_kernels, _stream, View(ids), View(dOutput), vocab, cols, scale,
            View(dTable));
    }

    private static void RequireIds(Tensor ids, long tokens, string op)
    {
        if (ids.DType != DType.I32 || !ids.IsContiguous || ids.Count != tokens)
        {
            throw new ArgumentException($"{op}: ids '{ids.Name}' must be a contiguous I32 "
                + $"[{tokens}], is {ids.DType} {Tensor.ShapeText(ids.Shape)}");
        }
    }

    // ---- matrix products ----------------------------------------------------------------

    /// <inheritdoc />
    public void MatMul(Tensor a, bool transA, Tensor b, bool transB, Tensor c, float alpha = 1f,
        float beta = 0f)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        ArgumentNullException.ThrowIfNull(c);
        (long ar, long ac, long lda) = Rows(a);
        (long br, long bc, long ldb) = Rows(b);
        (long cr, long cc, long ldc) = Rows(c);
        long m = transA ? ac : ar, k = transA ? ar : ac;
        long kb = transB ? bc : br, n = transB ? br : bc;
        if (kb != k || cr != m || cc != n)
        {
            throw new ArgumentException($"matmul: op('{a.Name}') is [{m}, {k}], op('{b.Name}') is "
                + $"[{kb}, {n}] and '{c.Name}' is [{cr}, {cc}]");
        }
        if (m == 0 || n == 0)
        {
            return;
        }
        if (k == 0)
        {
            Scale(c, beta, c);
            return;
        }
        DeviceView va = View(a), vb = View(b);
        (va, lda) = MatchOperand(va, vb.DType, ar, ac, lda, "matmul-a");
        (vb, ldb) = MatchOperand(vb, va.DType, br, bc, ldb, "matmul-b");
        Gemm.Run(_blas, transA, transB, ToInt(m, c, "rows"), ToInt(n, c, "columns"),
            ToInt(k, a, "inner size"), va, ToInt(lda, a, "row stride"), vb,
            ToInt(ldb, b, "row stride"), View(c), ToInt(ldc, c, "row stride"), alpha, beta);
    }

    /// <summary>An operand in <paramref name="want"/>'s dtype: itself, or (F32 next to BF16)
    /// its rows rounded to BF16 in scratch.</summary>
    private (DeviceView View, long Ld) MatchOperand(DeviceView v, KernelDType want, long rows,
        long cols, long ld, string purpose)
    {
        if (v.DType == want || v.DType == KernelDType.BF16)
        {
            return (v, ld);
        }
        DeviceView dense = Scratch(purpose, KernelDType.BF16, rows * cols);
        ResidualKernels.CopyStrided(_kernels, _stream, v, [ld, 1], dense, [cols, 1],
            [rows, cols]);
        return (dense, cols);
    }

    /// <summary>Whether <see cref="Linear"/> first tries one cuBLASLt matmul with a bias /
    /// ReLU / GELU-tanh epilogue (default true); false forces the unfused path (bias copied into
    /// y, GEMM with beta 1, separate activation pass) — the benchmarks time both in one run.
    /// </summary>
    public bool FusedLinearEpilogues { get; set; } = true;

    /// <inheritdoc />
    public void Linear(Tensor x, Tensor weight, Tensor? bias, Tensor y, bool weightInOut = false,
        ActivationFunction? activation = null)
    {
        ArgumentNullException.ThrowIfNull(y);
        if (FusedLinearEpilogues && TryFusedLinear(x, weight, bias, y, weightInOut, activation))
        {
            return;
        }
        float beta = 0f;
        if (bias is not null)
        {
            (long rows, long width, long ld) = Rows(y);
            if (bias.Count != width || !bias.IsContiguous)
            {
                throw new ArgumentException($"linear: bias '{bias.Name}' must be a contiguous "
                    + $"[{width}]");
            }
            // Every row of y starts as the bias (row stride 0 on the source), then the GEMM adds.
            ResidualKernels.CopyStrided(_kernels, _stream, View(bias), [0, 1], View(y), [ld, 1],
                [rows, width]);
            beta = 1f;
        }
        MatMul(x, false, weight, !weightInOut, y, 1f, beta);
        if (activation is { } f)
        {
            Activation(f, y, y);
        }
    }

    /// <summary>y = act(x·op(W) + bias) as one cuBLASLt matmul with an epilogue, when the bias
    /// is a contiguous vector and cuBLASLt has an algorithm; false (nothing queued) otherwise.
    /// ReLU (exact) and, for a bf16 output, GELU tanh go into the epilogue; any other activation
    /// (GELU erf, SiLU, GELU tanh into fp32) runs as its own pass after a bias-only epilogue
    /// (still saving the bias pre-fill and its re-read).
    /// </summary>
    private bool TryFusedLinear(Tensor x, Tensor weight, Tensor? bias, Tensor y,
        bool weightInOut, ActivationFunction? activation)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(weight);
        GemmActivation act = GemmActivation.None;
        ActivationFunction? after = null;
        switch (activation)
        {
            case null:
                break;
            case ActivationFunction.Relu:
                act = GemmActivation.Relu;
                break;
            case ActivationFunction.GeluTanh when y.DType == DType.BF16:
                // Only into a bf16 output: how exactly cuBLASLt evaluates tanh is not
                // documented, and for fp32 outputs our kernel keeps GELU at fp32 accuracy.
                act = GemmActivation.GeluTanh;
                break;
            default:
                after = activation;
                break;
        }
        if (bias is null && act == GemmActivation.None)
        {
            return false; // nothing to fuse: the unfused path runs the same matmul
        }
        (long xr, long xc, long ldx) = Rows(x);
        (long wr, long wc, long ldw) = Rows(weight);
        (long yr, long yc, long ldy) = Rows(y);
        bool transB = !weightInOut;
        long k = xc, kw = transB ? wc : wr, n = transB ? wr : wc;
        if (kw != k || yr != xr || yc != n || xr == 0 || n == 0 || k == 0)
        {
            return false; // the unfused path reports shape errors and handles empty products
        }
        if (bias is not null && (bias.Count != n || !bias.IsContiguous))
        {
            return false; // ... and a bad bias
        }
        DeviceView vx = View(x), vw = View(weight);
        (vx, ldx) = MatchOperand(vx, vw.DType, xr, xc, ldx, "matmul-a");
        (vw, ldw) = MatchOperand(vw, vx.DType, wr, wc, ldw, "matmul-b");
        if (!Gemm.TryRunFused(_blas, transB, ToInt(xr, y, "rows"), ToInt(n, y, "columns"),
            ToInt(k, x, "inner size"), vx, ToInt(ldx, x, "row stride"), vw,
            ToInt(ldw, weight, "row stride"), View(y), ToInt(ldy, y, "row stride"),
            ViewOrNone(bias), act))
        {
            return false;
        }
        if (after is { } f)
        {
            Activation(f, y, y);
        }
        return true;
    }

    /// <inheritdoc />
    public void SumRows(Tensor x, Tensor sums)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(sums);
        (long rows, long width, long ld) = Rows(x);
        if (sums.Count != width || !sums.IsContiguous || sums.DType != DType.F32)
        {
            throw new ArgumentException($"sum rows: '{sums.Name}' must be a contiguous F32 "
                + $"[{width}]");
        }
        ResidualKernels.SumRows(_kernels, _stream, View(x), ToInt(rows, x, "rows"),
            ToInt(width, x, "width"), ToInt(ld, x, "row stride"), 1f, View(sums));
    }

    // ---- normalisation ------------------------------------------------------------------

    /// <inheritdoc />
    public void LayerNormForward(Tensor x, Tensor weight, Tensor? bias, float eps, Tensor y,
        Tensor mean, Tensor rstd, Tensor? residual = null)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(y);
        ArgumentNullException.ThrowIfNull(mean);
        ArgumentNullException.ThrowIfNull(rstd);
        (int rows, int cols) = NormRows(x, y, weight, "layer norm");
        if (residual is not null)
        {
            // Fused: the kernel normalises x + residual, the sum formed in fp32 and not stored.
            RequireSameShape(x, residual);
            DenseRows(residual, "layer norm");
        }
        NormKernels.Forward(_kernels, _stream, NormKind.Layer, View(x), View(weight),
            ViewOrNone(bias), rows, cols, eps, false, View(y), Stats(mean, rows),
            Stats(rstd, rows), ViewOrNone(residual));
    }

    /// <inheritdoc />
    public void LayerNormBackward(Tensor dy, Tensor x, Tensor weight, Tensor mean, Tensor rstd,
        Tensor dx, Tensor? dWeight, Tensor? dBias)
    {
        ArgumentNullException.ThrowIfNull(dy);
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(mean);
        ArgumentNullException.ThrowIfNull(rstd);
        ArgumentNullException.ThrowIfNull(dx);
        (int rows, int cols) = NormRows(x, dx, weight, "layer norm backward");
        DenseRows(dy, "layer norm backward");
        NormKernels.Backward(_kernels, _stream, NormKind.Layer, View(x), View(weight), View(dy),
            Stats(mean, rows), Stats(rstd, rows), rows, cols, false, View(dx),
            ViewOrNone(dWeight), ViewOrNone(dBias), Partial(rows, cols), beta: 1f);
    }

    /// <inheritdoc />
    public void RmsNormForward(Tensor x, Tensor weight, float eps, bool unitOffset, Tensor y,
        Tensor rstd)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(y);
        ArgumentNullException.ThrowIfNull(rstd);
        (int rows, int cols) = NormRows(x, y, weight, "rms norm");
        NormKernels.Forward(_kernels, _stream, NormKind.Rms, View(x), View(weight), default,
            rows, cols, eps, unitOffset, View(y), default, Stats(rstd, rows));
    }

    /// <inheritdoc />
    public void RmsNormBackward(Tensor dy, Tensor x, Tensor weight, bool unitOffset, Tensor rstd,
        Tensor dx, Tensor? dWeight)
    {
        ArgumentNullException.ThrowIfNull(dy);
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(rstd);
        ArgumentNullException.ThrowIfNull(dx);
        (int rows, int cols) = NormRows(x, dx, weight, "rms norm backward");
        DenseRows(dy, "rms norm backward");
        NormKernels.Backward(_kernels, _stream, NormKind.Rms, View(x), View(weight), View(dy),
            default, Stats(rstd, rows), rows, cols, unitOffset, View(dx), ViewOrNone(dWeight),
            default, Partial(rows, cols), beta: 1f);
    }

    private static (int Rows, int Cols) NormRows(Tensor x, Tensor y, Tensor weight, string op)
    {
        (int rows, int cols) = DenseRows(x, op);
        RequireSameShape(x, y);
        DenseRows(y, op);
        if (weight.Count != cols)
        {
            throw new ArgumentException($"{op}: weight '{weight.Name}' has {weight.Count} "
                + $"elements for rows of {cols}");
        }
        return (rows, cols);
    }

    private static DeviceView Stats(Tensor t, int rows)
    {
        if (t.Count != rows || !t.IsContiguous || t.DType != DType.F32)
        {
            throw new ArgumentException($"tensor '{t.Name}' must be a contiguous F32 [{rows}] "
                + $"(per-row statistics), is {t.DType} {Tensor.ShapeText(t.Shape)}");
        }
        return View(t);
    }

    private DeviceView Partial(int rows, int cols) =>
        Scratch("norm-partial", KernelDType.F32, 2L * NormKernels.Chunks(rows) * cols);

    // ---- activations ----------------------------------------------------------------------

    private static Kernels.Launch.Activation Act(ActivationFunction f) => f switch
    {
        ActivationFunction.Silu => Kernels.Launch.Activation.Silu,
        ActivationFunction.GeluErf => Kernels.Launch.Activation.GeluErf,
        ActivationFunction.GeluTanh => Kernels.Launch.Activation.GeluTanh,
        ActivationFunction.Relu => Kernels.Launch.Activation.Relu,
        _ => throw new ArgumentException($"unknown activation {f}", nameof(f)),
    };

    /// <inheritdoc />
    public void Activation(ActivationFunction function, Tensor x, Tensor y)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(y);
        RequireSameShape(x, y);
        (int rows, int cols) = DenseRows(x, "activation");
        DenseRows(y, "activation");
        if (x.Count == 0)
        {
            return;
        }
        ActivationKernels.Forward(_kernels, _stream, Act(function), View(x), default, rows,
            cols, View(y));
    }

    /// <inheritdoc />
    public void ActivationBackward(ActivationFunction function, Tensor dy, Tensor x, Tensor dx)
    {
        ArgumentNullException.ThrowIfNull(dy);
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(dx);
        RequireSameShape(x, dy);
        RequireSameShape(x, dx);
        (int rows, int cols) = DenseRows(x, "activation backward");
        DenseRows(dy, "activation backward");
        DenseRows(dx, "activation backward");
        if (x.Count == 0)
        {
            return;
        }
        ActivationKernels.Backward(_kernels, _stream, Act(function), View(x), default, View(dy),
            rows, cols, View(dx));
    }

    /// <inheritdoc />
    public void GatedActivation(ActivationFunction function, Tensor gate, Tensor up, Tensor y)
    {
        ArgumentNullException.ThrowIfNull(gate);
        ArgumentNullException.ThrowIfNull(up);
        ArgumentNullException.ThrowIfNull(y);
        RequireSameShape(gate, up);
        RequireSameShape(gate, y);
        (long rows, long cols, long ld) = Rows(gate);
        long upLd = Rows(up).Ld, yLd = Rows(y).Ld;
        SameStride(gate, up, ld, upLd, "gated activation");
        if (gate.Count == 0)
        {
            return;
        }
        ActivationKernels.GluForward(_kernels, _stream, Act(function), View(gate), View(up),
            ToInt(rows, gate, "rows"), ToInt(cols, gate, "width"), ToInt(ld, gate, "row stride"),
            View(y), ToInt(yLd, y, "row stride"));
    }

    /// <inheritdoc />
    public void GatedActivationBackward(ActivationFunction function, Tensor dy, Tensor gate,
        Tensor up, Tensor dGate, Tensor dUp)
    {
        ArgumentNullException.ThrowIfNull(dy);
        ArgumentNullException.ThrowIfNull(gate);
        ArgumentNullException.ThrowIfNull(up);
        ArgumentNullException.ThrowIfNull(dGate);
        ArgumentNullException.ThrowIfNull(dUp);
        foreach (Tensor t in (Tensor[])[up, dy, dGate, dUp])
        {
            RequireSameShape(gate, t);
        }
        (long rows, long cols, long ld) = Rows(gate);
        SameStride(gate, up, ld, Rows(up).Ld, "gated activation backward");
        SameStride(gate, dGate, ld, Rows(dGate).Ld, "gated activation backward");
        SameStride(gate, dUp, ld, Rows(dUp).Ld, "gated activation backward");
        if (dGate.DType != gate.DType || dUp.DType != gate.DType)
        {
            throw new ArgumentException($"gated activation backward: dGate '{dGate.Name}' and "
                + $"dUp '{dUp.Name}' must have gate's dtype {gate.DType} on the CUDA backend");
        }
        if (gate.Count == 0)
        {
            return;
        }
        ActivationKernels.GluBackward(_kernels, _stream, Act(function), View(gate), View(up),
            ToInt(rows, gate, "rows"), ToInt(cols, gate, "width"), ToInt(ld, gate, "row stride"),
            View(dy), ToInt(Rows(dy).Ld, dy, "row stride"), View(dGate), View(dUp));
    }

    private static void SameStride(Tensor a, Tensor b, long lda, long ldb, string op)
    {
        if (lda != ldb)
        {
            throw new ArgumentException($"{op}: '{a.Name}' (row stride {lda}) and '{b.Name}' "
                + $"(row stride {ldb}) must share a row stride on the CUDA backend");
        }
    }

    // ---- positions ------------------------------------------------------------------------

    /// <inheritdoc />
    public void Rotary(Tensor x, Tensor positions, RotaryOptions options, Tensor y,
        bool inverse = false)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(positions);
        ArgumentNullException.ThrowIfNull(y);
        RequireSameShape(x, y);
        if (x.Rank != 3)
        {
            throw new ArgumentException($"rotary: '{x.Name}' must be [tokens, heads, head_dim], "
                + $"is {Tensor.ShapeText(x.Shape)}");
        }
        int tokens = ToInt(x.Shape[0], x, "tokens"), heads = (int)x.Shape[1];
        int dh = (int)x.Shape[2];
        RequireIds(positions, tokens, "rotary");
        if (tokens == 0 || heads == 0)
        {
            return;
        }
        if (HeadDense(x) && HeadDense(y))
        {
            RotaryKernels.Run(_kernels, _stream, View(x), ToInt(x.Strides[0], x, "row stride"),
                View(positions), InverseFrequencies(options), tokens, heads, dh, options.Dims,
                options.Style == RotaryStyle.Interleaved, inverse, View(y),
                ToInt(y.Strides[0], y, "row stride"));
            return;
        }
        // Heads further apart than head_dim (GPT-NeoX's per-head [q k v] layout): rotate a dense
        // copy, then write it back through y's strides.
        DeviceView dense = Dense(x, "rotary");
        RotaryKernels.Run(_kernels, _stream, dense, heads * dh, View(positions),
            InverseFrequencies(options), tokens, heads, dh, options.Dims,
            options.Style == RotaryStyle.Interleaved, inverse, dense, heads * dh);
        ResidualKernels.CopyStrided(_kernels, _stream, dense, Tensor.ContiguousStrides(y.Shape),
            View(y), y.Strides, y.Shape);
    }

    /// <summary>A dense copy of <paramref name="t"/> (its dtype) in scratch.</summary>
    private DeviceView Dense(Tensor t, string purpose)
    {
        DeviceView dense = Scratch(purpose, KernelType(t), t.Count);
        ResidualKernels.CopyStrided(_kernels, _stream, View(t), t.Strides, dense,
            Tensor.ContiguousStrides(t.Shape), t.Shape);
        return dense;
    }

    /// <summary>Whether a [.., heads, head_dim] tensor's heads lie head_dim apart with a
    /// contiguous head_dim (what the kernels index as h·head_dim + d); other layouts go through
    /// a dense copy.</summary>
    private static bool HeadDense(Tensor t)
    {
        int r = t.Rank;
        return (t.Strides[r - 1] == 1 || t.Shape[r - 1] == 1)
            && (t.Strides[r - 2] == t.Shape[r - 1] || t.Shape[r - 2] == 1);
    }

    private DeviceView InverseFrequencies(RotaryOptions o)
    {
        if (!_invFreq.TryGetValue((o.Dims, o.Theta), out DeviceBuffer? b))
        {
            if (o.Dims <= 0 || o.Dims % 2 != 0)
            {
                throw new ArgumentException($"rotary: {o.Dims} rotated dimensions must be even "
                    + "and positive");
            }
            // The CPU backend's F32 path computes the same 1 / θ^(2j/r) in float.
            float[] f = RotaryKernels.InverseFrequencies(o.Dims, (float)o.Theta);
            b = DeviceBuffer.FromHost<float>(_context, KernelDType.F32, f);
            _invFreq[(o.Dims, o.Theta)] = b;
        }
        return b.View;
    }

    // ---- attention ------------------------------------------------------------------------

    /// <inheritdoc />
    public void AttentionForward(Tensor q, Tensor k, Tensor v, AttentionOptions options,
        Tensor output, Tensor logSumExp)
    {
        AttentionShape s = Shape(q, k, v, output, logSumExp, options);
        var writeBack = new List<(DeviceView, Tensor)>();
        FlashAttentionKernels.Forward(_kernels, _stream, s, In(q, "attn-q"), In(k, "attn-k"),
            In(v, "attn-v"), Out(output, "attn-o", writeBack), View(logSumExp),
            KeyLengths(options, s.Batch), TensorCoreAttention);
        WriteBack(writeBack);
    }

    /// <summary>Whether the attention forward takes the tensor-core kernel for bf16 inputs
    /// with 64- or 128-dimensional heads (on by default; the tests and benchmarks switch it
    /// off to compare against the fp32-FMA kernel).</summary>
    public bool TensorCoreAttention { get; set; } = true;

    /// <inheritdoc />
    public void AttentionBackward(Tensor dOutput, Tensor q, Tensor k, Tensor v, Tensor output,
        Tensor logSumExp, AttentionOptions options, Tensor dq, Tensor dk, Tensor dv)
    {
        ArgumentNullException.ThrowIfNull(dOutput);
        ArgumentNullException.ThrowIfNull(dq);
        ArgumentNullException.ThrowIfNull(dk);
        ArgumentNullException.ThrowIfNull(dv);
        AttentionShape s = Shape(q, k, v, output, logSumExp, options);
        RequireSameShape(output, dOutput);
        RequireSameShape(q, dq);
        RequireSameShape(k, dk);
        RequireSameShape(v, dv);
        DeviceView delta = Scratch("attention-delta", KernelDType.F32,
            (long)s.Batch * s.Heads * s.QLen);
        var writeBack = new List<(DeviceView, Tensor)>();
        FlashAttentionKernels.Backward(_kernels, _stream, s, In(q, "attn-q"), In(k, "attn-k"),
            In(v, "attn-v"), In(output, "attn-o"), In(dOutput, "attn-do"), View(logSumExp),
            delta, Out(dq, "attn-dq", writeBack), Out(dk, "attn-dk", writeBack),
            Out(dv, "attn-dv", writeBack), KeyLengths(options, s.Batch));
        WriteBack(writeBack);
    }

    /// <summary>An attention input as the kernels read it: itself, or a dense copy.</summary>
    private AttentionOperand In(Tensor t, string purpose) => HeadDense(t) ? Operand(t)
        : AttentionOperand.Dense(Dense(t, purpose), (int)t.Shape[1], (int)t.Shape[2],
            (int)t.Shape[3]);

    /// <summary>An attention output: itself, or dense scratch copied into it afterwards.
    /// </summary>
    private AttentionOperand Out(Tensor t, string purpose, List<(DeviceView, Tensor)> writeBack)
    {
        if (HeadDense(t))
        {
            return Operand(t);
        }
        DeviceView dense = Scratch(purpose, KernelType(t), t.Count);
        writeBack.Add((dense, t));
        return AttentionOperand.Dense(dense, (int)t.Shape[1], (int)t.Shape[2], (int)t.Shape[3]);
    }

    private void WriteBack(List<(DeviceView Dense, Tensor Target)> writeBack)
    {
        foreach ((DeviceView dense, Tensor t) in writeBack)
        {
            ResidualKernels.CopyStrided(_kernels, _stream, dense,
                Tensor.ContiguousStrides(t.Shape), View(t), t.Strides, t.Shape);
        }
    }

    private static AttentionShape Shape(Tensor q, Tensor k, Tensor v, Tensor o, Tensor lse,
        AttentionOptions options)
    {
        foreach (Tensor t in (Tensor[])[q, k, v, o])
        {
            ArgumentNullException.ThrowIfNull(t);
            if (t.Rank != 4)
            {
                throw new ArgumentException($"attention: '{t.Name}' must be [batch, tokens, "
                    + $"heads, head_dim], is {Tensor.ShapeText(t.Shape)}");
            }
        }
        ArgumentNullException.ThrowIfNull(lse);
        RequireSameShape(k, v);
        RequireSameShape(q, o);
        if (k.Shape[0] != q.Shape[0] || k.Shape[3] != q.Shape[3])
        {
            throw new ArgumentException($"attention: keys {Tensor.ShapeText(k.Shape)} do not "
                + $"match queries {Tensor.ShapeText(q.Shape)}");
        }
        int b = (int)q.Shape[0], tq = ToInt(q.Shape[1], q, "tokens");
        int tk = ToInt(k.Shape[1], k, "tokens");
        if (tq > tk)
        {
            throw new ArgumentException($"attention: {tq} queries but only {tk} keys (queries "
                + "are the last positions of the keys)");
        }
        if (lse.DType != DType.F32 || !lse.IsContiguous
            || !lse.Shape.AsSpan().SequenceEqual([q.Shape[0], q.Shape[2], q.Shape[1]]))
        {
            throw new ArgumentException($"attention: '{lse.Name}' must be a contiguous F32 "
                + $"[{q.Shape[0]}, {q.Shape[2]}, {q.Shape[1]}]");
        }
        return new AttentionShape(b, tq, tk, tk - tq, (int)q.Shape[2], (int)k.Shape[2],
            (int)q.Shape[3], options.Causal ? options.Window : 0, options.Scale, options.Causal);
    }

    private static AttentionOperand Operand(Tensor t) =>
        new(View(t), t.Shape[0] > 1 ? t.Strides[0] : 0, ToInt(t.Shape[1] > 1 ? t.Strides[1]
            : t.Shape[2] * t.Shape[3], t, "row stride"));

    private static DeviceView KeyLengths(AttentionOptions o, int batch)
    {
        if (o.KeyLengths is null)
        {
            return default;
        }
        RequireIds(o.KeyLengths, batch, "attention key lengths");
        return View(o.KeyLengths);
    }

    // ---- losses -----------------------------------------------------------------------------

    /// <inheritdoc />
    public void LmHeadCrossEntropy(Tensor hidden, Tensor weight, Tensor? bias, Tensor targets,
        Tensor losses, Tensor logSumExp)
    {
        var p = LossOperands(hidden, weight, bias, targets, "lm head cross-entropy");
        RowVector(losses, p.Rows, "lm head cross-entropy");
        RowVector(logSumExp, p.Rows, "lm head cross-entropy");
        CrossEntropyWorkspace ws = LossWorkspace(p.Rows, p.Vocab, p.Hidden.DType, false);
        LmHeadCrossEntropyKernels(p, ws, losses, logSumExp);
    }

    private void LmHeadCrossEntropyKernels(LossParts p, CrossEntropyWorkspace ws, Tensor losses,
        Tensor logSumExp) =>
        Kernels.Launch.LmHeadCrossEntropy.Forward(_kernels, _blas, p.Hidden, p.Weight, p.Bias,
            p.Rows, p.Width, p.Vocab, p.Targets, View(losses), View(logSumExp), ws);

    /// <inheritdoc />
    public void LmHeadCrossEntropyBackward(Tensor hidden, Tensor weight, Tensor? bias,
        Tensor targets, Tensor logSumExp, Tensor dLosses, Tensor dHidden, Tensor? dWeight,
        Tensor? dBias)
    {
        var p = LossOperands(hidden, weight, bias, targets, "lm head cross-entropy backward");
        RowVector(logSumExp, p.Rows, "lm head cross-entropy backward");
        RowVector(dLosses, p.Rows, "lm head cross-entropy backward");
        ArgumentNullException.ThrowIfNull(dHidden);
        RequireSameShape(hidden, dHidden);
        DenseRows(dHidden, "lm head cross-entropy backward");
        if (dWeight is not null)
        {
            RequireSameShape(weight, dWeight);
            DenseRows(dWeight, "lm head cross-entropy backward");
        }
        CrossEntropyWorkspace ws = LossWorkspace(p.Rows, p.Vocab, p.Hidden.DType, true);
        Kernels.Launch.LmHeadCrossEntropy.Backward(_kernels, _blas, p.Hidden, p.Weight, p.Bias,
            p.Rows, p.Width, p.Vocab, p.Targets, View(logSumExp), View(dLosses), View(dHidden),
            ViewOrNone(dWeight), ViewOrNone(dBias), ws);
    }

    private readonly record struct LossParts(DeviceView Hidden, DeviceView Weight,
        DeviceView Bias, DeviceView Targets, int Rows, int Width, int Vocab);

    private LossParts LossOperands(Tensor hidden, Tensor weight, Tensor? bias, Tensor targets,
        string op)
    {
        ArgumentNullException.ThrowIfNull(hidden);
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(targets);
        (int rows, int width) = DenseRows(hidden, op);
        (int vocab, int wWidth) = DenseRows(weight, op);
        if (wWidth != width)
        {
            throw new ArgumentException($"{op}: hidden '{hidden.Name}' rows of {width} but "
                + $"weight '{weight.Name}' rows of {wWidth}");
        }
        RequireIds(targets, rows, op);
        if (bias is not null && (bias.Count != vocab || !bias.IsContiguous))
        {
            throw new ArgumentException($"{op}: bias '{bias.Name}' must be a contiguous [{vocab}]");
        }
        DeviceView h = View(hidden), w = View(weight);
        (h, _) = MatchOperand(h, w.DType, rows, width, width, "loss-hidden");
        (w, _) = MatchOperand(w, h.DType, vocab, width, width, "loss-weight");
        return new LossParts(h, w, ViewOrNone(bias), View(targets), rows, width, vocab);
    }

    private static void RowVector(Tensor t, int rows, string op)
    {
        if (t.DType != DType.F32 || !t.IsContiguous || t.Count != rows)
        {
            throw new ArgumentException($"{op}: '{t.Name}' must be a contiguous F32 [{rows}], is "
                + $"{t.DType} {Tensor.ShapeText(t.Shape)}");
        }
    }

    private CrossEntropyWorkspace LossWorkspace(int rows, int vocab, KernelDType weightType,
        bool backward)
    {
        int chunk = Kernels.Launch.LmHeadCrossEntropy.ChunkColumns(rows, vocab, LossChunkBytes);
        long n = (long)rows * chunk;
        DeviceView logits = Scratch("loss-logits", KernelDType.F32, n);
        DeviceView stats = Scratch("loss-stats", KernelDType.F32, 3L * rows);
        DeviceView dlogits = !backward ? default
            : weightType == KernelDType.F32 ? logits
            : Scratch("loss-dlogits", weightType, n);
        return new CrossEntropyWorkspace(logits, stats, dlogits, chunk);
    }

    // ---- elementwise ------------------------------------------------------------------------

    /// <inheritdoc />
    public void Add(Tensor a, Tensor b, Tensor y)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        ArgumentNullException.ThrowIfNull(y);
        RequireSameShape(a, b);
        RequireSameShape(a, y);
        Dense(a, "add", b, y);
        if (a.Count > 0)
        {
            ResidualKernels.Axpby(_kernels, _stream, View(a), 1f, View(b), 1f, a.Count, View(y));
        }
    }

    /// <inheritdoc />
    public void AddScaled(Tensor x, float alpha, Tensor y)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(y);
        RequireSameShape(x, y);
        Dense(x, "add scaled", y);
        if (x.Count > 0)
        {
            ResidualKernels.Axpby(_kernels, _stream, View(x), alpha, View(y), 1f, x.Count,
                View(y));
        }
    }

    /// <inheritdoc />
    public void Scale(Tensor x, float alpha, Tensor y)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(y);
        RequireSameShape(x, y);
        Dense(x, "scale", y);
        if (x.Count > 0)
        {
            ResidualKernels.Axpby(_kernels, _stream, View(x), alpha, default, 0f, x.Count,
                View(y));
        }
    }

    private static void Dense(Tensor first, string op, params Tensor[] rest)
    {
        foreach (Tensor t in (Tensor[])[first, .. rest])
        {
            if (!t.IsContiguous)
            {
                throw new ArgumentException($"{op}: tensor '{t.Name}' must be contiguous on the "
                    + "CUDA backend");
            }
        }
    }
}
