using ZeTT.Kernels;
using ZeTT.Ops;
using ZeTT.Ops.Cpu;
using ZeTT.Ops.Cuda;
using ZeTT.Runtime.Hypernetwork;

namespace ZeTT.Runtime.Tests.Hypernetwork;

/// <summary>
/// The hypernetwork graph on CUDA (<see cref="HypernetPredictor"/> over
/// <see cref="CudaBackend"/>) against the same graph on the CPU backend — the reference — and
/// against the PyTorch fixtures; skipped (reported as skipped) without a device. Tolerances:
/// fp32 |gpu − cpu| ≤ 1e-4·(|cpu| + rms(cpu)) (cuBLAS fp32 without TF32 and the CPU GEMM sum in
/// different orders, a few ulp per op through ~20 ops); bf16 relative Frobenius error ≤ 3e-2
/// per output against the CPU fp32 (bf16 GEMM inputs carry 2⁻⁹ relative error each, through
/// two projector blocks and the encoder; LayerNorms keep it from growing).
/// </summary>
public sealed class CudaHypernetGraphTests
{
    private static readonly CpuBackend Cpu = new();

    public static TheoryData<string> Configs => new()
    {
        "xlmr-like", "untied-separate-heads", "untied-single-head", "plain", "tied-single-head",
        "mono-L1",
    };

    internal static TinyOptions Options(string name) => name switch
    {
        "xlmr-like" => new TinyOptions(),
        "untied-separate-heads" => new TinyOptions(Separate: true, Lang: false),
        "untied-single-head" => new TinyOptions(Separate: true, SingleHead: true, Lang: false),
        "plain" => new TinyOptions(Rescale: false, Bias: false, Lang: false, Layers: 1),
        "tied-single-head" => new TinyOptions(SingleHead: true, Heads: 2, MaxLen: 16),
        "mono-L1" => new TinyOptions(Lang: false, MaxLen: 1),
        _ => throw new ArgumentOutOfRangeException(nameof(name)),
    };

    private static CudaBackend Gpu()
    {
        Assert.SkipUnless(Cuda.IsAvailable, Cuda.UnavailableReason);
        return new CudaBackend();
    }

    [Theory]
    [MemberData(nameof(Configs))]
    public void Fp32_equals_the_cpu_graph_in_batches(string config)
    {
        using CudaBackend gpu = Gpu();
        TinyOptions o = Options(config);
        var (weights, source) = TinyHypernet.Create(o, 11);
        const int rows = 53;
        int lang = o.Lang ? 2 : -1;
        int[] ids = CpuPaddingSkipTests.MixedRows(o, rows, seed: 5);
        using var cpu = new HypernetPredictor(Cpu, weights, source, HypernetPrecision.Float32);
        // A batch of 16 forces four batches through the reused device workspaces.
        using var cuda = new HypernetPredictor(gpu, weights, source, HypernetPrecision.Float32,
            maxBatchSize: 16);
        Assert.StartsWith("cuda: ", cuda.Name, StringComparison.Ordinal);
        HypernetOutput expected = cpu.Predict(ids, rows, lang);
        CompareOutputs(expected, HypernetBatching.PredictAll(cuda, ids, rows, lang));
        CompareOutputs(expected, HypernetBatching.PredictAll(cuda, ids, rows, lang));
    }

    [Theory]
    [MemberData(nameof(Configs))]
    public void Bf16_stays_within_its_stated_tolerance(string config)
    {
        using CudaBackend gpu = Gpu();
        TinyOptions o = Options(config);
        var (weights, source) = TinyHypernet.Create(o, 12);
        const int rows = 23;
        int lang = o.Lang ? 0 : -1;
        int[] ids = CpuPaddingSkipTests.MixedRows(o, rows, seed: 6);
        using var cpu = new HypernetPredictor(Cpu, weights, source, HypernetPrecision.Float32);
        HypernetOutput expected = cpu.Predict(ids, rows, lang);
        // bf16 activations (the default on CUDA), then bf16 weights over fp32 activations.
        foreach (DType activations in new[] { DType.BF16, DType.F32 })
        {
            using var cuda = new HypernetPredictor(gpu, weights, source,
                HypernetPrecision.BFloat16, activationDType: activations);
            Assert.Equal(activations, cuda.ActivationDType);
            HypernetOutput actual = cuda.Predict(ids, rows, lang);
            RelativeError(expected.EmbeddingsIn, actual.EmbeddingsIn, $"e_in ({activations})");
            if (expected.EmbeddingsOut is not null)
            {
                RelativeError(expected.EmbeddingsOut, actual.EmbeddingsOut!,
                    $"e_out ({activations})");
            }
            if (expected.Bias is not null)
            {
                RelativeError(expected.Bias, actual.Bias!, $"bias ({activations})");
            }
        }
        using var byDefault = new HypernetPredictor(gpu, weights, source,
            HypernetPrecision.BFloat16);
        Assert.Equal(DType.BF16, byDefault.ActivationDType);
    }

