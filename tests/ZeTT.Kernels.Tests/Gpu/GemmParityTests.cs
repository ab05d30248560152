using ZeTT.Kernels.Blas;
using ZeTT.Kernels.Reference;

namespace ZeTT.Kernels.Tests.Gpu;

/// <summary>The row-major GEMM wrapper on the device against its CPU twin.</summary>
[Collection("gpu")]
public sealed class GemmParityTests(GpuSession session)
{
    public static TheoryData<int, int, int, bool> Sizes => new()
    {
        { 1, 1, 1, true },
        { 7, 33, 5, false },
        { 33, 7, 768, true },
        { 768, 1, 33, false },
        { 13, 768, 1536, true },
        { 129, 37, 100, false },
        { 56, 2304, 768, true },
    };

    /// <summary>fp32: CUBLAS_COMPUTE_32F, so no TF32. TF32 rounds inputs to 10 mantissa bits:
    /// for k = 768 random products its error is ~5e-3, far above this test's 1e-4 + 1e-4·|c|,
    /// which fp32 accumulation (~1e-5 here) meets.</summary>
    [Theory]
    [MemberData(nameof(Sizes))]
    public void Fp32_matches_the_twin(int m, int n, int k, bool transB)
    {
        foreach (GemmEngine engine in Enum.GetValues<GemmEngine>())
        {
            Check(m, n, k, transB, KernelDType.F32, engine, 1e-4, 1e-4);
        }
    }

    /// <summary>bf16 inputs (the twin gets the same rounded values), fp32 accumulation: products
    /// of bf16 are exact in fp32, so the tolerance is the fp32 one.</summary>
    [Theory]
    [MemberData(nameof(Sizes))]
    public void Bf16_matches_the_twin_on_rounded_inputs(int m, int n, int k, bool transB)
    {
        foreach (GemmEngine engine in Enum.GetValues<GemmEngine>())
        {
            Check(m, n, k, transB, KernelDType.BF16, engine, 1e-4, 1e-4);
        }
    }

    private void Check(int m, int n, int k, bool transB, KernelDType type, GemmEngine engine,
        double atol, double rtol)
    {
        var g = session.Require();
        int lda = k + 3, ldb = (transB ? k : n) + 1, ldc = n + 2;
        float[] a = Parity.Random(m + n, (long)m * lda), b = Parity.Random(k, (long)(transB
            ? n : k) * ldb);
        float[] c0 = Parity.Random(3, (long)m * ldc);
        if (type == KernelDType.BF16)
        {
            a = Parity.Bf16(a);
            b = Parity.Bf16(b);
        }
        DeviceView da = g.Upload(a, type), db = g.Upload(b, type), dc = g.Upload(c0);
        Gemm.Run(g.Blas, m, n, k, da, lda, db, ldb, transB, dc, ldc, alpha: 1.5f, beta: 0.5f,
            engine: engine);
        float[] expected = (float[])c0.Clone();
        CpuKernels.Gemm(m, n, k, a, lda, b, ldb, transB, expected, ldc, 1.5f, 0.5f);
        Parity.Close(expected, g.Download(dc), atol, rtol,
            $"gemm {engine} {type} m{m} n{n} k{k} transB {transB}");
    }

    [Fact]
    public void Strided_batched_matches_the_twin_per_batch()
    {
        var g = session.Require();
        int m = 9, n = 7, k = 33, batch = 3;
        long sa = m * k + 5, sb = n * k + 3, sc = m * n + 1;
        float[] a = Parity.Random(1, sa * batch), b = Parity.Random(2, sb * batch);
        foreach (GemmEngine engine in Enum.GetValues<GemmEngine>())
        {
            DeviceView da = g.Upload(a), db = g.Upload(b), dc = g.Allocate(sc * batch);
            Gemm.RunBatched(g.Blas, m, n, k, da, k, sa, db, k, sb, true, dc, n, sc, batch,
                engine: engine);
            float[] actual = g.Download(dc);
            for (int i = 0; i < batch; i++)
            {
                var expected = new float[m * n];
                CpuKernels.Gemm(m, n, k, a.AsSpan((int)(i * sa)), k, b.AsSpan((int)(i * sb)), k,
                    true, expected, n);
                Parity.Close(expected, actual.AsSpan((int)(i * sc), m * n), 1e-4, 1e-4,
                    $"batched {engine} #{i}");
            }
        }
    }
}
