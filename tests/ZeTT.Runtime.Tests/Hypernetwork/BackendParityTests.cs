using ZeTT.Kernels;
using ZeTT.Runtime.Hypernetwork;

namespace ZeTT.Runtime.Tests.Hypernetwork;

/// <summary>
/// Ties the backends together: the CUDA backend is tested against a twin forward built from the
/// kernels' CPU twins (CudaHypernetBackendTests), so that twin is checked here against the CPU
/// backend — the project's reference — on every tiny configuration; and on a GPU the CUDA backend
/// is compared with the CPU backend directly and with the PyTorch fixtures.
/// </summary>
public sealed class BackendParityTests
{
    public static TheoryData<string> Configs => CudaHypernetBackendTests.Configs;

    private static TinyOptions Options(string name) => CudaHypernetBackendTests.Options(name);

    /// <summary>1e-4 relative to (|ref| + rms), as CudaHypernetBackendTests states: both sides
    /// are fp32 with different summation orders (the twin accumulates in double).</summary>
    private static void Compare(float[] expected, float[] actual, string what) =>
        CudaHypernetBackendTests.Compare(expected, actual, what);

    internal static void CompareOutputs(HypernetOutput expected, HypernetOutput actual)
    {
        Compare(expected.EmbeddingsIn, actual.EmbeddingsIn, "e_in");
        Assert.Equal(expected.EmbeddingsOut is null, actual.EmbeddingsOut is null);
        if (expected.EmbeddingsOut is not null)
        {
            Compare(expected.EmbeddingsOut, actual.EmbeddingsOut!, "e_out");
        }
        Assert.Equal(expected.Bias is null, actual.Bias is null);
        if (expected.Bias is not null)
        {
            Compare(expected.Bias, actual.Bias!, "bias");
        }
    }

    [Theory]
    [MemberData(nameof(Configs))]
    public void Twin_forward_equals_the_cpu_backend(string config)
    {
        TinyOptions o = Options(config);
        var (weights, source) = TinyHypernet.Create(o, 11);
        int rows = 37, lang = o.Lang ? 2 : -1;
        int[] ids = TinyHypernet.SurfaceForms(o, rows, 5);
        using var cpu = new CpuHypernetBackend(weights, source, HypernetPrecision.Float32);
        CompareOutputs(TwinHypernetForward.Run(weights, source, ids, rows, lang),
            cpu.Predict(ids, rows, lang));
    }

    [Theory]
    [MemberData(nameof(Configs))]
    public void Cuda_fp32_equals_the_cpu_backend(string config)
    {
        Assert.SkipUnless(Cuda.IsAvailable, Cuda.UnavailableReason);
        TinyOptions o = Options(config);
        var (weights, source) = TinyHypernet.Create(o, 23);
        int rows = 53, lang = o.Lang ? 1 : -1;
        int[] ids = TinyHypernet.SurfaceForms(o, rows, 9);
        using var cpu = new CpuHypernetBackend(weights, source, HypernetPrecision.Float32);
        using var gpu = new CudaHypernetBackend(weights, source, HypernetPrecision.Float32);
        CompareOutputs(cpu.Predict(ids, rows, lang), gpu.Predict(ids, rows, lang));
    }

    [Theory]
    [MemberData(nameof(CpuHypernetParityTests.Cases), MemberType = typeof(CpuHypernetParityTests))]
    public void Cuda_matches_the_pytorch_fixtures(string set, string name)
    {
        Assert.SkipUnless(Cuda.IsAvailable, Cuda.UnavailableReason);
        HypernetFixture f = HypernetFixture.LoadOrSkip(set, name);
        Assert.SkipWhen(f.Config.ConcatLastHiddenState,
            "hn_concat_last_hidden_state is CPU-only (no released checkpoint uses it)");
        foreach (var (precision, tolerance) in new[]
        {
            (HypernetPrecision.Float32, CpuHypernetParityTests.Fp32Tolerance),
            (HypernetPrecision.BFloat16, CpuHypernetParityTests.Bf16Tolerance),
        })
        {
            using var gpu = new CudaHypernetBackend(f.Weights, f.SourceEmbeddings, precision);
            CpuHypernetParityTests.AssertClose(f, gpu.Predict(f.SurfaceForms, f.Rows, f.LangIndex),
                tolerance);
        }
    }
}
