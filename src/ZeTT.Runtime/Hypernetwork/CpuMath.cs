using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using ZeTT.Ops;
using ZeTT.Ops.Cpu;

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
/// A Linear layer's weight <c>W [N, K]</c> (PyTorch <c>[out, in]</c>) packed once for
/// <see cref="CpuGemm"/> as op(B) = Wᵀ (<see cref="GemmPackedB"/>: NR-wide k-major column panels
/// for this CPU's micro-kernel), and its bias, on the pinned heap so the kernels keep raw
/// pointers.
/// </summary>
internal sealed unsafe class PackedWeight
{
    private readonly float[] _bias;

    private PackedWeight(GemmPackedB packed, float[] bias)
    {
        Packed = packed;
        _bias = bias;
    }

    /// <summary>The packed op(B).</summary>
    public GemmPackedB Packed { get; }

    /// <summary>Output features.</summary>
    public int N => Packed.N;

    /// <summary>Input features.</summary>
    public int K => Packed.K;

    /// <summary>Bias, N values (zeros where the layer has none).</summary>
    public float* Bias => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_bias));

    /// <summary>Packs a Linear layer for <paramref name="kernel"/>; <paramref name="roundToBf16"/>
    /// rounds every weight and bias to bf16 (stored widened).</summary>
    public static PackedWeight FromLinear(LinearParams p, bool roundToBf16, GemmKernel kernel) =>
        FromRows([p.Weight.Data], p.Out, p.In, [p.Bias.Data], roundToBf16, kernel);

    /// <summary>Packs several Linear layers with the same input width side by side (their outputs
    /// concatenated), e.g. key and value.</summary>
    public static PackedWeight Concat(IReadOnlyList<LinearParams> layers, bool roundToBf16,
        GemmKernel kernel)
    {
        int k = layers[0].In;
        if (layers.Any(l => l.In != k))
        {
            throw new ArgumentException("layers must share their input width", nameof(layers));
        }
        return FromRows(layers.Select(l => l.Weight.Data).ToArray(), layers.Sum(l => l.Out), k,
            layers.Select(l => l.Bias.Data).ToArray(), roundToBf16, kernel);
    }

    /// <summary>Packs row blocks <c>[n_i, k]</c> stacked into one <c>[Σn_i, k]</c> weight for
    /// <paramref name="kernel"/> (default: this CPU's fastest).</summary>
    public static PackedWeight FromRows(float[][] rowBlocks, int n, int k, float[]?[] biases,
        bool roundToBf16, GemmKernel? kernel = null)
    {
        int total = rowBlocks.Sum(w => w.Length / Math.Max(k, 1));
        if (total != n)
        {
            throw new ArgumentException($"row blocks hold {total} rows, expected {n}",
                nameof(rowBlocks));
        }
        var packed = new GemmPackedB(kernel ?? GemmKernels.Best, n, k);
        float[] bias = GC.AllocateArray<float>(Math.Max(1, n), pinned: true);
        int row = 0;
        for (int blk = 0; blk < rowBlocks.Length; blk++)
        {
            float[] w = rowBlocks[blk];
            int rows = w.Length / Math.Max(k, 1);
            fixed (float* pw = w)
            {
                packed.Pack(row, rows, pw, GemmType.F32, k, transposed: true);
            }
            float[]? b = biases[blk];
            for (int r = 0; r < rows; r++)
            {
                float bv = b is null ? 0f : b[r];
                bias[row + r] = roundToBf16 ? BFloat16.Round(bv) : bv;
            }
            row += rows;
        }
        if (roundToBf16)
        {
            packed.RoundToBf16();
        }
        return new PackedWeight(packed, bias);
    }
}

/// <summary>
/// The CPU backend's arithmetic: a blocked, register-tiled SGEMM against pre-packed weights with
/// a fused bias+activation epilogue, residual+LayerNorm, GELU variants, and plain scalar
/// references the tests compare them with.
/// </summary>
/// <remarks>
/// The GEMM is <see cref="CpuGemm"/>'s (the same micro-kernels as every other CPU matmul),
/// entered with the pre-packed weight; bias and activation run as its epilogue on each finished
/// row segment of C while it is in L1.
/// </remarks>
internal static unsafe class CpuMath
{
    private const float SqrtTwoOverPi = 0.7978845608028654f;
    private const float GeluTanhCubic = 0.044715f;
    private const float InvSqrt2 = 0.7071067811865476f;

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
        delegate*<float*, float*, int, void> epilogue = act switch
        {
            CpuActivation.GeluTanh => &BiasGeluTanh,
            CpuActivation.GeluErf => &BiasGeluErf,
            _ => &BiasOnly,
        };
        CpuGemm.Gemm(m, a, GemmType.F32, lda, false, roundAToBf16, w.Packed, c, ldc,
            new GemmEpilogue(epilogue, w.Bias));
    }

    private static void BiasOnly(float* c, float* bias, int n) =>
        BiasAndActivate(c, bias, n, CpuActivation.None);

    private static void BiasGeluTanh(float* c, float* bias, int n) =>
        BiasAndActivate(c, bias, n, CpuActivation.GeluTanh);

    private static void BiasGeluErf(float* c, float* bias, int n) =>
        BiasAndActivate(c, bias, n, CpuActivation.GeluErf);

    /// <summary><c>c = act(c + bias)</c> over <paramref name="n"/> values, always through the
    /// vector formula (a tail goes through a padded vector), so a value does not depend on where
    /// its tile ends.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void BiasAndActivate(float* c, float* bias, int n, CpuActivation act)
    {
        int j = 0;
        for (; j <= n - 8; j += 8)
        {
            Apply(act, Vector256.Load(c + j) + Vector256.Load(bias + j)).Store(c + j);
        }
        if (j < n)
        {
            float* t = stackalloc float[16];
            new Span<float>(t, 16).Clear();
            new ReadOnlySpan<float>(c + j, n - j).CopyTo(new Span<float>(t, 8));
            new ReadOnlySpan<float>(bias + j, n - j).CopyTo(new Span<float>(t + 8, 8));
            Apply(act, Vector256.Load(t) + Vector256.Load(t + 8)).Store(t);
            new ReadOnlySpan<float>(t, n - j).CopyTo(new Span<float>(c + j, n - j));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Fmadd(Vector256<float> a, Vector256<float> b, Vector256<float> c) =>
        Fma.IsSupported ? Fma.MultiplyAdd(a, b, c) : (a * b) + c;

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

    /// <summary>⌈a / b⌉.</summary>
    public static int CeilDiv(int a, int b) => (a + b - 1) / b;

}
