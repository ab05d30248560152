using ZeTT.Kernels.Launch;

namespace ZeTT.Kernels.Reference;

/// <summary>
/// CPU twins of the row-major GEMM and the activations, written plainly, computing in double:
/// the GEMM parity tests compare cuBLAS(Lt) with them; a <c>bf16</c> output corresponds to the
/// twin's result rounded with <see cref="RoundBFloat16"/>. (The op layer's kernels are tested
/// against the op layer's CPU backend instead: tests/ZeTT.Ops.Tests/BackendOpTests.)
/// </summary>
public static class CpuKernels
{
    /// <summary>Rounds to the nearest bf16 (ties to even) and widens back, like a kernel that
    /// stores bf16.</summary>
    public static float RoundBFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if ((bits & 0x7FFF_FFFFu) > 0x7F80_0000u)
        {
            return value;
        }
        bits += 0x7FFFu + ((bits >> 16) & 1u);
        return BitConverter.UInt32BitsToSingle(bits & 0xFFFF_0000u);
    }

    /// <summary>Row-major <c>C = alpha·A·op(B) + beta·C</c> (see <see cref="Blas.Gemm"/>),
    /// accumulated in double.</summary>
    public static void Gemm(int m, int n, int k, ReadOnlySpan<float> a, int lda,
        ReadOnlySpan<float> b, int ldb, bool transB, Span<float> c, int ldc, float alpha = 1f,
        float beta = 0f)
    {
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int p = 0; p < k; p++)
                {
                    s += (double)a[i * lda + p] * (transB ? b[j * ldb + p] : b[p * ldb + j]);
                }
                c[i * ldc + j] = (float)(alpha * s + (beta == 0 ? 0 : beta * c[i * ldc + j]));
            }
        }
    }

    /// <summary>GELU with erf (PyTorch's default).</summary>
    public static float GeluErf(float x) => (float)(0.5 * x * (1 + CpuMath.Erf(x / Math.Sqrt(2))));

    /// <summary>GELU, tanh approximation.</summary>
    public static float GeluTanh(float x) =>
        (float)(0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x))));

    /// <summary>Applies <paramref name="activation"/>.</summary>
    public static float Activate(float x, Activation activation) => activation switch
    {
        Activation.GeluTanh => GeluTanh(x),
        Activation.GeluErf => GeluErf(x),
        Activation.Silu => (float)(x / (1 + Math.Exp(-x))),
        Activation.Relu => MathF.Max(x, 0),
        _ => x,
    };
}

/// <summary>Math the BCL lacks.</summary>
public static class CpuMath
{
    /// <summary>The error function, to about 1e-14 absolute: Maclaurin series for |x| &lt; 3,
    /// the erfc continued fraction beyond.</summary>
    public static double Erf(double x)
    {
        if (double.IsNaN(x))
        {
            return x;
        }
        double ax = Math.Abs(x);
        if (ax < 3)
        {
            double term = ax, sum = ax, x2 = ax * ax;
            for (int n = 1; n < 100 && Math.Abs(term) > 1e-17 * Math.Abs(sum); n++)
            {
                term *= -x2 / n;
                sum += term / (2 * n + 1);
            }
            return Math.CopySign(2 / Math.Sqrt(Math.PI) * sum, x);
        }
        if (ax > 6)
        {
            return Math.CopySign(1.0, x);
        }
        // erfc(x) = exp(-x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...))))).
        double f = ax;
        for (int n = 60; n >= 1; n--)
        {
            f = ax + n / 2.0 / f;
        }
        double erfc = Math.Exp(-ax * ax) / Math.Sqrt(Math.PI) / f;
        return Math.CopySign(1 - erfc, x);
    }
}
