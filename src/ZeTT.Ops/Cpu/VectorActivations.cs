using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ZeTT.Ops.Cpu;

/// <summary>
/// The fp32 GELUs, 8 lanes at a time: the CPU backend's <see cref="ActivationFunction.GeluErf"/>
/// and <see cref="ActivationFunction.GeluTanh"/> on F32 tensors, and the same functions as
/// <see cref="CpuGemm"/> epilogues (bias + activation on each finished row segment of C while
/// it is in L1), so that a fused Linear and a Linear followed by the activation give the same
/// bits. Every value goes through the vector formula (a tail through a padded vector), so a
/// value does not depend on where its row or tile ends.
/// </summary>
internal static unsafe class VectorActivations
{
    private const float SqrtTwoOverPi = 0.7978845608028654f;
    private const float GeluTanhCubic = 0.044715f;
    private const float InvSqrt2 = 0.7071067811865476f;

    // erf GELU via erfc(|z|) from Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7 absolute):
    // 1 + erf(z) = 2 − erfc(|z|) for z ≥ 0 and erfc(|z|) for z < 0, so negative inputs lose no
    // precision to cancellation. GELU error ≤ 0.75e-7·|x|, far below fp32 parity tolerances.
    private const float ErfP = 0.3275911f;
    private const float ErfA1 = 0.254829592f, ErfA2 = -0.284496736f, ErfA3 = 1.421413741f;
    private const float ErfA4 = -1.453152027f, ErfA5 = 1.061405429f;

    /// <summary>True for the functions this class computes (on any CPU: Vector256 falls back to
    /// software where there is no SIMD, with the same results).</summary>
    public static bool Handles(ActivationFunction f) =>
        f is ActivationFunction.GeluErf or ActivationFunction.GeluTanh;

    /// <summary>y = f(x) over <paramref name="n"/> values (y may be x).</summary>
    public static void Forward(ActivationFunction f, float* x, float* y, int n)
    {
        if (f == ActivationFunction.GeluErf)
        {
            Apply<GeluErfOp>(x, null, y, n);
        }
        else
        {
            Apply<GeluTanhOp>(x, null, y, n);
        }
    }

    /// <summary>The <see cref="CpuGemm"/> epilogue for a Linear layer: c = f(c + bias).
    /// </summary>
    public static delegate*<float*, float*, int, void> Epilogue(ActivationFunction? f) => f switch
    {
        null => &BiasOnly,
        ActivationFunction.GeluErf => &BiasGeluErf,
        ActivationFunction.GeluTanh => &BiasGeluTanh,
        _ => throw new ArgumentOutOfRangeException(nameof(f), f, "no fused epilogue"),
    };

    private static void BiasOnly(float* c, float* bias, int n) => Apply<NoOp>(c, bias, c, n);

    private static void BiasGeluErf(float* c, float* bias, int n) =>
        Apply<GeluErfOp>(c, bias, c, n);

    private static void BiasGeluTanh(float* c, float* bias, int n) =>
        Apply<GeluTanhOp>(c, bias, c, n);

    private interface IVectorOp
    {
        static abstract Vector256<float> Invoke(Vector256<float> x);
    }

    private readonly struct NoOp : IVectorOp
    {
        public static Vector256<float> Invoke(Vector256<float> x) => x;
    }

    private readonly struct GeluErfOp : IVectorOp
    {
        public static Vector256<float> Invoke(Vector256<float> x) => GeluErf(x);
    }

    private readonly struct GeluTanhOp : IVectorOp
    {
        public static Vector256<float> Invoke(Vector256<float> x) => GeluTanh(x);
    }

    /// <summary>y = op(x + bias) (no bias when null) over n values.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Apply<TOp>(float* x, float* bias, float* y, int n) where TOp : IVectorOp
    {
        int j = 0;
        for (; j <= n - 8; j += 8)
        {
            Vector256<float> v = Vector256.Load(x + j);
            if (bias != null)
            {
                v += Vector256.Load(bias + j);
            }
            TOp.Invoke(v).Store(y + j);
        }
        if (j < n)
        {
            float* t = stackalloc float[16];
            new Span<float>(t, 16).Clear();
            new ReadOnlySpan<float>(x + j, n - j).CopyTo(new Span<float>(t, 8));
            Vector256<float> v = Vector256.Load(t);
            if (bias != null)
            {
                new ReadOnlySpan<float>(bias + j, n - j).CopyTo(new Span<float>(t + 8, 8));
                v += Vector256.Load(t + 8);
            }
            TOp.Invoke(v).Store(t);
            new ReadOnlySpan<float>(t, n - j).CopyTo(new Span<float>(y + j, n - j));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Fmadd(Vector256<float> a, Vector256<float> b,
        Vector256<float> c) => Fma.IsSupported ? Fma.MultiplyAdd(a, b, c) : (a * b) + c;

    // 0.5·x·(1 + tanh(u)) = x·σ(2u) = x / (1 + e^(−2u)): one exp, no cancellation, and the
    // limits come out right (x→−∞: x/∞ = −0; x→+∞: x/1).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> GeluTanh(Vector256<float> x)
    {
        Vector256<float> u = Vector256.Create(SqrtTwoOverPi)
            * Fmadd(Vector256.Create(GeluTanhCubic) * x, x * x, x);
        return x / (Vector256<float>.One + Exp(Vector256.Create(-2f) * u));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> GeluErf(Vector256<float> x)
    {
        Vector256<float> z = Vector256.Abs(x) * Vector256.Create(InvSqrt2);
        Vector256<float> t = Vector256<float>.One
            / Fmadd(Vector256.Create(ErfP), z, Vector256<float>.One);
        Vector256<float> poly = Fmadd(Vector256.Create(ErfA5), t, Vector256.Create(ErfA4));
        poly = Fmadd(poly, t, Vector256.Create(ErfA3));
        poly = Fmadd(poly, t, Vector256.Create(ErfA2));
        poly = Fmadd(poly, t, Vector256.Create(ErfA1));
        Vector256<float> q = poly * t * Exp(-(z * z));
        Vector256<float> onePlusErf = Vector256.ConditionalSelect(
            Vector256.GreaterThanOrEqual(x, Vector256<float>.Zero), Vector256.Create(2f) - q, q);
        return Vector256.Create(0.5f) * x * onePlusErf;
    }

    /// <summary>
    /// e^x for fp32 vectors: x = n·ln2 + r with |r| ≤ ln2/2 (ln2 split in two for an exact
    /// product), e^r by its degree-6 Taylor polynomial (relative error &lt; 2e-7 on that range),
    /// 2^n put in the exponent bits. Inputs are clamped to [-87.3, 88.3], where e^x is a normal
    /// float. Replaces Vector256.Exp, which cost as much as the GEMM it followed (measured: a
    /// GELU epilogue halved a 1024×768×1536 GEMM's GFLOP/s).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Exp(Vector256<float> x)
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
}
