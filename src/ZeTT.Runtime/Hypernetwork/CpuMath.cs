using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using ZeTT.Ops;

namespace ZeTT.Runtime.Hypernetwork;

/// <summary>Elementwise function applied in a GEMM's epilogue, after the bias.</summary>
internal enum CpuActivation
{
    /// <summary>Identity.</summary>
    None,

    /// <summary><c>0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))</c> (projector blocks).</summary>
    GeluTanh,

    /// <summary><c>0.5·x·(1 + erf(x/√2))</c> (RoBERTa's <c>gelu</c>).</summary>
    GeluErf,
}

/// <summary>
/// A Linear layer's weight <c>W [N, K]</c> (PyTorch <c>[out, in]</c>) repacked once for
/// <see cref="CpuMath.Gemm"/>: column panels of <see cref="CpuMath.NR"/> output features, each
/// stored k-major (<c>[panel][k][NR]</c>) so the micro-kernel reads one contiguous stream; the
/// last panel is zero-padded. The bias is padded to whole panels. Both live on the pinned heap
/// so the kernels can keep raw pointers.
/// </summary>
internal sealed unsafe class PackedWeight
{
    private readonly float[] _panels;
    private readonly float[] _bias;

    private PackedWeight(int n, int k, float[] panels, float[] bias)
    {
        N = n;
        K = k;
        _panels = panels;
        _bias = bias;
    }

    /// <summary>Output features.</summary>
    public int N { get; }

    /// <summary>Input features.</summary>
    public int K { get; }

    /// <summary>Number of NR-wide column panels.</summary>
    public int Panels => (N + CpuMath.NR - 1) / CpuMath.NR;

    /// <summary>Packed panels, <c>[Panels][K][NR]</c>.</summary>
    public float* Data => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_panels));

    /// <summary>Bias padded to <c>Panels·NR</c> (zeros where the layer has none).</summary>
    public float* Bias => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_bias));

    /// <summary>Packs a Linear layer; <paramref name="roundToBf16"/> rounds every weight and
    /// bias to bf16 (stored widened).</summary>
    public static PackedWeight FromLinear(LinearParams p, bool roundToBf16) =>
        FromRows([p.Weight.Data], p.Out, p.In, [p.Bias.Data], roundToBf16);

    /// <summary>Packs several Linear layers with the same input width side by side (their outputs
    /// concatenated), e.g. key and value.</summary>
    public static PackedWeight Concat(IReadOnlyList<LinearParams> layers, bool roundToBf16)
    {
        int k = layers[0].In;
        if (layers.Any(l => l.In != k))
        {
            throw new ArgumentException("layers must share their input width", nameof(layers));
        }
        return FromRows(layers.Select(l => l.Weight.Data).ToArray(), layers.Sum(l => l.Out), k,
            layers.Select(l => l.Bias.Data).ToArray(), roundToBf16);
    }

    /// <summary>Packs row blocks <c>[n_i, k]</c> stacked into one <c>[Σn_i, k]</c> weight.</summary>
    public static PackedWeight FromRows(float[][] rowBlocks, int n, int k, float[]?[] biases,
        bool roundToBf16)
    {
        int nr = CpuMath.NR;
        int panels = (n + nr - 1) / nr;
        float[] packed = GC.AllocateArray<float>(Math.Max(1, panels * k * nr), pinned: true);
        float[] bias = GC.AllocateArray<float>(Math.Max(1, panels * nr), pinned: true);
        int row = 0;
        for (int blk = 0; blk < rowBlocks.Length; blk++)
        {
            float[] w = rowBlocks[blk];
            int rows = w.Length / Math.Max(k, 1);
            float[]? b = biases[blk];
            for (int r = 0; r < rows; r++, row++)
            {
                int panel = row / nr, lane = row % nr;
                int baseOffset = panel * k * nr + lane;
                for (int kk = 0; kk < k; kk++)
                {
                    float v = w[r * k + kk];
                    packed[baseOffset + kk * nr] = roundToBf16 ? BFloat16.Round(v) : v;
                }
                float bv = b is null ? 0f : b[r];
                bias[row] = roundToBf16 ? BFloat16.Round(bv) : bv;
            }
        }
        return row == n
            ? new PackedWeight(n, k, packed, bias)
            : throw new ArgumentException($"row blocks hold {row} rows, expected {n}",
                nameof(rowBlocks));
    }
}

