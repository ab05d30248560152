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

    /// <summary>The cuBLASLt epilogues (bias, ReLU, GELU tanh, bias + either) against the twin
    /// followed by the same bias and activation in double. The cases are the ones cuBLASLt
    /// supports on every GPU since Ampere (bias in D's dtype), so the fused path must be taken:
    /// a false from <see cref="Gemm.TryRunFused"/> here fails, rather than silently measuring
    /// the fallback. Tolerance: the fp32 GEMM's (GELU: see below), plus bf16 rounding of a
    /// bf16 output.</summary>
    [Theory]
    [InlineData(KernelDType.F32, KernelDType.F32)]
    [InlineData(KernelDType.BF16, KernelDType.F32)]
    [InlineData(KernelDType.BF16, KernelDType.BF16)]
    public void Fused_epilogues_are_taken_and_match_the_twin(KernelDType inType,
        KernelDType outType)
    {
        var g = session.Require();
        const int m = 37, n = 45, k = 90;
        float[] a = Parity.Random(21, m * k), b = Parity.Random(22, n * k);
        float[] bias = Parity.Random(23, n);
        if (inType == KernelDType.BF16)
        {
            a = Parity.Bf16(a);
            b = Parity.Bf16(b);
        }
        if (outType == KernelDType.BF16)
        {
            bias = Parity.Bf16(bias);
        }
        var product = new float[m * n];
        CpuKernels.Gemm(m, n, k, a, k, b, k, true, product, n);
        DeviceView da = g.Upload(a, inType), db = g.Upload(b, inType);
        DeviceView dBias = g.Upload(bias, outType);
        foreach (bool withBias in new[] { false, true })
        {
            foreach (GemmActivation act in Enum.GetValues<GemmActivation>())
            {
                if (!withBias && act == GemmActivation.None)
                {
                    continue;
                }
                DeviceView dc = g.Allocate(m * n, outType);
                Assert.True(Gemm.TryRunFused(g.Blas, true, m, n, k, da, k, db, k, dc, n,
                    withBias ? dBias : default, act),
                    $"cuBLASLt has no {act} epilogue (bias {withBias}) for {inType} -> {outType}");
                var expected = new float[m * n];
                for (int i = 0; i < m * n; i++)
                {
                    float v = product[i] + (withBias ? bias[i % n] : 0f);
                    v = act switch
                    {
                        GemmActivation.Relu => MathF.Max(v, 0f),
                        GemmActivation.GeluTanh => CpuKernels.GeluTanh(v),
                        _ => v,
                    };
                    expected[i] = outType == KernelDType.BF16 ? CpuKernels.RoundBFloat16(v) : v;
                }
                double rtol = outType == KernelDType.BF16 ? 1.0 / 128 : 1e-4;
                // cuBLASLt does not document how it evaluates tanh; the hardware approximation
                // (tanh.approx.f32, ~2⁻¹¹ relative) would give up to ~1e-3 on these |x| ≲ 10,
                // so GELU gets 2e-3 (the op layer uses this epilogue for bf16 outputs only).
                double atol = act == GemmActivation.GeluTanh ? 2e-3 : 1e-4;
                Parity.Close(expected, g.Download(dc), atol, rtol,
                    $"fused gemm {inType}->{outType} bias {withBias} {act}");
            }
        }
    }
}
