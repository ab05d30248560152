using ZeTT.Ops.Cpu;
using ZeTT.Ops.Cuda;

namespace ZeTT.Ops.Tests;

/// <summary>
/// Every op of the op layer, forward and backward, on one backend against the CPU backend's
/// float64 path (the oracle; its backwards are checked by finite differences in
/// <see cref="GradientTests"/>). The same class runs on the CPU backend (F32 against F64) and
/// on the CUDA backend (F32 and BF16 against F64; skipped, and reported as skipped, where there
/// is no CUDA device). Sizes are awkward on purpose: not multiples of a warp, a vector, a tile
/// (64 queries, 32/64 keys) or a loss chunk.
/// <para>Tolerance |got − ref| ≤ atol + rtol·|ref|:</para>
/// <list type="bullet">
/// <item>F32, element-wise ops: 1e-5 + 1e-5 — one fp32 rounding of a float32 computation
/// against float64 (and fp32 erf/tanh/exp in the activations, within a few ulp).</item>
/// <item>F32, reductions (GEMM with k ≤ 100, norms, softmax, attention, the loss): 2e-4 +
/// 2e-4 — fp32 sums of up to a few hundred terms of size ~1 in another order than the
/// reference (each adds ≲ 6e-8 relative), and fp32 exp/log of scores up to ~10.</item>
/// <item>BF16 outputs: rtol 2⁻⁷ (one bf16 rounding is at most 2⁻⁸ relative; a value near a
/// rounding tie may land on either side after an fp32 computation that differs in its last
/// bits) plus the F32 reduction atol. Inputs are rounded to bf16 before the reference sees
/// them, so only the computation and the output rounding differ.</item>
/// </list>
/// </summary>
public abstract class BackendOpTests : IDisposable
{
    private const double Atol = 1e-5, Rtol = 1e-5, SumAtol = 2e-4, SumRtol = 2e-4;
    private const double Bf16Rtol = 1.0 / 128;

    private readonly CpuBackend _ref = new();
    private readonly List<Tensor> _owned = [];

    /// <summary>The backend under test (skips the test when it cannot run here).</summary>
    protected abstract IOpBackend Ops { get; }

    /// <summary>Whether activations may be BF16 on this backend.</summary>
    protected abstract bool Bf16Activations { get; }

    // ---- data ---------------------------------------------------------------------------------

    private static float[] Random(int seed, long n, double scale = 1)
    {
        var rng = new Random(seed);
        var a = new float[n];
        for (long i = 0; i < n; i++)
        {
            a[i] = (float)((rng.NextDouble() * 2 - 1) * scale);
        }
        return a;
    }

    private static float[] RoundTo(DType t, float[] a) =>
        t == DType.BF16 ? [.. a.Select(BFloat16.Round)] : a;

    /// <summary>The values on the backend under test in <paramref name="t"/>.</summary>
    private Tensor Up(float[] data, DType t, params long[] shape)
    {
        Tensor host = Tensor.Host(t, shape);
        if (t == DType.BF16)
        {
            Span<ushort> s = host.AsSpan<ushort>();
            for (int i = 0; i < data.Length; i++)
            {
                s[i] = BFloat16.FromFloat(data[i]);
            }
        }
        else
        {
            data.CopyTo(host.AsSpan<float>());
        }
        return Keep(Ops.Upload(host), host);
    }

    private Tensor UpInts(int[] data) => Keep(Ops.Upload(Tensor.FromInts(data)), null);

    private Tensor Out(DType t, params long[] shape) => Keep(Ops.Zeros(t, shape), null);

    private Tensor Keep(Tensor device, Tensor? host)
    {
        _owned.Add(device);
        if (host is not null && !ReferenceEquals(device, host))
        {
            host.Dispose();
        }
        return device;
    }

    /// <summary>The oracle's F64 copy of values (already rounded as the backend holds them).
    /// </summary>
    private static Tensor R(float[] data, params long[] shape) =>
        Tensor.FromDoubles([.. data.Select(x => (double)x)], shape);

    private Tensor RZ(params long[] shape) => _ref.Zeros(DType.F64, shape);

    private double[] Down(Tensor t)
    {
        using Tensor host = Tensor.Host(DType.F64, t.Shape);
        Ops.Download(t, host);
        return host.ToDoubles();
    }

    private void Bf16Guard(DType t)
    {
        if (t == DType.BF16 && !Bf16Activations)
        {
            Assert.Skip($"the {Ops.Name} backend's activations are F32 (and F64)");
        }
    }

    private static void Close(Tensor expected, double[] actual, double atol, double rtol,
        string what)
    {
        double[] e = expected.ToDoubles();
        Assert.Equal(e.Length, actual.Length);
        int worst = -1;
        double worstExcess = 0, maxErr = 0;
        for (int i = 0; i < e.Length; i++)
        {
            double err = Math.Abs(actual[i] - e[i]);
            maxErr = Math.Max(maxErr, err);
            double excess = err - (atol + rtol * Math.Abs(e[i]));
            if (excess > worstExcess || double.IsNaN(err))
            {
                worstExcess = double.IsNaN(err) ? double.PositiveInfinity : excess;
                worst = i;
            }
        }
        Assert.True(worst < 0, worst < 0 ? "" : $"{what}: element {worst} is {actual[worst]}, "
            + $"expected {e[worst]} (atol {atol}, rtol {rtol}; max abs error {maxErr:E2} over "
            + $"{e.Length} elements)");
    }

    private void Close(Tensor expected, Tensor actual, bool sum, string what)
    {
        double atol = sum ? SumAtol : Atol, rtol = sum ? SumRtol : Rtol;
        if (actual.DType == DType.BF16)
        {
            atol = Math.Max(atol, SumAtol);
            rtol = Bf16Rtol;
        }
        Close(expected, Down(actual), atol, rtol, what);
    }

    // ---- embedding ----------------------------------------------------------------------------