/// <summary>
/// The CPU backend's arithmetic: a blocked, register-tiled SGEMM against pre-packed weights with
/// a fused bias+activation epilogue, residual+LayerNorm, GELU variants, and plain scalar
/// references the tests compare them with.
/// </summary>
/// <remarks>
/// GEMM structure (Goto/BLIS style): the weight is packed once into NR=16-wide k-major panels;
/// per call, each task packs an MC×KC block of A into MR=6-row k-major strips (rounding to bf16
/// here when asked), then a 6×16 micro-kernel keeps 12 Vector256 accumulators in registers
/// (12 + 2 B vectors + 1 broadcast = 15 of the 16 ymm registers), streaming a 16 KB B
/// micro-panel from L1 and the A block from L2. Tasks are row blocks (and column groups when
/// there are too few row blocks to feed every core), run with Parallel.For.
/// </remarks>
internal static unsafe class CpuMath
{
    /// <summary>Rows of the register tile.</summary>
    public const int MR = 6;

    /// <summary>Columns of the register tile (two Vector256).</summary>
    public const int NR = 16;

    /// <summary>Depth of one packed block: KC·NR·4 B = 16 KB of B stays in L1.</summary>
    public const int KC = 256;

    /// <summary>Largest row block of A one task packs (MCmax·KC·4 B = 144 KB, in L2).</summary>
    public const int MCMax = 144;

    private const float SqrtTwoOverPi = 0.7978845608028654f;
    private const float GeluTanhCubic = 0.044715f;
    private const float InvSqrt2 = 0.7071067811865476f;

    [ThreadStatic]
    private static float[]? t_packA;

    /// <summary>True when the vectorised kernels run (AVX2+FMA, or any 256-bit SIMD).</summary>
    public static bool IsVectorized => Vector256.IsHardwareAccelerated;

    /// <summary>
    /// <c>C[m, N] = act(A[m, K]·Wᵀ + bias)</c>; A rows are <paramref name="lda"/> floats apart,
    /// C rows <paramref name="ldc"/>. <paramref name="roundAToBf16"/> rounds A to bf16 as it is
    /// packed (the weight was rounded when packed).
    /// </summary>
    public static void Gemm(float* a, int lda, int m, PackedWeight w, float* c, int ldc,
        CpuActivation act, bool roundAToBf16)
    {
        if (m <= 0 || w.N == 0)
        {
            return;
        }
        if (!IsVectorized)
        {
            GemmScalarPacked(a, lda, m, w, c, ldc, act, roundAToBf16);
            return;
        }
        int threads = Math.Max(1, Environment.ProcessorCount);
        int mc = Math.Clamp(RoundUp(CeilDiv(m, 2 * threads), MR), MR, MCMax);
        int rowBlocks = CeilDiv(m, mc);
        int panels = w.Panels;
        int colGroups = rowBlocks >= 2 * threads ? 1 : Math.Min(panels, CeilDiv(2 * threads, rowBlocks));
        int tasks = rowBlocks * colGroups;
        // Work below ~2 MFLOP is not worth a Parallel.For dispatch (measured: a [256,768]x[768,1]
        // bias head is faster inline).
        bool parallel = tasks > 1 && (long)m * w.N * w.K > 1_000_000;
        nint pa = (nint)a, pc = (nint)c;
        if (!parallel)
        {
            for (int t = 0; t < tasks; t++)
            {
                GemmTask(t, colGroups, mc, (float*)pa, lda, m, w, (float*)pc, ldc, act, roundAToBf16);
            }
            return;
        }
        Parallel.For(0, tasks, t =>
            GemmTask(t, colGroups, mc, (float*)pa, lda, m, w, (float*)pc, ldc, act, roundAToBf16));
    }

