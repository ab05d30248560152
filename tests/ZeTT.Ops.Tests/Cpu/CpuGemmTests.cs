using ZeTT.Ops.Cpu;

namespace ZeTT.Ops.Tests.Cpu;

/// <summary>
/// <see cref="CpuGemm"/> against a float64 scalar reference: every transpose and operand type,
/// each micro-kernel forced, on sizes that are empty, single, not multiples of any tile (MR 12/6/4,
/// NR 32/16/8), deeper than one k block (KC 256) and large; plus bit-identity across kernels and
/// thread counts.
/// </summary>
public sealed unsafe class CpuGemmTests
{
    private static readonly GemmKernel[] Kernels = [GemmKernel.Scalar, GemmKernel.Avx2, GemmKernel.Avx512];

    public static TheoryData<string, bool, bool, GemmType, GemmType> AllCombinations()
    {
        var data = new TheoryData<string, bool, bool, GemmType, GemmType>();
        foreach (GemmKernel kernel in Kernels)
        {
            foreach (bool ta in new[] { false, true })
            {
                foreach (bool tb in new[] { false, true })
                {
                    foreach (GemmType at in Enum.GetValues<GemmType>())
                    {
                        foreach (GemmType bt in Enum.GetValues<GemmType>())
                        {
                            data.Add(kernel.ToString(), ta, tb, at, bt);
                        }
                    }
                }
            }
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(AllCombinations))]
    public void MatchesFloat64Reference(string kernelName, bool transA, bool transB, GemmType aType,
        GemmType bType)
    {
        GemmKernel kernel = Enum.Parse<GemmKernel>(kernelName);
        Assert.SkipUnless(GemmKernels.IsSupported(kernel), $"{kernel} does not run on this CPU");
        // 29×45: no tile multiple; k 300 > KC; α, β ≠ 1 and padded leading dimensions.
        Check(kernel, transA, transB, 29, 45, 300, 0.75f, aType, bType, 1.5f, pad: 3, seed: 1);
        Check(kernel, transA, transB, 13, 33, 7, 1f, aType, bType, 0f, pad: 0, seed: 2);
    }

    public static TheoryData<int, int, int> AwkwardSizes() => new()
    {
        { 0, 0, 0 }, { 0, 5, 3 }, { 4, 0, 3 }, { 3, 4, 0 }, { 1, 1, 1 }, { 1, 37, 19 },
        { 37, 1, 19 }, { 11, 7, 1 }, { 12, 32, 256 }, { 13, 33, 257 }, { 25, 70, 513 },
        { 200, 97, 600 }, { 2, 300, 40 },
    };

    [Theory]
    [MemberData(nameof(AwkwardSizes))]
    public void AwkwardSizesOnEveryKernel(int m, int n, int k)
    {
        foreach (GemmKernel kernel in Kernels.Where(GemmKernels.IsSupported))
        {
            Check(kernel, false, true, m, n, k, 1f, GemmType.F32, GemmType.F32, 0.5f, pad: 1, seed: m + n + k);
            Check(kernel, true, false, m, n, k, -2f, GemmType.BF16, GemmType.F16, 0f, pad: 0, seed: m + k);
        }
    }

    [Fact]
    public void LargeProblemAcrossColumnBlocks()
    {
        // k·n beyond the per-call packed-B budget (8 Mi floats) splits B into column blocks.
        int m = 40, n = 2200, k = 4000;
        Check(GemmKernels.Best, false, true, m, n, k, 1f, GemmType.F32, GemmType.BF16, 0f, pad: 0, seed: 5);
    }

    [Fact]
    public void KernelsAgreeBitForBit()
    {
        int m = 77, n = 81, k = 700;
        var a = new StoredMatrix(GemmType.F32, m, k, k, 11);
        var b = new StoredMatrix(GemmType.BF16, n, k, k, 12);
        foreach ((float alpha, float beta) in new[] { (1f, 0f), (0.75f, 1.5f), (-1f, 1f) })
        {
            float[] reference = Run(GemmKernel.Scalar, 0, a, b, m, n, k, alpha, beta);
            foreach (GemmKernel kernel in Kernels.Where(GemmKernels.IsSupported))
            {
                Assert.Equal(reference, Run(kernel, 0, a, b, m, n, k, alpha, beta));
            }
        }
    }

    [Fact]
    public void SameResultForAnyThreadCount()
    {
        // 150·200·700 multiply-adds: parallel; the task split changes with the thread count.
        int m = 150, n = 200, k = 700;
        var a = new StoredMatrix(GemmType.F32, m, k, k, 21);
        var b = new StoredMatrix(GemmType.F32, n, k, k, 22);
        foreach (GemmKernel kernel in Kernels.Where(GemmKernels.IsSupported))
        {
            float[] one = Run(kernel, 1, a, b, m, n, k);
            foreach (int threads in new[] { 2, 3, 5, 16, 0 })
            {
                Assert.Equal(one, Run(kernel, threads, a, b, m, n, k));
            }
        }
    }

