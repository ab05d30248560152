using ZeTT.Ops;
using ZeTT.Runtime.Hypernetwork;

namespace ZeTT.Runtime.Tests.Hypernetwork;

public sealed unsafe class CpuMathTests
{
    private static float[] Random(int n, int seed, float scale = 1f)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)((rng.NextDouble() * 2) - 1) * scale).ToArray();
    }

    [Theory]
    // m, n, k: 0, 1, not multiples of MR = 6 / NR = 16 / KC = 256, and a real model shape.
    [InlineData(1, 1, 1)]
    [InlineData(5, 15, 7)]
    [InlineData(6, 16, 256)]
    [InlineData(7, 17, 257)]
    [InlineData(13, 33, 600)]
    [InlineData(150, 40, 31)]
    [InlineData(301, 3, 520)]
    [InlineData(64, 96, 48)]
    [InlineData(0, 8, 8)]
    public void Blocked_gemm_matches_scalar_reference(int m, int n, int k)
    {
        foreach (CpuActivation act in Enum.GetValues<CpuActivation>())
        {
            float[] a = Random(m * k, 1), w = Random(n * k, 2, 1f / MathF.Sqrt(k)), b = Random(n, 3);
            var expected = new float[m * n];
            CpuMath.GemmReference(a, m, k, w, n, b, act, expected);
            PackedWeight packed = PackedWeight.FromRows([w], n, k, [b], roundToBf16: false);
            // A with a row stride larger than k, C with one larger than n: both must be honoured.
            int lda = k + 3, ldc = n + 5;
            var aStrided = new float[Math.Max(1, m * lda)];
            for (int i = 0; i < m; i++)
            {
                Array.Copy(a, i * k, aStrided, i * lda, k);
            }
            float[] c = Enumerable.Repeat(float.NaN, Math.Max(1, m * ldc)).ToArray();
            fixed (float* pa = aStrided, pc = c)
            {
                CpuMath.Gemm(pa, lda, m, packed, pc, ldc, act, roundAToBf16: false);
            }
            for (int i = 0; i < m; i++)
            {
                for (int j = 0; j < n; j++)
                {
                    float e = expected[(i * n) + j], g = c[(i * ldc) + j];
                    Assert.True(Math.Abs(g - e) <= 1e-5f * (1 + Math.Abs(e)),
                        $"{act} m={m} n={n} k={k} [{i},{j}]: {g} vs {e}");
                }
                for (int j = n; j < ldc && (i * ldc) + j < c.Length; j++)
                {
                    Assert.True(float.IsNaN(c[(i * ldc) + j]), $"wrote outside row {i}: column {j}");
                }
            }
        }
    }

    [Fact]
    public void Bf16_gemm_rounds_both_operands_and_accumulates_in_fp32()
    {
        int m = 9, n = 20, k = 300;
        float[] a = Random(m * k, 4), w = Random(n * k, 5), b = Random(n, 6);
        float[] ar = a.Select(BFloat16.Round).ToArray(), wr = w.Select(BFloat16.Round).ToArray();
        float[] br = b.Select(BFloat16.Round).ToArray();
        var expected = new float[m * n];
        CpuMath.GemmReference(ar, m, k, wr, n, br, CpuActivation.None, expected);
        var c = new float[m * n];
        fixed (float* pa = a, pc = c)
        {
            CpuMath.Gemm(pa, k, m, PackedWeight.FromRows([w], n, k, [b], roundToBf16: true), pc, n,
                CpuActivation.None, roundAToBf16: true);
        }
        for (int i = 0; i < c.Length; i++)
        {
            // Products of bf16 values are exact in fp32; only the fp32 sum order differs.
            Assert.True(Math.Abs(c[i] - expected[i]) <= 2e-5f * (1 + Math.Abs(expected[i])),
                $"[{i}]: {c[i]} vs {expected[i]}");
        }
    }

    [Fact]
    public void Gelu_variants_match_double_precision_definitions()
    {
        for (double x = -12; x <= 12; x += 0.013)
        {
            double tanhRef = 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + (0.044715 * x * x * x))));
            double erfRef = 0.5 * x * (1 + Erf(x / Math.Sqrt(2)));
            var v = System.Runtime.Intrinsics.Vector256.Create((float)x);
            float vt = CpuMath.Apply(CpuActivation.GeluTanh, v)[3];
            float ve = CpuMath.Apply(CpuActivation.GeluErf, v)[5];
            Assert.True(Math.Abs(vt - tanhRef) <= 2e-6 * (1 + Math.Abs(tanhRef)), $"tanh gelu({x}): {vt} vs {tanhRef}");
            Assert.True(Math.Abs(ve - erfRef) <= 2e-6 * (1 + Math.Abs(erfRef)), $"erf gelu({x}): {ve} vs {erfRef}");
            Assert.True(Math.Abs(CpuMath.GeluTanh((float)x) - tanhRef) <= 2e-6 * (1 + Math.Abs(tanhRef)));
            Assert.True(Math.Abs(CpuMath.GeluErf((float)x) - erfRef) <= 2e-6 * (1 + Math.Abs(erfRef)));
        }
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(3, 13)]
    [InlineData(700, 768)]
    public void Add_layer_norm_matches_double_reference(int rows, int dim)
    {
        float[] x = Random(rows * dim, 7, 3f), r = Random(rows * dim, 8), g = Random(dim, 9);
        float[] beta = Random(dim, 10);
        var dst = new float[rows * dim];
        fixed (float* px = x, pr = r, pg = g, pb = beta, pd = dst)
        {
            CpuMath.AddLayerNorm(px, dim, pr, dim, rows, dim, pg, pb, 1e-5f, pd, dim);
        }
        for (int i = 0; i < rows; i++)
        {
            double[] v = Enumerable.Range(0, dim).Select(j => (double)x[(i * dim) + j] + r[(i * dim) + j]).ToArray();
            double mean = v.Average(), variance = v.Select(t => (t - mean) * (t - mean)).Average();
            for (int j = 0; j < dim; j++)
            {
                double e = ((v[j] - mean) / Math.Sqrt(variance + 1e-5) * g[j]) + beta[j];
                Assert.True(Math.Abs(dst[(i * dim) + j] - e) <= 1e-5 * (1 + Math.Abs(e)),
                    $"[{i},{j}]: {dst[(i * dim) + j]} vs {e}");
            }
        }
    }

    // erf by its Taylor series (|x| < 3) or continued fraction of erfc, in double.
    private static double Erf(double x)
    {
        double ax = Math.Abs(x);
        if (ax < 3)
        {
            double sum = 0, term = ax;
            for (int n = 0; n < 200; n++)
            {
                sum += term / ((2 * n) + 1);
                term *= -ax * ax / (n + 1);
            }
            return Math.Sign(x) * 2 / Math.Sqrt(Math.PI) * sum;
        }
        double f = 0;
        for (int n = 60; n >= 1; n--)
        {
            f = n / 2.0 / (ax + f);
        }
        double erfc = Math.Exp(-ax * ax) / Math.Sqrt(Math.PI) / (ax + f);
        return Math.Sign(x) * (1 - erfc);
    }
}