    private static void GemmTask(int task, int colGroups, int mc, float* a, int lda, int m,
        PackedWeight w, float* c, int ldc, CpuActivation act, bool roundA)
    {
        int rb = task / colGroups, cg = task % colGroups;
        int row0 = rb * mc, rows = Math.Min(mc, m - row0);
        int panels = w.Panels;
        int p0 = (int)((long)cg * panels / colGroups), p1 = (int)((long)(cg + 1) * panels / colGroups);
        if (rows <= 0 || p0 >= p1)
        {
            return;
        }
        float[] buffer = t_packA ??= GC.AllocateArray<float>(MCMax * KC, pinned: true);
        float* ap = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(buffer));
        float* tile = stackalloc float[MR * NR];
        int k = w.K;
        int strips = CeilDiv(rows, MR);
        for (int k0 = 0; k0 < k || k0 == 0; k0 += KC)
        {
            int kc = Math.Min(KC, k - k0);
            bool first = k0 == 0, last = k0 + KC >= k;
            PackA(a + (long)row0 * lda + k0, lda, rows, kc, ap, roundA);
            for (int p = p0; p < p1; p++)
            {
                float* bp = w.Data + ((long)p * k + k0) * NR;
                int col0 = p * NR, cols = Math.Min(NR, w.N - col0);
                float* bias = last ? w.Bias + col0 : null;
                for (int s = 0; s < strips; s++)
                {
                    int r = s * MR;
                    Kernel6x16(kc, ap + s * kc * MR, bp, tile, c + (long)(row0 + r) * ldc + col0, ldc,
                        Math.Min(MR, rows - r), cols, !first, bias, act);
                }
            }
            if (k == 0)
            {
                break;
            }
        }
    }

    /// <summary>Packs rows×kc of A into MR-row strips, k-major, zero-padding the last strip.</summary>
    private static void PackA(float* a, int lda, int rows, int kc, float* dst, bool round)
    {
        for (int r0 = 0; r0 < rows; r0 += MR)
        {
            float* strip = dst + r0 * kc;
            int rr = Math.Min(MR, rows - r0);
            for (int i = 0; i < MR; i++)
            {
                float* src = a + (long)(r0 + i) * lda;
                if (i >= rr)
                {
                    for (int kk = 0; kk < kc; kk++)
                    {
                        strip[kk * MR + i] = 0f;
                    }
                }
                else if (round)
                {
                    for (int kk = 0; kk < kc; kk++)
                    {
                        strip[kk * MR + i] = BFloat16.Round(src[kk]);
                    }
                }
                else
                {
                    for (int kk = 0; kk < kc; kk++)
                    {
                        strip[kk * MR + i] = src[kk];
                    }
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Fmadd(Vector256<float> a, Vector256<float> b, Vector256<float> c) =>
        Fma.IsSupported ? Fma.MultiplyAdd(a, b, c) : (a * b) + c;

    private static void Kernel6x16(int kc, float* ap, float* bp, float* tile, float* c, int ldc,
        int rows, int cols, bool accumulate, float* bias, CpuActivation act)
    {
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default;
        Vector256<float> c20 = default, c21 = default, c30 = default, c31 = default;
        Vector256<float> c40 = default, c41 = default, c50 = default, c51 = default;
        for (int k = 0; k < kc; k++)
        {
            Vector256<float> b0 = Vector256.Load(bp), b1 = Vector256.Load(bp + 8);
            Vector256<float> x = Vector256.Create(ap[0]);
            c00 = Fmadd(x, b0, c00);
            c01 = Fmadd(x, b1, c01);
            x = Vector256.Create(ap[1]);
            c10 = Fmadd(x, b0, c10);
            c11 = Fmadd(x, b1, c11);
            x = Vector256.Create(ap[2]);
            c20 = Fmadd(x, b0, c20);
            c21 = Fmadd(x, b1, c21);
            x = Vector256.Create(ap[3]);
            c30 = Fmadd(x, b0, c30);
            c31 = Fmadd(x, b1, c31);
            x = Vector256.Create(ap[4]);
            c40 = Fmadd(x, b0, c40);
            c41 = Fmadd(x, b1, c41);
            x = Vector256.Create(ap[5]);
            c50 = Fmadd(x, b0, c50);
            c51 = Fmadd(x, b1, c51);
            ap += MR;
            bp += NR;
        }
        c00.Store(tile); c01.Store(tile + 8); c10.Store(tile + 16); c11.Store(tile + 24);
        c20.Store(tile + 32); c21.Store(tile + 40); c30.Store(tile + 48); c31.Store(tile + 56);
        c40.Store(tile + 64); c41.Store(tile + 72); c50.Store(tile + 80); c51.Store(tile + 88);
        StoreTile(tile, c, ldc, rows, cols, accumulate, bias, act);
    }

    /// <summary>Writes a 6×16 accumulator tile to C: adds what C holds when accumulating over
    /// K blocks, then bias and activation after the last block — through the same vector code
    /// for full and edge tiles, so a row's result does not depend on where it falls in a batch.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void StoreTile(float* tile, float* c, int ldc, int rows, int cols,
        bool accumulate, float* bias, CpuActivation act)
    {
        for (int i = 0; i < rows; i++)
        {
            float* t = tile + (i * NR);
            float* dst = c + (long)i * ldc;
            if (cols == NR)
            {
                StoreRow(Vector256.Load(t), Vector256.Load(t + 8), dst, accumulate, bias, act);
                continue;
            }
            if (accumulate)
            {
                for (int j = 0; j < cols; j++)
                {
                    t[j] += dst[j];
                }
            }
            if (bias != null)
            {
                Apply(act, Vector256.Load(t) + Vector256.Load(bias)).Store(t);
                Apply(act, Vector256.Load(t + 8) + Vector256.Load(bias + 8)).Store(t + 8);
            }
            new ReadOnlySpan<float>(t, cols).CopyTo(new Span<float>(dst, cols));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow(Vector256<float> v0, Vector256<float> v1, float* dst,
        bool accumulate, float* bias, CpuActivation act)
    {
        if (accumulate)
        {
            v0 += Vector256.Load(dst);
            v1 += Vector256.Load(dst + 8);
        }
        if (bias != null)
        {
            v0 = Apply(act, v0 + Vector256.Load(bias));
            v1 = Apply(act, v1 + Vector256.Load(bias + 8));
        }
        v0.Store(dst);
        v1.Store(dst + 8);
    }

    /// <summary>The activation on one vector.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Apply(CpuActivation act, Vector256<float> x) => act switch
    {
        CpuActivation.GeluTanh => GeluTanh(x),
        CpuActivation.GeluErf => GeluErf(x),
        _ => x,
    };

    /// <summary>The activation on one value (same formulas as the vector forms).</summary>
    public static float Apply(CpuActivation act, float x) => act switch
    {
        CpuActivation.GeluTanh => GeluTanh(x),
        CpuActivation.GeluErf => GeluErf(x),
        _ => x,
    };

    // 0.5·x·(1 + tanh(u)) = x·σ(2u) = x / (1 + e^(−2u)): one exp, no cancellation, and the
    // limits come out right (x→−∞: x/∞ = −0; x→+∞: x/1).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> GeluTanh(Vector256<float> x)
    {
        Vector256<float> u = Vector256.Create(SqrtTwoOverPi)
            * Fmadd(Vector256.Create(GeluTanhCubic) * x, x * x, x);
        return x / (Vector256<float>.One + Exp(Vector256.Create(-2f) * u));
    }

    /// <summary>
    /// e^x for fp32 vectors: x = n·ln2 + r with |r| ≤ ln2/2 (ln2 split in two for an exact
    /// product), e^r by its degree-6 Taylor polynomial (relative error &lt; 2e-7 on that range),
    /// 2^n put in the exponent bits. Inputs are clamped to [-87.3, 88.3], where e^x is a normal
    /// float. Replaces Vector256.Exp, which cost as much as the GEMM it followed (measured: a
    /// GELU epilogue halved a 1024×768×1536 GEMM's GFLOP/s).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> x)
    {
        x = Vector256.Min(Vector256.Max(x, Vector256.Create(-87.3f)), Vector256.Create(88.3f));
        Vector256<float> n = Vector256.Round(x * Vector256.Create(1.44269504088896341f));
        Vector256<float> r = Fmadd(n, Vector256.Create(-0.693359375f), x);
        r = Fmadd(n, Vector256.Create(2.12194440e-4f), r);
        Vector256<float> p = Vector256.Create(1f / 720);
        p = Fmadd(p, r, Vector256.Create(1f / 120));
        p = Fmadd(p, r, Vector256.Create(1f / 24));
        p = Fmadd(p, r, Vector256.Create(1f / 6));
        p = Fmadd(p, r, Vector256.Create(0.5f));
        p = Fmadd(p, r, Vector256<float>.One);
        p = Fmadd(p, r, Vector256<float>.One);
        Vector256<int> scale = (Vector256.ConvertToInt32(n) + Vector256.Create(127)) << 23;
        return p * scale.AsSingle();
    }

    /// <summary>Scalar GELU, tanh approximation.</summary>
    public static float GeluTanh(float x)
    {
        float u = SqrtTwoOverPi * ((GeluTanhCubic * x * x * x) + x);
        return x / (1f + MathF.Exp(-2f * u));
    }

    // erf GELU via erfc(|z|) from Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7 absolute):
    // 1 + erf(z) = 2 − erfc(|z|) for z ≥ 0 and erfc(|z|) for z < 0, so negative inputs lose no
    // precision to cancellation. GELU error ≤ 0.75e-7·|x|, far below fp32 parity tolerances.
    private const float ErfP = 0.3275911f;
    private const float ErfA1 = 0.254829592f, ErfA2 = -0.284496736f, ErfA3 = 1.421413741f;
    private const float ErfA4 = -1.453152027f, ErfA5 = 1.061405429f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> GeluErf(Vector256<float> x)
    {
        Vector256<float> z = Vector256.Abs(x) * Vector256.Create(InvSqrt2);
        Vector256<float> t = Vector256<float>.One / Fmadd(Vector256.Create(ErfP), z, Vector256<float>.One);
        Vector256<float> poly = Fmadd(Vector256.Create(ErfA5), t, Vector256.Create(ErfA4));
        poly = Fmadd(poly, t, Vector256.Create(ErfA3));
        poly = Fmadd(poly, t, Vector256.Create(ErfA2));
        poly = Fmadd(poly, t, Vector256.Create(ErfA1));
        Vector256<float> q = poly * t * Exp(-(z * z));
        Vector256<float> onePlusErf = Vector256.ConditionalSelect(
            Vector256.GreaterThanOrEqual(x, Vector256<float>.Zero), Vector256.Create(2f) - q, q);
        return Vector256.Create(0.5f) * x * onePlusErf;
    }

    /// <summary>Scalar GELU, erf form (same approximation as the vector form).</summary>
    public static float GeluErf(float x)
    {
        float z = MathF.Abs(x) * InvSqrt2;
        float t = 1f / ((ErfP * z) + 1f);
        float poly = ((((((((ErfA5 * t) + ErfA4) * t) + ErfA3) * t) + ErfA2) * t) + ErfA1) * t;
        float q = poly * MathF.Exp(-(z * z));
        return 0.5f * x * (x >= 0 ? 2f - q : q);
    }

    /// <summary>
    /// <c>dst[r] = LN(x[r] + residual[r])·γ + β</c> over <paramref name="dim"/> features, for
    /// <paramref name="rows"/> rows with their own strides; <paramref name="dst"/> may alias
    /// either input row for row. Mean and biased variance in fp32, two passes, as PyTorch.
    /// <paramref name="residual"/> may be null (plain LayerNorm).
    /// </summary>
    public static void AddLayerNorm(float* x, int ldx, float* residual, int ldr, int rows, int dim,
        float* gamma, float* beta, float eps, float* dst, int ldd)
    {
        nint px = (nint)x, pr = (nint)residual, pg = (nint)gamma, pb = (nint)beta, pd = (nint)dst;
        if ((long)rows * dim < 200_000)
        {
            for (int r = 0; r < rows; r++)
            {
                AddLayerNormRow((float*)px + ((long)r * ldx),
                    pr == 0 ? null : (float*)pr + ((long)r * ldr), dim, (float*)pg, (float*)pb, eps,
                    (float*)pd + ((long)r * ldd));
            }
            return;
        }
        int chunk = 64;
        Parallel.For(0, CeilDiv(rows, chunk), blk =>
        {
            int end = Math.Min(rows, (blk + 1) * chunk);
            for (int r = blk * chunk; r < end; r++)
            {
                AddLayerNormRow((float*)px + ((long)r * ldx),
                    pr == 0 ? null : (float*)pr + ((long)r * ldr), dim, (float*)pg, (float*)pb, eps,
                    (float*)pd + ((long)r * ldd));
            }
        });
    }

    private static void AddLayerNormRow(float* x, float* res, int dim, float* gamma, float* beta,
        float eps, float* dst)
    {
        var sum = Vector256<float>.Zero;
        int j = 0;
        if (IsVectorized)
        {
            for (; j <= dim - 8; j += 8)
            {
                Vector256<float> v = Vector256.Load(x + j);
                if (res != null)
                {
                    v += Vector256.Load(res + j);
                }
                v.Store(dst + j);
                sum += v;
            }
        }
        float s = Vector256.Sum(sum);
        for (; j < dim; j++)
        {
            float v = res != null ? x[j] + res[j] : x[j];
            dst[j] = v;
            s += v;
        }
        float mean = s / dim;
        var vmean = Vector256.Create(mean);
        var sq = Vector256<float>.Zero;
        j = 0;
        if (IsVectorized)
        {
            for (; j <= dim - 8; j += 8)
            {
                Vector256<float> d = Vector256.Load(dst + j) - vmean;
                sq = Fmadd(d, d, sq);
            }
        }
        float ss = Vector256.Sum(sq);
        for (; j < dim; j++)
        {
            float d = dst[j] - mean;
            ss += d * d;
        }
        float inv = 1f / MathF.Sqrt((ss / dim) + eps);
        var vinv = Vector256.Create(inv);
        j = 0;
        if (IsVectorized)
        {
            for (; j <= dim - 8; j += 8)
            {
                Vector256<float> n = (Vector256.Load(dst + j) - vmean) * vinv;
                Fmadd(n, Vector256.Load(gamma + j), Vector256.Load(beta + j)).Store(dst + j);
            }
        }
        for (; j < dim; j++)
        {
            dst[j] = ((dst[j] - mean) * inv * gamma[j]) + beta[j];
        }
    }

    /// <summary>Dot product of two fp32 vectors (vectorised).</summary>
    public static float Dot(float* a, float* b, int n)
    {
        int j = 0;
        float s = 0f;
        if (IsVectorized)
        {
            var acc = Vector256<float>.Zero;
            for (; j <= n - 8; j += 8)
            {
                acc = Fmadd(Vector256.Load(a + j), Vector256.Load(b + j), acc);
            }
            s = Vector256.Sum(acc);
        }
        for (; j < n; j++)
        {
            s += a[j] * b[j];
        }
        return s;
    }

    /// <summary><c>y += alpha·x</c>.</summary>
    public static void Axpy(float alpha, float* x, float* y, int n)
    {
        int j = 0;
        if (IsVectorized)
        {
            var va = Vector256.Create(alpha);
            for (; j <= n - 8; j += 8)
            {
                Fmadd(va, Vector256.Load(x + j), Vector256.Load(y + j)).Store(y + j);
            }
        }
        for (; j < n; j++)
        {
            y[j] += alpha * x[j];
        }
    }

    /// <summary>Rounds <paramref name="n"/> values to bf16 precision in place.</summary>
    public static void RoundToBf16(float* x, long n)
    {
        for (long i = 0; i < n; i++)
        {
            x[i] = BFloat16.Round(x[i]);
        }
    }

    /// <summary>Plain scalar <c>C = act(A·Wᵀ + b)</c> (W [n, k] row-major), the reference the
    /// blocked kernel is tested against.</summary>
    public static void GemmReference(ReadOnlySpan<float> a, int m, int k, ReadOnlySpan<float> w,
        int n, ReadOnlySpan<float> bias, CpuActivation act, Span<float> c)
    {
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double s = bias.IsEmpty ? 0 : bias[j];
                for (int kk = 0; kk < k; kk++)
                {
                    s += (double)a[(i * k) + kk] * w[(j * k) + kk];
                }
                c[(i * n) + j] = Apply(act, (float)s);
            }
        }
    }

    /// <summary>Fallback when there is no 256-bit SIMD: same packed weight, scalar loops.</summary>
    private static void GemmScalarPacked(float* a, int lda, int m, PackedWeight w, float* c,
        int ldc, CpuActivation act, bool roundA)
    {
        int k = w.K;
        for (int i = 0; i < m; i++)
        {
            float* row = a + (long)i * lda;
            for (int j = 0; j < w.N; j++)
            {
                float* panel = w.Data + ((long)(j / NR) * k * NR) + (j % NR);
                float s = 0f;
                for (int kk = 0; kk < k; kk++)
                {
                    float av = roundA ? BFloat16.Round(row[kk]) : row[kk];
                    s += av * panel[kk * NR];
                }
                c[((long)i * ldc) + j] = Apply(act, s + w.Bias[j]);
            }
        }
    }

    /// <summary>⌈a / b⌉.</summary>
    public static int CeilDiv(int a, int b) => (a + b - 1) / b;

    private static int RoundUp(int a, int b) => CeilDiv(a, b) * b;
}
