using ZeTT.Kernels.Blas;
using ZeTT.Kernels.Native;
using ZeTT.Kernels.Reference;

namespace ZeTT.Kernels.Tests;

/// <summary>The row-major → column-major swap and the GEMM twin, checked on the CPU.</summary>
public sealed class GemmMappingTests
{
    private static float[] Random(Random rng, int n) =>
        [.. Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1))];

    private static void NaiveRowMajor(int m, int n, int k, float[] a, int lda, float[] b,
        int ldb, bool transB, float[] c, int ldc, bool transA = false)
    {
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int p = 0; p < k; p++)
                {
                    float av = transA ? a[p * lda + i] : a[i * lda + p];
                    s += av * (double)(transB ? b[j * ldb + p] : b[p * ldb + j]);
                }
                c[i * ldc + j] = (float)s;
            }
        }
    }

    /// <summary>What cuBLAS computes: column-major C (m×n) = op(A)·op(B).</summary>
    private static void ColumnMajor(ColumnMajorGemm g, float[] a, float[] b, float[] c)
    {
        for (int i = 0; i < g.M; i++)
        {
            for (int j = 0; j < g.N; j++)
            {
                double s = 0;
                for (int p = 0; p < g.K; p++)
                {
                    float av = g.TransA == CublasOperation.T ? a[i * g.Lda + p] : a[p * g.Lda + i];
                    float bv = g.TransB == CublasOperation.T ? b[p * g.Ldb + j] : b[j * g.Ldb + p];
                    s += av * (double)bv;
                }
                c[j * g.Ldc + i] = (float)s;
            }
        }
    }

    [Theory]
    [InlineData(1, 1, 1, false)]
    [InlineData(7, 33, 5, true)]
    [InlineData(33, 7, 13, false)]
    [InlineData(5, 9, 31, true)]
    public void Swap_computes_the_row_major_product(int m, int n, int k, bool transB)
    {
        var rng = new Random(m * 1000 + n * 10 + k);
        int lda = k + 3, ldb = (transB ? k : n) + 2, ldc = n + 1;
        float[] a = Random(rng, m * lda), b = Random(rng, (transB ? n : k) * ldb);
        float[] expected = new float[m * ldc], actual = new float[m * ldc];
        NaiveRowMajor(m, n, k, a, lda, b, ldb, transB, expected, ldc);
        const ulong A = 0x1000, B = 0x2000, C = 0x3000;
        ColumnMajorGemm g = Gemm.ToColumnMajor(m, n, k, A, lda, B, ldb, transB, C, ldc);
        Assert.Equal(B, g.A);
        Assert.Equal(A, g.B);
        Assert.Equal(C, g.C);
        Assert.Equal((n, m, k), (g.M, g.N, g.K));
        ColumnMajor(g, b, a, actual);
        Assert.Equal(expected, actual);
    }

    [Theory]
    [InlineData(1, 1, 1, true, false)]
    [InlineData(7, 33, 5, true, true)]
    [InlineData(33, 7, 13, true, false)]
    [InlineData(5, 9, 31, false, true)]
    [InlineData(6, 4, 3, false, false)]
    public void Swap_with_transposed_a_computes_the_row_major_product(int m, int n, int k,
        bool transA, bool transB)
    {
        var rng = new Random(m * 977 + n * 31 + k);
        int lda = (transA ? m : k) + 2, ldb = (transB ? k : n) + 3, ldc = n + 1;
        float[] a = Random(rng, (transA ? k : m) * lda), b = Random(rng, (transB ? n : k) * ldb);
        float[] expected = new float[m * ldc], actual = new float[m * ldc];
        NaiveRowMajor(m, n, k, a, lda, b, ldb, transB, expected, ldc, transA);
        ColumnMajorGemm g = Gemm.ToColumnMajor(transA, transB, m, n, k, 0x1000, lda, 0x2000, ldb,
            0x3000, ldc);
        Assert.Equal(transA ? CublasOperation.T : CublasOperation.N, g.TransB);
        Assert.Equal(transB ? CublasOperation.T : CublasOperation.N, g.TransA);
        ColumnMajor(g, b, a, actual);
        Assert.Equal(expected, actual);
    }

    [Fact]
    public void Validation_takes_a_transposed_a_and_bf16_outputs_only_from_bf16_inputs()
    {
        // transA: A is stored [k, m] = [4, 6] with lda ≥ 6.
        var a = new DeviceView(0x1000, 4 * 6, KernelDType.BF16);
        var b = new DeviceView(0x9000, 4 * 5, KernelDType.BF16);
        var c = new DeviceView(0x20000, 6 * 5, KernelDType.BF16);
        Gemm.Validate(true, 6, 5, 4, a, 6, 0, b, 5, 0, false, c, 5, 0, 1);
        var e = Assert.Throws<ArgumentException>(() =>
            Gemm.Validate(true, 6, 5, 4, a, 4, 0, b, 5, 0, false, c, 5, 0, 1));
        Assert.Contains("leading dimension of a is 4, less than its 6 columns", e.Message,
            StringComparison.Ordinal);
        e = Assert.Throws<ArgumentException>(() => Gemm.Validate(false, 6, 5, 4,
            a with { DType = KernelDType.F32 }, 4, 0, b with { DType = KernelDType.F32 }, 5, 0,
            false, c, 5, 0, 1));
        Assert.Contains("c must be F32", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(1, 1, 1, false)]
    [InlineData(7, 33, 13, true)]
    [InlineData(33, 8, 7, false)]
    public void Twin_matches_the_naive_triple_loop_with_alpha_and_beta(int m, int n, int k,
        bool transB)
    {
        var rng = new Random(7 + m + n + k);
        int lda = k, ldb = transB ? k : n, ldc = n;
        float[] a = Random(rng, m * lda), b = Random(rng, (transB ? n : k) * ldb);
        float[] c0 = Random(rng, m * ldc), expected = new float[m * ldc];
        NaiveRowMajor(m, n, k, a, lda, b, ldb, transB, expected, ldc);
        for (int i = 0; i < expected.Length; i++)
        {
            expected[i] = 2f * expected[i] + 0.5f * c0[i];
        }
        float[] actual = (float[])c0.Clone();
        CpuKernels.Gemm(m, n, k, a, lda, b, ldb, transB, actual, ldc, alpha: 2f, beta: 0.5f);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.Equal(expected[i], actual[i], 1e-5f);
        }
    }

    [Fact]
    public void Validation_names_the_operand()
    {
        var a = new DeviceView(0x1000, 6 * 4, KernelDType.BF16);
        var b = new DeviceView(0x9000, 4 * 5, KernelDType.F32);
        var c = new DeviceView(0x20000, 6 * 5, KernelDType.F32);
        var e = Assert.Throws<ArgumentException>(() =>
            Gemm.Validate(6, 5, 4, a, 4, 0, b, 5, 0, false, c, 5, 0, 1));
        Assert.Contains("b must be BF16", e.Message, StringComparison.Ordinal);
        e = Assert.Throws<ArgumentException>(() => Gemm.Validate(6, 5, 4, a, 3, 0,
            b with { DType = KernelDType.BF16 }, 5, 0, false, c, 5, 0, 1));
        Assert.Contains("leading dimension of a is 3", e.Message, StringComparison.Ordinal);
        e = Assert.Throws<ArgumentException>(() => Gemm.Validate(6, 5, 4, a, 4, 0,
            b with { DType = KernelDType.BF16 }, 5, 0, false, c with { DType = KernelDType.I32 },
            5, 0, 1));
        Assert.Contains("c must be F32 or BF16", e.Message, StringComparison.Ordinal);
        e = Assert.Throws<ArgumentException>(() => Gemm.Validate(6, 5, 4, a with { Length = 40 }, 4, 10,
            b with { DType = KernelDType.BF16, Length = 40 }, 5, 20, false,
            c with { Length = 60 }, 5, 30, 2));
        Assert.Contains("batch stride of a (10)", e.Message, StringComparison.Ordinal);
        Gemm.Validate(6, 5, 4, a, 4, 0, b with { DType = KernelDType.BF16 }, 5, 0, false, c, 5,
            0, 1);
    }

    [Theory]
    [InlineData(0x1000ul, 256)]
    [InlineData(0x1004ul, 4)]
    [InlineData(0x1010ul, 16)]
    [InlineData(0x1002ul, 2)]
    public void Alignment_is_the_largest_power_of_two_up_to_256(ulong address, int expected) =>
        Assert.Equal(expected, Gemm.Alignment(address));

    [Fact]
    public void Heuristic_result_struct_has_the_header_size() =>
        Assert.Equal(96, BlasLayout.HeuristicResultSize);

    [Theory]
    [InlineData(false, GemmActivation.None, 1u)]
    [InlineData(true, GemmActivation.None, 4u)]
    [InlineData(false, GemmActivation.Relu, 2u)]
    [InlineData(true, GemmActivation.Relu, 6u)]
    [InlineData(false, GemmActivation.GeluTanh, 32u)]
    [InlineData(true, GemmActivation.GeluTanh, 36u)]
    public void Fused_gemm_epilogues_have_the_cublasLt_header_values(bool bias,
        GemmActivation activation, uint expected) =>
        Assert.Equal(expected, (uint)Gemm.Epilogue(bias, activation));
}