    [Theory]
    [InlineData(DType.F32, 1f)]
    [InlineData(DType.BF16, 8f)]
    public void Embedding_gathers_and_scatter_adds_repeated_ids(DType dtype, float scale)
    {
        const int V = 37, D = 45;
        int[] ids = [3, 0, 36, 3, 17, 3, 0];
        float[] table = RoundTo(dtype, Random(1, V * D));
        float[] dout = Random(2, ids.Length * D);
        Tensor y = Out(DType.F32, ids.Length, D);
        Ops.EmbeddingForward(Up(table, dtype, V, D), UpInts(ids), y, scale);
        using Tensor ry = RZ(ids.Length, D);
        _ref.EmbeddingForward(R(table, V, D), Tensor.FromInts(ids), ry, scale);
        Close(ry, y, false, "embedding");

        Tensor dt = Out(DType.F32, V, D);
        Ops.EmbeddingBackward(Up(dout, DType.F32, ids.Length, D), UpInts(ids), dt, scale);
        using Tensor rdt = RZ(V, D);
        _ref.EmbeddingBackward(R(dout, ids.Length, D), Tensor.FromInts(ids), rdt, scale);
        Close(rdt, dt, false, "embedding backward");
    }

    // ---- matrix products ------------------------------------------------------------------

    [Theory]
    [InlineData(false, false, DType.F32)]
    [InlineData(true, false, DType.F32)]
    [InlineData(false, true, DType.F32)]
    [InlineData(true, true, DType.F32)]
    [InlineData(false, true, DType.BF16)]
    public void MatMul_with_either_operand_transposed(bool transA, bool transB, DType dtype)
    {
        const int M = 33, N = 19, K = 70;
        float[] a = RoundTo(dtype, Random(3, M * K)), b = RoundTo(dtype, Random(4, K * N));
        float[] c0 = Random(5, M * N);
        long[] sa = transA ? [K, M] : [M, K], sb = transB ? [N, K] : [K, N];
        Tensor c = Up(c0, DType.F32, M, N);
        Ops.MatMul(Up(a, dtype, sa), transA, Up(b, dtype, sb), transB, c, 1.5f, 0.5f);
        using Tensor rc = R(c0, M, N);
        _ref.MatMul(R(a, sa), transA, R(b, sb), transB, rc, 1.5f, 0.5f);
        Close(rc, c, true, "matmul");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Linear_and_its_backward(bool weightInOut)
    {
        const int N = 21, In = 50, Out_ = 13;
        float[] x = Random(6, N * In), w = Random(7, In * Out_), b = Random(8, Out_);
        float[] dy = Random(9, N * Out_), dw0 = Random(10, In * Out_), db0 = Random(11, Out_);
        long[] ws = weightInOut ? [In, Out_] : [Out_, In];
        Tensor y = Out(DType.F32, N, Out_);
        Tensor tx = Up(x, DType.F32, N, In), tw = Up(w, DType.F32, ws);
        Ops.Linear(tx, tw, Up(b, DType.F32, Out_), y, weightInOut);
        using Tensor ry = RZ(N, Out_);
        _ref.Linear(R(x, N, In), R(w, ws), R(b, Out_), ry, weightInOut);
        Close(ry, y, true, "linear");

        Tensor dx = Out(DType.F32, N, In), dw = Up(dw0, DType.F32, ws);
        Tensor db = Up(db0, DType.F32, Out_);
        Ops.LinearBackward(Up(dy, DType.F32, N, Out_), tx, tw, weightInOut, dx, dw, db);
        using Tensor rdx = RZ(N, In), rdw = R(dw0, ws), rdb = R(db0, Out_);
        ((IOpBackend)_ref).LinearBackward(R(dy, N, Out_), R(x, N, In), R(w, ws), weightInOut,
            rdx, rdw, rdb);
        Close(rdx, dx, true, "linear dx");
        Close(rdw, dw, true, "linear dW (accumulated)");
        Close(rdb, db, true, "linear db (accumulated)");
    }

    /// <summary>The ways a backend may fuse a Linear (on CUDA: cuBLASLt bias / ReLU / GELU-tanh
    /// epilogues, with <see cref="SetFusedLinear"/> false the unfused GEMM + bias + activation
    /// path) against the F64 reference: F32 and BF16 activations and weights, a bias of the
    /// output's dtype or F32, and an activation the epilogues lack (GELU erf, SiLU: those fall
    /// back). Sizes are not multiples of 8, so cuBLASLt's alignment-sensitive kernels see tails.
    /// </summary>
    [Theory]
    [InlineData(DType.F32, DType.F32, null, true)]
    [InlineData(DType.F32, DType.F32, ActivationFunction.GeluTanh, true)]
    [InlineData(DType.F32, DType.F32, ActivationFunction.Relu, true)]
    [InlineData(DType.F32, DType.F32, ActivationFunction.GeluErf, true)]
    [InlineData(DType.F32, null, ActivationFunction.GeluTanh, true)]
    [InlineData(DType.F32, DType.F32, ActivationFunction.GeluTanh, false)]
    [InlineData(DType.BF16, DType.BF16, null, true)]
    [InlineData(DType.BF16, DType.F32, null, true)]
    [InlineData(DType.BF16, DType.BF16, ActivationFunction.GeluTanh, true)]
    [InlineData(DType.BF16, DType.F32, ActivationFunction.Silu, true)]
    [InlineData(DType.BF16, DType.F32, ActivationFunction.GeluTanh, true)]
    [InlineData(DType.BF16, DType.F32, ActivationFunction.GeluErf, true)]
    [InlineData(DType.BF16, DType.BF16, ActivationFunction.GeluTanh, false)]
    public void Linear_with_bias_and_activation(DType dtype, DType? biasType,
        ActivationFunction? activation, bool fused)
    {
        Bf16Guard(dtype);
        const int N = 37, In = 90, Out_ = 45;
        float[] x = RoundTo(dtype, Random(40, N * In)), w = RoundTo(dtype, Random(41, Out_ * In));
        float[] b = RoundTo(biasType ?? DType.F32, Random(42, Out_));
        Tensor y = Out(dtype, N, Out_);
        SetFusedLinear(fused);
        try
        {
            Ops.Linear(Up(x, dtype, N, In), Up(w, dtype, Out_, In),
                biasType is { } bt ? Up(b, bt, Out_) : null, y, false, activation);
        }
        finally
        {
            SetFusedLinear(true);
        }
        using Tensor ry = RZ(N, Out_);
        using Tensor rb = R(b, Out_);
        _ref.Linear(R(x, N, In), R(w, Out_, In), biasType is null ? null : rb, ry, false,
            activation);
        Close(ry, y, true, $"linear {dtype} bias {biasType?.ToString() ?? "none"} "
            + $"{activation?.ToString() ?? "no activation"} fused {fused}");
    }

    /// <summary>Turns a backend's fused Linear path on or off (no-op where it has none).
    /// </summary>
    protected virtual void SetFusedLinear(bool on)
    {
    }

    /// <summary>Turns a backend's tensor-core attention forward on or off; false where it has
    /// none.</summary>
    protected virtual bool SetTensorCoreAttention(bool on) => false;

    // ---- transfers --------------------------------------------------------------------------

    /// <summary>CopyFromHost and BeginDownload keep queue order without waiting: an op queued
    /// before a CopyFromHost reads the old values, one queued after it the new ones; a download
    /// begun after an op sees its result even when later ops (and a later CopyFromHost) follow
    /// before it is waited for; the host tensor may be reused as soon as CopyFromHost returns.
    /// Non-dense and BF16 sources download through Download's conversions.</summary>
    [Fact]
    public void Host_copies_and_begun_downloads_keep_queue_order()
    {
        const int N = 1000;
        float[] a = Random(60, N), b = Random(61, N);
        Tensor x = Out(DType.F32, N), y = Out(DType.F32, N), z = Out(DType.F32, N);
        using Tensor host = Tensor.FromFloats(a, N);
        Ops.CopyFromHost(host, x);
        b.CopyTo(host.AsSpan<float>()); // reused at once
        Ops.Scale(x, 2f, y);
        Ops.CopyFromHost(host, x);
        using PendingDownload dy = Ops.BeginDownload(y);
        Ops.Scale(x, 3f, z);
        using PendingDownload dz = Ops.BeginDownload(z);
        using PendingDownload dWindow = Ops.BeginDownload(z.View(10, 100).Slice(1, 0, 7));
        var gotY = new float[N];
        var gotZ = new float[N];
        var gotWindow = new float[70];
        dz.Wait(gotZ);
        dy.Wait(gotY);
        dWindow.Wait(gotWindow);
        Assert.Equal(a.Select(v => 2f * v), gotY);
        Assert.Equal(b.Select(v => 3f * v), gotZ);
        Assert.Equal(Enumerable.Range(0, 70).Select(i => 3f * b[(i / 7 * 100) + (i % 7)]),
            gotWindow);
        Assert.Equal([10L, 7L], dWindow.Shape);
        Assert.Throws<InvalidOperationException>(() => dy.Wait(gotY));
        using PendingDownload again = Ops.BeginDownload(y);
        var e = Assert.Throws<ArgumentException>(() => again.Wait(new float[N - 1]));
        Assert.Contains($"the download holds {N} values, the destination {N - 1}", e.Message,
            StringComparison.Ordinal);
        using Tensor ints = Tensor.FromInts([1, 2, 3]);
        Assert.Throws<ArgumentException>(() => Ops.CopyFromHost(ints, Out(DType.F32, 3)));
    }

    // ---- normalisation --------------------------------------------------------------------

    [Theory]
    [InlineData(DType.F32, 1)]
    [InlineData(DType.F32, 70)]
    [InlineData(DType.BF16, 70)]
    public void LayerNorm_forward_and_backward(DType dtype, int rows)
    {
        Bf16Guard(dtype);
        const int W = 131;
        float[] x = RoundTo(dtype, Random(12, rows * W, 3)), w = Random(13, W), b = Random(14, W);
        float[] dy = RoundTo(dtype, Random(15, rows * W));
        Tensor tx = Up(x, dtype, rows, W), tw = Up(w, DType.F32, W);
        Tensor y = Out(dtype, rows, W), mean = Out(DType.F32, rows), rstd = Out(DType.F32, rows);
        Ops.LayerNormForward(tx, tw, Up(b, DType.F32, W), 1e-5f, y, mean, rstd);
        using Tensor ry = RZ(rows, W), rm = RZ(rows), rs = RZ(rows);
        _ref.LayerNormForward(R(x, rows, W), R(w, W), R(b, W), 1e-5f, ry, rm, rs);
        Close(ry, y, true, "layer norm");
        Close(rm, mean, true, "layer norm mean");
        Close(rs, rstd, true, "layer norm rstd");

        Tensor dx = Out(dtype, rows, W), dw = Out(DType.F32, W), db = Out(DType.F32, W);
        Ops.LayerNormBackward(Up(dy, dtype, rows, W), tx, tw, mean, rstd, dx, dw, db);
        using Tensor rdx = RZ(rows, W), rdw = RZ(W), rdb = RZ(W);
        _ref.LayerNormBackward(R(dy, rows, W), R(x, rows, W), R(w, W), rm, rs, rdx, rdw, rdb);
        Close(rdx, dx, true, "layer norm dx");
        Close(rdw, dw, true, "layer norm dW");
        Close(rdb, db, true, "layer norm db");
    }

    /// <summary>The residual connection fused into the norm: y = LN(x + r), into a third
    /// tensor, into r itself and into x itself (the graph's post-LN blocks write h = LN(h + r)).
    /// </summary>
    [Theory]
    [InlineData(DType.F32, 0)]
    [InlineData(DType.F32, 1)]
    [InlineData(DType.F32, 2)]
    [InlineData(DType.BF16, 0)]
    [InlineData(DType.BF16, 1)]
    public void LayerNorm_with_a_fused_residual_is_the_norm_of_the_sum(DType dtype, int into)
    {
        Bf16Guard(dtype);
        const int Rows = 37, W = 300;
        float[] x = RoundTo(dtype, Random(40, Rows * W, 2)), r = RoundTo(dtype, Random(41, Rows * W));
        float[] w = Random(42, W), b = Random(43, W);
        Tensor tx = Up(x, dtype, Rows, W), tr = Up(r, dtype, Rows, W);
        Tensor y = into switch { 0 => Out(dtype, Rows, W), 1 => tr, _ => tx };
        Tensor mean = Out(DType.F32, Rows), rstd = Out(DType.F32, Rows);
        Ops.LayerNormForward(tx, Up(w, DType.F32, W), Up(b, DType.F32, W), 1e-5f, y, mean, rstd,
            residual: tr);
        double[] sum = [.. x.Zip(r, (a, c) => (double)a + c)];
        using Tensor ry = RZ(Rows, W), rm = RZ(Rows), rs = RZ(Rows);
        _ref.LayerNormForward(Tensor.FromDoubles(sum, [Rows, W]), R(w, W), R(b, W), 1e-5f, ry, rm,
            rs);
        Close(ry, y, true, "layer norm of x + residual");
        Close(rm, mean, true, "layer norm of x + residual: mean");
        Close(rs, rstd, true, "layer norm of x + residual: rstd");
    }

    [Theory]
    [InlineData(DType.F32, false)]
    [InlineData(DType.F32, true)]
    [InlineData(DType.BF16, true)]
    public void RmsNorm_forward_and_backward(DType dtype, bool unitOffset)
    {
        Bf16Guard(dtype);
        const int N = 67, W = 200;
        float[] x = RoundTo(dtype, Random(16, N * W, 2)), w = RoundTo(dtype, Random(17, W));
        float[] dy = RoundTo(dtype, Random(18, N * W));
        Tensor tx = Up(x, dtype, N, W), tw = Up(w, dtype, W);
        Tensor y = Out(dtype, N, W), rstd = Out(DType.F32, N);
        Ops.RmsNormForward(tx, tw, 1e-6f, unitOffset, y, rstd);
        using Tensor ry = RZ(N, W), rs = RZ(N);
        _ref.RmsNormForward(R(x, N, W), R(w, W), 1e-6f, unitOffset, ry, rs);
        Close(ry, y, true, "rms norm");
        Close(rs, rstd, true, "rms norm rstd");

        Tensor dx = Out(dtype, N, W), dw = Out(DType.F32, W);
        Ops.RmsNormBackward(Up(dy, dtype, N, W), tx, tw, unitOffset, rstd, dx, dw);
        using Tensor rdx = RZ(N, W), rdw = RZ(W);
        _ref.RmsNormBackward(R(dy, N, W), R(x, N, W), R(w, W), unitOffset, rs, rdx, rdw);
        Close(rdx, dx, true, "rms norm dx");
        Close(rdw, dw, true, "rms norm dW");
    }

    // ---- activations ----------------------------------------------------------------------

    [Theory]
    [InlineData(ActivationFunction.GeluErf)]
    [InlineData(ActivationFunction.GeluTanh)]
    [InlineData(ActivationFunction.Silu)]
    [InlineData(ActivationFunction.Relu)]
    public void Activation_forward_and_backward(ActivationFunction f)
    {
        const int N = 9, W = 77;
        float[] x = Random(19, N * W, 4), dy = Random(20, N * W);
        Tensor tx = Up(x, DType.F32, N, W), y = Out(DType.F32, N, W);
        Ops.Activation(f, tx, y);
        using Tensor ry = RZ(N, W);
        _ref.Activation(f, R(x, N, W), ry);
        Close(ry, y, false, $"{f}");

        Tensor dx = Out(DType.F32, N, W);
        Ops.ActivationBackward(f, Up(dy, DType.F32, N, W), tx, dx);
        using Tensor rdx = RZ(N, W);
        _ref.ActivationBackward(f, R(dy, N, W), R(x, N, W), rdx);
        Close(rdx, dx, false, $"{f} backward");
    }

    [Theory]
    [InlineData(ActivationFunction.Silu)]
    [InlineData(ActivationFunction.GeluTanh)]
    public void Gated_activation_reads_a_fused_projection(ActivationFunction f)
    {
        const int N = 11, I = 93;
        float[] fused = Random(21, N * 2 * I, 3), dy = Random(22, N * I);
        Tensor tf = Up(fused, DType.F32, N, 2 * I);
        Tensor gate = tf.Slice(1, 0, I), up = tf.Slice(1, I, I);
        Tensor y = Out(DType.F32, N, I);
        Ops.GatedActivation(f, gate, up, y);
        using Tensor rf = R(fused, N, 2 * I), ry = RZ(N, I);
        Tensor rgate = rf.Slice(1, 0, I), rup = rf.Slice(1, I, I);
        _ref.GatedActivation(f, rgate, rup, ry);
        Close(ry, y, false, $"gated {f}");

        Tensor dfused = Out(DType.F32, N, 2 * I);
        Ops.GatedActivationBackward(f, Up(dy, DType.F32, N, I), gate, up,
            dfused.Slice(1, 0, I), dfused.Slice(1, I, I));
        using Tensor rdf = RZ(N, 2 * I);
        _ref.GatedActivationBackward(f, R(dy, N, I), rgate, rup, rdf.Slice(1, 0, I),
            rdf.Slice(1, I, I));
        Close(rdf, dfused, false, $"gated {f} backward");
    }

    // ---- rotary ---------------------------------------------------------------------------

    [Theory]
    [InlineData(RotaryStyle.HalfSplit, 64)]
    [InlineData(RotaryStyle.HalfSplit, 16)]
    [InlineData(RotaryStyle.Interleaved, 64)]
    public void Rotary_turns_and_turns_back(RotaryStyle style, int dims)
    {
        const int T = 13, H = 3, Dh = 64;
        float[] x = Random(23, T * H * Dh);
        int[] pos = [.. Enumerable.Range(0, T).Select(i => 7 * i + 1)];
        var o = new RotaryOptions(style, dims, 10000);
        Tensor tx = Up(x, DType.F32, T, H, Dh), y = Out(DType.F32, T, H, Dh);
        Ops.Rotary(tx, UpInts(pos), o, y);
        using Tensor ry = RZ(T, H, Dh);
        _ref.Rotary(R(x, T, H, Dh), Tensor.FromInts(pos), o, ry);
        Close(ry, y, false, "rotary");

        Tensor back = Out(DType.F32, T, H, Dh);
        Ops.Rotary(y, UpInts(pos), o, back, inverse: true);
        Close(R(x, T, H, Dh), back, false, "rotary inverse of rotary");
    }

    // ---- attention --------------------------------------------------------------------------

    public static TheoryData<int, int, int, int, int, int, bool, int, bool, DType> AttentionCases
        => new()
        {
            // batch, Tq, Tk, Hq, Hkv, Dh, causal, window, key lengths, dtype
            { 1, 77, 77, 2, 2, 64, true, 0, false, DType.F32 },
            { 2, 130, 130, 4, 2, 32, true, 0, false, DType.F32 },
            { 1, 100, 100, 2, 1, 80, true, 37, false, DType.F32 },
            { 1, 5, 70, 3, 3, 16, true, 0, false, DType.F32 },
            { 3, 9, 9, 2, 2, 24, false, 0, true, DType.F32 },
            { 1, 150, 150, 4, 4, 128, true, 0, false, DType.F32 },
            { 2, 90, 90, 4, 2, 64, true, 0, false, DType.BF16 },
            // bf16 at head sizes 64 and 128: the tensor-core forward on CUDA (GQA, a KV-cache
            // offset, a window, key lengths with a fully masked sequence, one query).
            { 1, 5, 150, 2, 1, 128, true, 0, false, DType.BF16 },
            { 1, 140, 140, 2, 2, 64, true, 40, false, DType.BF16 },
            { 3, 9, 9, 2, 2, 64, false, 0, true, DType.BF16 },
            { 2, 130, 130, 4, 2, 128, true, 0, false, DType.BF16 },
            { 1, 1, 77, 2, 2, 128, true, 0, false, DType.BF16 },
            // Narrow heads (the CPU's transposed-key-block path) across key blocks of 128 and
            // query blocks of 16: stories260K's 8 dimensions, a window, Tq < Tk.
            { 1, 300, 300, 8, 4, 8, true, 0, false, DType.F32 },
            { 2, 37, 261, 2, 1, 8, true, 150, false, DType.F32 },
        };

    [Theory]
    [MemberData(nameof(AttentionCases))]
    public void Attention_forward_and_backward(int b, int tq, int tk, int hq, int hkv, int dh,
        bool causal, int window, bool keyLengths, DType dtype)
    {
        Bf16Guard(dtype);
        float[] q = RoundTo(dtype, Random(24, (long)b * tq * hq * dh, 2));
        float[] k = RoundTo(dtype, Random(25, (long)b * tk * hkv * dh, 2));
        float[] v = RoundTo(dtype, Random(26, (long)b * tk * hkv * dh));
        float[] dout = RoundTo(dtype, Random(27, (long)b * tq * hq * dh));
        int[] lens = [.. Enumerable.Range(0, b).Select(i => i == 1 ? 0 : tk - 2 * i)];
        long[] qs = [b, tq, hq, dh], ks = [b, tk, hkv, dh];
        float scale = 1f / MathF.Sqrt(dh);
        var o = new AttentionOptions(scale, causal, window, keyLengths ? UpInts(lens) : null);
        var ro = new AttentionOptions(scale, causal, window,
            keyLengths ? Tensor.FromInts(lens) : null);
        Tensor tq_ = Up(q, dtype, qs), tk_ = Up(k, dtype, ks), tv = Up(v, dtype, ks);
        Tensor y = Out(dtype, qs), lse = Out(DType.F32, b, hq, tq);
        Ops.AttentionForward(tq_, tk_, tv, o, y, lse);
        using Tensor rq = R(q, qs), rk = R(k, ks), rv = R(v, ks), ry = RZ(qs), rl = RZ(b, hq, tq);
        _ref.AttentionForward(rq, rk, rv, ro, ry, rl);
        if (dtype == DType.BF16)
        {
            // The tensor-core forward rounds the probabilities to bf16 for P·V (as
            // FlashAttention-2): each weight carries ≤ 2⁻⁹ relative error, so the output moves by
            // ≤ 2⁻⁹·Σp·|v| ≤ 2⁻⁹·max|v| (|v| ≤ 1 here), twice that for margin, plus the output's
            // own rounding (rtol 2⁻⁷).
            Close(ry, Down(y), 1.0 / 256, Bf16Rtol, "attention output (bf16)");
            if (SetTensorCoreAttention(false))
            {
                // The fp32-FMA kernel on the same bf16 inputs keeps fp32 probabilities.
                try
                {
                    Tensor yFma = Out(dtype, qs), lseFma = Out(DType.F32, b, hq, tq);
                    Ops.AttentionForward(tq_, tk_, tv, o, yFma, lseFma);
                    Close(ry, yFma, true, "attention output (fp32-FMA kernel)");
                }
                finally
                {
                    SetTensorCoreAttention(true);
                }
            }
        }
        else
        {
            Close(ry, y, true, "attention output");
        }
        // A query with no visible key has lse −∞ on both sides; compare the rest.
        double[] lg = Down(lse), le = rl.ToDoubles();
        for (int i = 0; i < le.Length; i++)
        {
            if (double.IsNegativeInfinity(le[i]))
            {
                Assert.True(double.IsNegativeInfinity(lg[i]), $"lse[{i}] = {lg[i]}, expected −∞");
                lg[i] = le[i] = 0;
            }
        }
        using Tensor rlFinite = Tensor.FromDoubles(le, b, hq, tq);
        Close(rlFinite, lg, SumAtol, SumRtol, "attention lse");

        Tensor dq = Out(dtype, qs), dk = Out(dtype, ks), dv = Out(dtype, ks);
        Ops.AttentionBackward(Up(dout, dtype, qs), tq_, tk_, tv, y, lse, o, dq, dk, dv);
        using Tensor rdq = RZ(qs), rdk = RZ(ks), rdv = RZ(ks);
        _ref.AttentionBackward(R(dout, qs), rq, rk, rv, ry, rl, ro, rdq, rdk, rdv);
        // The backward reads the forward's output (bf16-rounded on a bf16 run, exact in the
        // reference): delta = rowsum(dO ∘ O) inherits one bf16 rounding, hence the looser atol.
        double gradAtol = dtype == DType.BF16 ? 2e-2 : SumAtol;
        double gradRtol = dtype == DType.BF16 ? 2 * Bf16Rtol : SumRtol;
        Close(rdq, Down(dq), gradAtol, gradRtol, "attention dq");
        Close(rdk, Down(dk), gradAtol, gradRtol, "attention dk");
        Close(rdv, Down(dv), gradAtol, gradRtol, "attention dv");
    }

    [Fact]
    public void Attention_reads_q_k_v_out_of_one_fused_projection()
    {
        const int T = 70, H = 2, Dh = 32;
        float[] qkv = Random(28, T * 3 * H * Dh, 2), dout = Random(29, T * H * Dh);
        Tensor fused = Up(qkv, DType.F32, 1, T, 3 * H, Dh);
        Tensor q = fused.Slice(2, 0, H), k = fused.Slice(2, H, H), v = fused.Slice(2, 2 * H, H);
        var o = new AttentionOptions(1f / MathF.Sqrt(Dh), true);
        Tensor y = Out(DType.F32, 1, T, H, Dh), lse = Out(DType.F32, 1, H, T);
        Ops.AttentionForward(q, k, v, o, y, lse);
        using Tensor rf = R(qkv, 1, T, 3 * H, Dh), ry = RZ(1, T, H, Dh), rl = RZ(1, H, T);
        Tensor rq = rf.Slice(2, 0, H), rk = rf.Slice(2, H, H), rv = rf.Slice(2, 2 * H, H);
        _ref.AttentionForward(rq, rk, rv, o, ry, rl);
        Close(ry, y, true, "fused attention");

        Tensor dfused = Out(DType.F32, 1, T, 3 * H, Dh);
        Ops.AttentionBackward(Up(dout, DType.F32, 1, T, H, Dh), q, k, v, y, lse, o,
            dfused.Slice(2, 0, H), dfused.Slice(2, H, H), dfused.Slice(2, 2 * H, H));
        using Tensor rdf = RZ(1, T, 3 * H, Dh);
        _ref.AttentionBackward(R(dout, 1, T, H, Dh), rq, rk, rv, ry, rl, o, rdf.Slice(2, 0, H),
            rdf.Slice(2, H, H), rdf.Slice(2, 2 * H, H));
        Close(rdf, dfused, true, "fused attention gradients");
    }

    [Fact]
    public void Rotary_and_attention_on_gpt_neox_per_head_qkv()
    {
        // GPT-NeoX's fused projection is per head [q k v]: heads 3·Dh apart in a token row.
        const int T = 40, H = 3, Dh = 16, W = 3 * H * Dh;
        float[] qkv = Random(36, T * W, 2), dout = Random(37, T * H * Dh);
        int[] pos = [.. Enumerable.Range(0, T)];
        var rot = new RotaryOptions(RotaryStyle.HalfSplit, 4, 10000);
        var o = new AttentionOptions(1f / MathF.Sqrt(Dh), true);
        Tensor fused = Up(qkv, DType.F32, T, W);
        using Tensor rf = R(qkv, T, W);
        Tensor Part(Tensor t, int i, bool batch) => batch
            ? t.AsStrided([1, T, H, Dh], [(long)T * W, W, 3L * Dh, 1], (long)i * Dh)
            : t.AsStrided([T, H, Dh], [W, 3L * Dh, 1], (long)i * Dh);
        for (int i = 0; i < 2; i++)
        {
            Ops.Rotary(Part(fused, i, false), UpInts(pos), rot, Part(fused, i, false));
            _ref.Rotary(Part(rf, i, false), Tensor.FromInts(pos), rot, Part(rf, i, false));
        }
        Close(rf, fused, false, "per-head rotary");
        Tensor y = Out(DType.F32, 1, T, H, Dh), lse = Out(DType.F32, 1, H, T);
        Ops.AttentionForward(Part(fused, 0, true), Part(fused, 1, true), Part(fused, 2, true), o,
            y, lse);
        using Tensor ry = RZ(1, T, H, Dh), rl = RZ(1, H, T);
        _ref.AttentionForward(Part(rf, 0, true), Part(rf, 1, true), Part(rf, 2, true), o, ry, rl);
        Close(ry, y, true, "per-head attention");
        Tensor dfused = Out(DType.F32, T, W);
        Ops.AttentionBackward(Up(dout, DType.F32, 1, T, H, Dh), Part(fused, 0, true),
            Part(fused, 1, true), Part(fused, 2, true), y, lse, o, Part(dfused, 0, true),
            Part(dfused, 1, true), Part(dfused, 2, true));
        using Tensor rdf = RZ(T, W);
        _ref.AttentionBackward(R(dout, 1, T, H, Dh), Part(rf, 0, true), Part(rf, 1, true),
            Part(rf, 2, true), ry, rl, o, Part(rdf, 0, true), Part(rdf, 1, true),
            Part(rdf, 2, true));
        Close(rdf, dfused, true, "per-head attention gradients");
    }

    // ---- loss -------------------------------------------------------------------------------

    /// <summary>With <paramref name="masked"/>, every 7th row's bias is −100000 (the padded
    /// vocabulary of training, TRAINING.md §4.4): those rows take no probability and no
    /// gradient, across chunk borders.</summary>
    [Theory]
    [InlineData(DType.F32, true, false)]
    [InlineData(DType.F32, false, false)]
    [InlineData(DType.BF16, false, false)]
    [InlineData(DType.F32, true, true)]
    [InlineData(DType.BF16, true, true)]
    public void Lm_head_cross_entropy_over_several_chunks(DType dtype, bool bias, bool masked)
    {
        Bf16Guard(dtype);
        const int N = 9, D = 40, V = 300;
        float[] h = RoundTo(dtype, Random(30, N * D)), w = RoundTo(dtype, Random(31, V * D));
        float[] bb = Random(32, V), dl = Random(33, N);
        for (int v = 3; masked && v < V; v += 7)
        {
            bb[v] = -100_000f;
        }
        int[] targets = [5, 299, -100, 0, 128, 127, 256, 1, 200];
        Tensor th = Up(h, dtype, N, D), tw = Up(w, dtype, V, D);
        Tensor? tb = bias ? Up(bb, DType.F32, V) : null;
        Tensor tt = UpInts(targets);
        Tensor loss = Out(DType.F32, N), lse = Out(DType.F32, N);
        Ops.LmHeadCrossEntropy(th, tw, tb, tt, loss, lse);
        using Tensor rh = R(h, N, D), rw = R(w, V, D), rloss = RZ(N), rlse = RZ(N);
        using Tensor? rb = bias ? R(bb, V) : null;
        _ref.LmHeadCrossEntropy(rh, rw, rb, Tensor.FromInts(targets), rloss, rlse);
        Close(rloss, loss, true, "loss");
        Close(rlse, lse, true, "lse");

        Tensor dh = Out(DType.F32, N, D), dw = Out(DType.F32, V, D);
        Tensor? db = bias ? Out(DType.F32, V) : null;
        Ops.LmHeadCrossEntropyBackward(th, tw, tb, tt, lse, Up(dl, DType.F32, N), dh, dw, db);
        using Tensor rdh = RZ(N, D), rdw = RZ(V, D);
        using Tensor? rdb = bias ? RZ(V) : null;
        _ref.LmHeadCrossEntropyBackward(rh, rw, rb, Tensor.FromInts(targets), rlse, R(dl, N), rdh,
            rdw, rdb);
        // bf16: dlogits are rounded to bf16 before the two gradient GEMMs.
        double atol = dtype == DType.BF16 ? 2e-3 : SumAtol;
        double rtol = dtype == DType.BF16 ? 2 * Bf16Rtol : SumRtol;
        Close(rdh, Down(dh), atol, rtol, "dHidden");
        Close(rdw, Down(dw), atol, rtol, "dWeight");
        if (rdb is not null)
        {
            Close(rdb, Down(db!), atol, rtol, "dBias");
        }
        if (masked)
        {
            double[] gb = Down(db!);
            Assert.All(Enumerable.Range(0, V).Where(v => v % 7 == 3), v => Assert.Equal(0, gb[v]));
        }
    }

    // ---- training: rescalers and AdamW --------------------------------------------------------

    /// <summary>The values of a window of columns [offset, offset + width) of rows of
    /// <paramref name="stride"/>.</summary>
    private static float[] Window(float[] a, int rows, int stride, int offset, int width) =>
        [.. Enumerable.Range(0, rows * width).Select(i => a[(i / width * stride) + offset
            + (i % width)])];

    private float[] DownFloats(Tensor t)
    {
        using Tensor host = Tensor.Host(DType.F32, t.Shape);
        Ops.Download(t, host);
        return host.AsSpan<float>().ToArray();
    }

    private static Tensor HostF32(float[] data, params long[] shape)
    {
        Tensor t = Tensor.Host(DType.F32, shape);
        data.CopyTo(t.AsSpan<float>());
        return t;
    }

    [Theory]
    [InlineData(DType.F32, 1, true)]
    [InlineData(DType.F32, 70, true)]
    [InlineData(DType.F32, 64, false)]
    [InlineData(DType.BF16, 70, true)]
    public void ScaleShift_on_a_column_window_forward_and_backward(DType dtype, int rows,
        bool shift)
    {
        Bf16Guard(dtype);
        // x and dy are 131-column windows at column 4 of rows 140 wide: row-strided operands,
        // as the hypernetwork's rescalers see views of wider tensors.
        const int W = 131, S = 140, Off = 4;
        float[] xs = RoundTo(dtype, Random(40, rows * S, 3)), gs = RoundTo(dtype,
            Random(41, rows * S));
        float[] w = Random(42, W, 2), b = Random(43, W), ds0 = Random(44, W), db0 = Random(45, W);
        float[] x = Window(xs, rows, S, Off, W), dy = Window(gs, rows, S, Off, W);
        Tensor tx = Up(xs, dtype, rows, S).Slice(1, Off, W), tw = Up(w, DType.F32, W);
        Tensor? tb = shift ? Up(b, DType.F32, W) : null;
        Tensor y = Out(dtype, rows, W);
        Ops.ScaleShift(tx, tw, tb, y);
        using Tensor ry = RZ(rows, W);
        using Tensor? rb = shift ? R(b, W) : null;
        _ref.ScaleShift(R(x, rows, W), R(w, W), rb, ry);
        Close(ry, y, false, "scale shift");

        Tensor dx = Out(dtype, rows, W), ds = Up(ds0, DType.F32, W), db = Up(db0, DType.F32, W);
        Ops.ScaleShiftBackward(Up(gs, dtype, rows, S).Slice(1, Off, W), tx, tw, dx, ds,
            shift ? db : null);
        using Tensor rdx = RZ(rows, W), rds = R(ds0, W), rdb = R(db0, W);
        _ref.ScaleShiftBackward(R(dy, rows, W), R(x, rows, W), R(w, W), rdx, rds,
            shift ? rdb : null);
        Close(rdx, dx, false, "scale shift dx");
        Close(rds, ds, true, "scale shift dScale (accumulated)");
        Close(shift ? rdb : R(db0, W), db, true, "scale shift dShift (accumulated)");

        if (dtype == DType.F32)
        {
            // The CPU backend's fp32 arithmetic, rounded step by step, on every backend: y, dx,
            // and the gradients' sums while the rows fit one 64-row chunk.
            using Tensor hx = HostF32(x, rows, W), hw = HostF32(w, W), hy = Tensor.Host(DType.F32,
                [rows, W]), hdx = Tensor.Host(DType.F32, [rows, W]), hds = HostF32(ds0, W),
                hdb = HostF32(db0, W);
            using Tensor? hb = shift ? HostF32(b, W) : null;
            _ref.ScaleShift(hx, hw, hb, hy);
            using Tensor hg = HostF32(dy, rows, W);
            _ref.ScaleShiftBackward(hg, hx, hw, hdx, hds, shift ? hdb : null);
            Assert.Equal(hy.AsSpan<float>().ToArray(), DownFloats(y));
            Assert.Equal(hdx.AsSpan<float>().ToArray(), DownFloats(dx));
            if (rows <= 64)
            {
                Assert.Equal(hds.AsSpan<float>().ToArray(), DownFloats(ds));
                Assert.Equal(hdb.AsSpan<float>().ToArray(), DownFloats(db));
            }
        }
    }

    [Theory]
    [InlineData(DType.F32, 3)]
    [InlineData(DType.BF16, 1)]
    public void AdamW_updates_parameter_and_moments(DType dtype, int steps)
    {
        Bf16Guard(dtype);
        const int N = 1000;
        float[] p0 = RoundTo(dtype, Random(50, N)), zeros = new float[N];
        Tensor p = Up(p0, dtype, N), m = Up(zeros, dtype, N), v = Up(zeros, dtype, N);
        using Tensor rp = R(p0, N), rm = RZ(N), rv = RZ(N);
        using Tensor hp = HostF32(p0, N), hm = HostF32(zeros, N), hv = HostF32(zeros, N);
        for (int t = 1; t <= steps; t++)
        {
            float[] g = RoundTo(dtype, Random(50 + t, N, 1e-2 * t));
            var step = new AdamWStep(1e-3 * t, 0.9, 0.95, 1e-8, 0.01, t, 0.5);
            Ops.AdamW(p, Up(g, dtype, N), m, v, step);
            _ref.AdamW(rp, R(g, N), rm, rv, step);
            using Tensor hg = HostF32(g, N);
            _ref.AdamW(hp, hg, hm, hv, step);
        }
        Close(rp, p, false, "adamw parameter");
        Close(rm, m, false, "adamw m");
        Close(rv, v, false, "adamw v");
        if (dtype == DType.F32)
        {
            // Bit-identical to the CPU backend's fp32 update, step after step.
            Assert.Equal(hp.AsSpan<float>().ToArray(), DownFloats(p));
            Assert.Equal(hm.AsSpan<float>().ToArray(), DownFloats(m));
            Assert.Equal(hv.AsSpan<float>().ToArray(), DownFloats(v));
        }
    }

    // ---- elementwise and memory ---------------------------------------------------------------

    [Fact]
    public void Add_scale_copy_and_fill()
    {
        const int N = 7, W = 33;
        float[] a = Random(34, N * W), b = Random(35, N * W);
        Tensor ta = Up(a, DType.F32, N, W), tb = Up(b, DType.F32, N, W);
        Tensor y = Out(DType.F32, N, W);
        Ops.Add(ta, tb, y);
        Ops.AddScaled(ta, -0.25f, y);
        Ops.Scale(y, 3f, y);
        var expected = new double[N * W];
        for (int i = 0; i < expected.Length; i++)
        {
            expected[i] = 3.0 * (a[i] + b[i] - 0.25 * a[i]);
        }
        using Tensor re = Tensor.FromDoubles(expected, N, W);
        Close(re, y, false, "add / add scaled / scale");

        // A strided window copied into a dense tensor, then a column band filled.
        Tensor window = Out(DType.F32, N, 10);
        Ops.Copy(ta.Slice(1, 5, 10), window);
        double[] got = Down(window);
        for (int r = 0; r < N; r++)
        {
            for (int c = 0; c < 10; c++)
            {
                Assert.Equal(a[r * W + 5 + c], got[r * 10 + c]);
            }
        }
        Ops.Fill(ta.Slice(1, 2, 3), 7.5);
        got = Down(ta);
        for (int r = 0; r < N; r++)
        {
            for (int c = 0; c < W; c++)
            {
                Assert.Equal(c is >= 2 and < 5 ? 7.5 : a[r * W + c], got[r * W + c]);
            }
        }
    }

    /// <summary>Releases the tensors the test made (the backends live in fixtures).</summary>
    public void Dispose()
    {
        foreach (Tensor t in _owned)
        {
            t.Dispose();
        }
        _owned.Clear();
        _ref.Dispose();
        GC.SuppressFinalize(this);
    }
}

/// <summary>One CPU backend for the CPU run of the shared op tests.</summary>
public sealed class CpuOpFixture : IDisposable
{
    /// <summary>The backend.</summary>
    public CpuBackend Backend { get; } = new();

