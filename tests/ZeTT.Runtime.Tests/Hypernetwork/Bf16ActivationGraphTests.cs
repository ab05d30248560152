using ZeTT.Ops;
using ZeTT.Ops.Cpu;
using ZeTT.Runtime.Hypernetwork;

namespace ZeTT.Runtime.Tests.Hypernetwork;

/// <summary>
/// The hypernetwork graph with bf16 activations (what <c>--dtype bf16</c> runs on CUDA), here
/// on <see cref="Bf16ActivationBackend"/>, the CPU model of a bf16-storage, fp32-compute
/// backend: within the bf16 bounds of the CUDA tests against the fp32 CPU graph and of the
/// parity tests against the PyTorch fixtures, with every activation stored in bf16 and the
/// statistics and outputs in fp32.
/// </summary>
public sealed class Bf16ActivationGraphTests
{
    private static readonly CpuBackend Cpu = new();

    [Theory]
    [MemberData(nameof(CudaHypernetGraphTests.Configs), MemberType = typeof(CudaHypernetGraphTests))]
    public void Bf16_activations_stay_within_the_bf16_bound_of_the_fp32_graph(string config)
    {
        TinyOptions o = CudaHypernetGraphTests.Options(config);
        var (weights, source) = TinyHypernet.Create(o, 12);
        const int rows = 23;
        int lang = o.Lang ? 0 : -1;
        int[] ids = CpuPaddingSkipTests.MixedRows(o, rows, seed: 6);
        using var fp32 = new HypernetPredictor(Cpu, weights, source, HypernetPrecision.Float32);
        var (ops, probe) = Bf16ActivationBackend.Create();
        using var bf16 = new HypernetPredictor(ops, weights, source, HypernetPrecision.BFloat16,
            maxBatchSize: 8, ownsBackend: true, activationDType: DType.BF16);
        Assert.Equal(DType.BF16, bf16.ActivationDType);
        HypernetOutput expected = fp32.Predict(ids, rows, lang);
        HypernetOutput actual = HypernetBatching.PredictAll(bf16, ids, rows, lang);
        CudaHypernetGraphTests.RelativeError(expected.EmbeddingsIn, actual.EmbeddingsIn, "e_in");
        Assert.Equal(expected.EmbeddingsOut is null, actual.EmbeddingsOut is null);
        if (expected.EmbeddingsOut is not null)
        {
            CudaHypernetGraphTests.RelativeError(expected.EmbeddingsOut, actual.EmbeddingsOut!,
                "e_out");
        }
        Assert.Equal(expected.Bias is null, actual.Bias is null);
        if (expected.Bias is not null)
        {
            CudaHypernetGraphTests.RelativeError(expected.Bias, actual.Bias!, "bias");
        }
        // The activations did go through bf16: every GEMM, norm and attention call had bf16
        // operands, and the outputs differ from the fp32 graph's.
        Assert.Equal(probe.Calls[nameof(IOpBackend.Linear)], probe.Bf16Calls[nameof(IOpBackend.Linear)]);
        Assert.Equal(probe.Calls[nameof(IOpBackend.LayerNormForward)],
            probe.Bf16Calls[nameof(IOpBackend.LayerNormForward)]);
        if (o.Layers > 0)
        {
            Assert.Equal(probe.Calls[nameof(IOpBackend.AttentionForward)],
                probe.Bf16Calls[nameof(IOpBackend.AttentionForward)]);
        }
        Assert.False(expected.EmbeddingsIn.SequenceEqual(actual.EmbeddingsIn));
    }

    [Theory]
    [MemberData(nameof(CpuHypernetParityTests.Cases), MemberType = typeof(CpuHypernetParityTests))]
    public void Bf16_activations_match_the_pytorch_fixtures_within_the_bf16_tolerance(string set,
        string name)
    {
        HypernetFixture f = HypernetFixture.LoadOrSkip(set, name);
        var (ops, _) = Bf16ActivationBackend.Create();
        using var p = new HypernetPredictor(ops, f.Weights, f.SourceEmbeddings,
            HypernetPrecision.BFloat16, ownsBackend: true, activationDType: DType.BF16);
        CpuHypernetParityTests.AssertClose(f, p.Predict(f.SurfaceForms, f.Rows, f.LangIndex),
            CpuHypernetParityTests.Bf16Tolerance);
    }

    [Fact]
    public void Activations_default_to_fp32_on_the_cpu_and_other_dtypes_are_refused()
    {
        var (weights, source) = TinyHypernet.Create(new TinyOptions(), 3);
        using var p = new HypernetPredictor(Cpu, weights, source, HypernetPrecision.BFloat16);
        Assert.Equal(DType.F32, p.ActivationDType);
        var e = Assert.Throws<ArgumentException>(() => new HypernetPredictor(Cpu, weights, source,
            HypernetPrecision.Float32, activationDType: DType.F16));
        Assert.Contains("inference activations are F32 (the parameters') or BF16, not F16",
            e.Message, StringComparison.Ordinal);
    }
}