    public static TheoryData<bool, bool, GemmType, GemmType> SmallMCombinations()
    {
        var data = new TheoryData<bool, bool, GemmType, GemmType>();
        foreach (bool ta in new[] { false, true })
        {
            foreach (bool tb in new[] { false, true })
            {
                foreach (GemmType bt in Enum.GetValues<GemmType>())
                {
                    data.Add(ta, tb, ta ? GemmType.BF16 : GemmType.F32, bt);
                }
            }
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(SmallMCombinations))]
    public void SmallMPathMatchesReferenceAndTheTiledKernelsBitForBit(bool transA, bool transB,
        GemmType aType, GemmType bType)
    {
        // m ≤ 8 on the AVX-512 kernel takes GemmSmallM (B read in place, no 12-row tiles): its
        // rows must equal the scalar and AVX2 tiled kernels' bit for bit, for any thread count,
        // and the rows of a larger m (tiled) product. n 100 leaves an edge panel of 4 columns;
        // k 600 spans three k blocks, the last partial; 1000 columns run in parallel.
        Assert.SkipUnless(GemmKernels.IsSupported(GemmKernel.Avx512), "AVX-512 does not run on this CPU");
        const int bigM = 19;
        foreach ((int n, int k) in new[] { (100, 600), (1000, 300), (32, 7), (5, 1) })
        {
            int aRows = transA ? k : bigM, aCols = transA ? bigM : k;
            int bRows = transB ? n : k, bCols = transB ? k : n;
            var a = new StoredMatrix(aType, aRows, aCols, aCols + 1, n + k);
            var b = new StoredMatrix(bType, bRows, bCols, bCols + 3, n + k + 1);
            foreach ((float alpha, float beta) in new[] { (1f, 0f), (0.75f, 1.5f), (-1f, 1f) })
            {
                float[] tall = RunAny(GemmKernel.Scalar, 0, transA, transB, bigM, n, k, alpha, a, b, beta);
                for (int m = 1; m <= GemmSmallM.MaxRows; m++)
                {
                    Assert.True(GemmSmallM.Applies(GemmKernel.Avx512, m));
                    float[] expected = RunAny(GemmKernel.Scalar, 0, transA, transB, m, n, k, alpha, a, b, beta);
                    Assert.Equal(tall.AsSpan(0, m * n).ToArray(), expected);
                    foreach (int threads in new[] { 1, 2, 3, 0 })
                    {
                        Assert.Equal(expected, RunAny(GemmKernel.Avx512, threads, transA, transB, m, n, k,
                            alpha, a, b, beta));
                    }
                }
            }
        }
        for (int m = 1; m <= GemmSmallM.MaxRows; m++)
        {
            Check(GemmKernel.Avx512, transA, transB, m, 45, 300, 0.75f, aType, bType, 1.5f, pad: 3, seed: m);
            Check(GemmKernel.Avx512, transA, transB, m, 70, 513, 1f, aType, bType, 0f, pad: 0, seed: m + 9);
        }
    }

    [Theory]
    [InlineData(GemmType.F32)]
    [InlineData(GemmType.BF16)]
    public void FusedSmallMPathIsBitIdenticalOnFourKilobyteStrides(GemmType bType)
    {
        // At m ≤ 2 a Linear weight ([n, k]) goes through the fused in-register transpose. Rows a
        // multiple of 4 KB apart (ld 1024…4096, fp32 and bf16) share an L1 set; k 2000 and 1013
        // end in partial k blocks and steps (the gathered tail); n 2080 × 4096 is over 16 MB in
        // both types, so it is also prefetched; 1040 × 4100 fp32 (over 16 MB, rows not 4 KB
        // apart) takes the 8 × 8 ymm kernel. At m = 1 the ones under 16 MB pair their k blocks
        // half a panel at a time (k 2000 and 1013: a partial last block in a pair; an odd count
        // is in the test above, k 600). Each must equal the scalar tiled kernel bit for bit, on
        // one thread and on all.
        Assert.SkipUnless(GemmKernels.IsSupported(GemmKernel.Avx512), "AVX-512 does not run on this CPU");
        foreach ((int n, int k, int ld) in new[]
            { (64, 2048, 2048), (96, 4096, 4096), (32, 2000, 2048), (64, 1013, 1024), (2080, 4096, 4096),
              (1040, 4100, 4100) })
        {
            var a = new StoredMatrix(GemmType.F32, 2, k, k, n + k);
            var b = new StoredMatrix(bType, n, k, ld, n + k + 1);
            foreach ((float alpha, float beta) in new[] { (1f, 0f), (0.75f, 1.5f) })
            {
                for (int m = 1; m <= 2; m++)
                {
                    float[] expected = RunAny(GemmKernel.Scalar, 0, false, true, m, n, k, alpha, a, b, beta);
                    foreach (int threads in new[] { 1, 0 })
                    {
                        Assert.Equal(expected, RunAny(GemmKernel.Avx512, threads, false, true, m, n, k,
                            alpha, a, b, beta));
                    }
                }
            }
        }
    }