    [Theory]
    [MemberData(nameof(CpuHypernetParityTests.Cases), MemberType = typeof(CpuHypernetParityTests))]
    public void Cuda_matches_the_pytorch_fixtures(string set, string name)
    {
        using CudaBackend gpu = Gpu();
        HypernetFixture f = HypernetFixture.LoadOrSkip(set, name);
        foreach (var (precision, tolerance) in new[]
        {
            (HypernetPrecision.Float32, CpuHypernetParityTests.Fp32Tolerance),
            (HypernetPrecision.BFloat16, CpuHypernetParityTests.Bf16Tolerance),
        })
        {
            using var cuda = new HypernetPredictor(gpu, f.Weights, f.SourceEmbeddings, precision);
            CpuHypernetParityTests.AssertClose(f, cuda.Predict(f.SurfaceForms, f.Rows,
                f.LangIndex), tolerance);
        }
    }

    [Fact]
    public void Training_backward_on_cuda_equals_the_cpu_backward()
    {
        using CudaBackend gpu = Gpu();
        var o = new TinyOptions(Separate: true, Lang: true);
        var (weights, source) = TinyHypernet.Create(o, 19);
        const int rows = 17;
        int[] ids = CpuPaddingSkipTests.MixedRows(o, rows, seed: 8);
        Dictionary<string, float[]> Gradients(IOpBackend ops)
        {
            using HypernetParameters p = HypernetParameters.FromWeights(weights, ops, DType.F32);
            using Tensor hostE = Tensor.FromFloats(source.Data, source.Shape[0], source.Shape[1]);
            using var graph = new HypernetGraph(weights.Config, p, hostE);
            using HypernetParameters g = p.ZerosLike();
            using HypernetPass pass = graph.Forward(ids, rows, 1);
            using Tensor ones = Tensor.FromFloats(Enumerable.Repeat(1f, rows * o.NEmbd).ToArray(),
                rows, o.NEmbd);
            Tensor d = ops.Upload(ones);
            graph.Backward(pass, d, d, null, g);
            if (!ReferenceEquals(d, ones))
            {
                d.Dispose();
            }
            return g.Names.ToDictionary(n => n, n => Array.ConvertAll(g.ToDoubles(n), x => (float)x));
        }
        Dictionary<string, float[]> want = Gradients(Cpu), got = Gradients(gpu);
        foreach ((string name, float[] w) in want)
        {
            Compare(w, got[name], name);
        }
    }

    [Fact]
    public void Without_cuda_device_cuda_says_why()
    {
        Assert.SkipWhen(Cuda.IsAvailable, "CUDA is available here");
        var (weights, source) = TinyHypernet.Create(new TinyOptions(), 1);
        var e = Assert.Throws<ZettException>(() => HypernetPredictor.Create("cuda", weights,
            source, HypernetPrecision.Float32, 0, null));
        Assert.Contains(Cuda.UnavailableReason, e.Message, StringComparison.Ordinal);
        var log = new List<string>();
        using HypernetPredictor auto = HypernetPredictor.Create("auto", weights, source,
            HypernetPrecision.Float32, 0, log.Add);
        Assert.Equal("cpu", auto.Name);
        Assert.Contains("no usable CUDA device", Assert.Single(log), StringComparison.Ordinal);
    }

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

    internal static void Compare(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double rms = Math.Sqrt(expected.Average(v => (double)v * v));
        for (int i = 0; i < expected.Length; i++)
        {
            double tol = 1e-4 * (Math.Abs(expected[i]) + rms);
            Assert.True(Math.Abs(actual[i] - expected[i]) <= tol,
                $"{what}[{i}]: {actual[i]} vs {expected[i]} (tolerance {tol:E2})");
        }
    }

    internal static void RelativeError(float[] expected, float[] actual, string what)
    {
        double num = 0, den = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            num += (actual[i] - (double)expected[i]) * (actual[i] - expected[i]);
            den += (double)expected[i] * expected[i];
        }
        double rel = Math.Sqrt(num / den);
        Assert.True(rel <= 3e-2, $"{what}: bf16 relative error {rel:E2} exceeds 3e-2");
    }
}