    /// <inheritdoc />
    public void Dispose() => Backend.Dispose();
}

/// <summary>One CUDA backend for the CUDA run of the shared op tests, created on first use
/// (loading the kernels JIT-compiles their PTX once).</summary>
public sealed class CudaOpFixture : IDisposable
{
    // A 4 KiB logits chunk: 8 rows × 128 columns, so the loss tests cross chunks.
    private readonly Lazy<CudaBackend> _backend = new(() => new CudaBackend
    {
        LossChunkBytes = 4096,
    });

    /// <summary>The backend; skips the calling test where there is no CUDA device.</summary>
    public CudaBackend Backend
    {
        get
        {
            Assert.SkipUnless(Kernels.Cuda.IsAvailable, Kernels.Cuda.UnavailableReason);
            return _backend.Value;
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_backend.IsValueCreated)
        {
            _backend.Value.Dispose();
        }
    }
}

/// <summary>The shared op tests on the CPU backend (F32 against its own F64 path).</summary>
public sealed class CpuBackendOpTests(CpuOpFixture fixture) : BackendOpTests,
    IClassFixture<CpuOpFixture>
{
    /// <inheritdoc />
    protected override IOpBackend Ops => fixture.Backend;

    /// <inheritdoc />
    protected override bool Bf16Activations => false;
}

/// <summary>The shared op tests on the CUDA backend; skipped without a CUDA device.</summary>
public sealed class CudaBackendOpTests(CudaOpFixture fixture) : BackendOpTests,
    IClassFixture<CudaOpFixture>
{
    /// <inheritdoc />
    protected override IOpBackend Ops => fixture.Backend;

    /// <inheritdoc />
    protected override bool Bf16Activations => true;

    /// <inheritdoc />
    protected override void SetFusedLinear(bool on) => fixture.Backend.FusedLinearEpilogues = on;

    /// <inheritdoc />
    protected override bool SetTensorCoreAttention(bool on)
    {
        fixture.Backend.TensorCoreAttention = on;
        return true;
    }
}