    [Fact]
    public void BetaZeroOverwritesNaNAndLeavesThePaddingAlone()
    {
        int m = 5, n = 9, k = 4, ldc = 12;
        var a = new StoredMatrix(GemmType.F32, m, k, k, 31);
        var b = new StoredMatrix(GemmType.F32, k, n, n, 32);
        var c = new float[m * ldc];
        Array.Fill(c, float.NaN);
        fixed (float* pc = c)
        {
            CpuGemm.Gemm(false, false, m, n, k, 1f, a.Pointer, GemmType.F32, k, b.Pointer,
                GemmType.F32, n, 0f, pc, ldc);
        }
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < ldc; j++)
            {
                Assert.Equal(j >= n, float.IsNaN(c[(i * ldc) + j]));
            }
        }
    }

    [Fact]
    public void RejectsBadArguments()
    {
        float* x = stackalloc float[1];
        nint p = (nint)x;
        Assert.Throws<ArgumentOutOfRangeException>(() => Call(-1, 1, 1, false, 1, 1, 1, p));
        Assert.Throws<ArgumentOutOfRangeException>(() => Call(2, 3, 4, false, 3, 3, 3, p));
        Assert.Throws<ArgumentOutOfRangeException>(() => Call(2, 3, 4, true, 4, 3, 3, p));
        Assert.Throws<ArgumentOutOfRangeException>(() => Call(2, 3, 4, false, 4, 3, 2, p));
        Assert.Throws<ArgumentNullException>(() => Call(2, 3, 4, false, 4, 3, 3, 0));
        // Nothing to read or write: any pointer is fine.
        Call(0, 3, 4, false, 4, 3, 3, 0);
    }

    private static void Call(int m, int n, int k, bool transB, long lda, long ldb, long ldc, nint p) =>
        CpuGemm.Gemm(false, transB, m, n, k, 1f, (void*)p, GemmType.F32, lda, (void*)p,
            GemmType.F32, ldb, 0f, (float*)p, ldc);

    private static float[] Run(GemmKernel kernel, int threads, StoredMatrix a, StoredMatrix b, int m,
        int n, int k, float alpha = 1f, float beta = 0f)
    {
        var c = new float[m * n];
        for (int i = 0; i < c.Length; i++)
        {
            c[i] = (i % 13) - 6.5f;
        }
        fixed (float* pc = c)
        {
            CpuGemm.Gemm(kernel, threads, false, true, m, n, k, alpha, a.Pointer, a.Type, a.Ld,
                b.Pointer, b.Type, b.Ld, beta, pc, n);
        }
        return c;
    }

    /// <summary>The first m rows of op(A) (A holds at least m) times op(B) on the given kernel,
    /// into a C that starts as a fixed pattern.</summary>
    private static float[] RunAny(GemmKernel kernel, int threads, bool transA, bool transB, int m,
        int n, int k, float alpha, StoredMatrix a, StoredMatrix b, float beta)
    {
        var c = new float[m * n];
        for (int i = 0; i < c.Length; i++)
        {
            c[i] = (i % 13) - 6.5f;
        }
        fixed (float* pc = c)
        {
            CpuGemm.Gemm(kernel, threads, transA, transB, m, n, k, alpha, a.Pointer, a.Type, a.Ld,
                b.Pointer, b.Type, b.Ld, beta, pc, n);
        }
        return c;
    }

    private static void Check(GemmKernel kernel, bool transA, bool transB, int m, int n, int k,
        float alpha, GemmType aType, GemmType bType, float beta, int pad, int seed)
    {
        int aRows = transA ? k : m, aCols = transA ? m : k;
        int bRows = transB ? n : k, bCols = transB ? k : n;
        var a = new StoredMatrix(aType, aRows, aCols, aCols + pad, seed);
        var b = new StoredMatrix(bType, bRows, bCols, bCols + pad, seed + 1000);
        long ldc = n + pad;
        var c = new float[Math.Max(1, m * ldc)];
        var rng = new Random(seed + 2000);
        for (int i = 0; i < c.Length; i++)
        {
            c[i] = (float)((rng.NextDouble() * 2) - 1);
        }
        float[] c0 = (float[])c.Clone();
        (double[] expected, double[] bound) =
            GemmReference.Compute(transA, transB, m, n, k, alpha, a, b, beta, c0, ldc);
        fixed (float* pc = c)
        {
            CpuGemm.Gemm(kernel, 0, transA, transB, m, n, k, alpha, a.Pointer, aType, a.Ld,
                b.Pointer, bType, b.Ld, beta, pc, ldc);
        }
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double got = c[(i * ldc) + j], want = expected[(i * n) + j];
                Assert.True(Math.Abs(got - want) <= bound[(i * n) + j],
                    $"{kernel} {m}x{n}x{k} tA={transA} tB={transB} {aType}x{bType}: C[{i},{j}] = "
                    + $"{got}, expected {want} ± {bound[(i * n) + j]:E2}");
            }
            for (long j = n; j < ldc; j++)
            {
                Assert.Equal(c0[(i * ldc) + j], c[(i * ldc) + j]);
            }
        }
    }
}
