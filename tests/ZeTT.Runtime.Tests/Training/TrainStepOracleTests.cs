using System.Runtime.InteropServices;
using ZeTT.Kernels;
using ZeTT.Ops;
using ZeTT.Ops.Cpu;
using ZeTT.Ops.Cuda;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.Models;
using ZeTT.Runtime.Tensors;
using ZeTT.Runtime.Tests.Hypernetwork;
using ZeTT.Runtime.Tests.Models;
using ZeTT.Runtime.Training;
using ZeTT.Runtime.Transfer;

namespace ZeTT.Runtime.Tests.Training;

/// <summary>
/// A whole main-stage step against PyTorch autograd (tests/fixtures/train, made by
/// scripts/golden_train_step.py in float64): the loss (LM + 0.5 × lexical) and the gradient of
/// every trainable hypernetwork parameter, for the causal untied tiny llama and the masked tied
/// tiny XLM-R (predicted bias, RoBERTa's pad positions), each with a padded vocabulary and
/// replaced special rows.
/// Bounds: CPU float64 — losses within 1e-7 relative, each gradient tensor
/// max |ours − ref| ≤ 1e-6 · max(|ref|, 1e-3). Both compute in float64 from the same fp32
/// values, but the op layer's constants are fp32 even on its float64 path (the attention scale
/// 1/√d_h rounds by up to 3e-8 relative, LayerNorm eps), which moves the losses by ~1e-9
/// relative (measured: 5e-10 llama, 2e-9 XLM-R); a wrong term is off by percent. CUDA fp32 — losses 1e-4 relative, gradients
/// 2e-3 · max |ref| per tensor (fp32 through ~60 ops forward and back; a wrong formula is off
/// by tens of percent).
/// </summary>
public sealed class TrainStepOracleTests
{
    public static TheoryData<string> Families() => ["llama", "xlm-roberta"];

    [Theory]
    [MemberData(nameof(Families))]
    public void Cpu_step_equals_pytorch_autograd(string family) =>
        Check(family, new CpuBackend(), DType.F64, 1e-7, 1e-6);

    [Theory]
    [MemberData(nameof(Families))]
    public void Cuda_step_equals_pytorch_autograd(string family)
    {
        Assert.SkipUnless(Cuda.IsAvailable, Cuda.UnavailableReason);
        using var backend = new CudaBackend();
        Check(family, backend, DType.F32, 1e-4, 2e-3);
    }

    private static void Check(string family, IOpBackend backend, DType dtype, double lossBound,
        double gradBound)
    {
        string dir = Path.Combine(HypernetFixture.RepoRoot, "tests", "fixtures", "train", family);
        string lmDir = GoldenLogitsTests.FixtureDir(family);
        HypernetConfig config = HypernetConfig.Load(dir);
        Dictionary<string, HostTensor> weights;
        using (SafetensorsFile model = SafetensorsFile.Open(Path.Combine(dir, "model.safetensors")))
        {
            weights = model.Tensors.ToDictionary(t => t.Name, t => model.ReadFloat32(t.Name));
        }
        HostTensor e;
        using (HfModelDirectory model = HfModelDirectory.Open(lmDir))
        {
            e = SourceEmbeddings.ReadStacked(model, withOutput: config.SeparateOutEmbeddings);
        }
        MainBatch batch;
        using (SafetensorsFile b = SafetensorsFile.Open(Path.Combine(dir, "batch.safetensors")))
        {
            int[] sf = b.ReadInt32("surface_forms", out int[] sfShape);
            int[] ids = b.ReadInt32("input_ids", out int[] idShape);
            batch = new MainBatch(sf, sfShape[0], ids, b.ReadInt32("targets", out _), idShape[0])
            {
                Mask = [.. b.ReadInt32("mask", out _).Select(m => m != 0)],
                SpecialIds = b.ReadInt32("special_ids", out _),
                SpecialIdsInReference = b.ReadInt32("special_ids_in_reference", out _),
            };
        }
        using SafetensorsFile golden = SafetensorsFile.Open(Path.Combine(dir, "golden.safetensors"));
        double[] Golden(string name) => MemoryMarshal.Cast<byte, double>(golden.GetSpan(name)).ToArray();

        var settings = new TrainSettings(new LearningRateSchedule(0, 0, 2, 1e-3, 40, 0.1));
        using var lm = LanguageModel.Open(lmDir, backend, dtype);
        using var trainer = new HypernetTrainer(config, weights, e, backend, settings, dtype);
        trainer.Gradients.Clear();
        (double loss, double lmLoss, double lexical) = trainer.MainLossAndGradients(lm, batch, 0.5);
        AssertRelative("loss", Golden("loss")[0], loss, lossBound);
        AssertRelative("lm loss", Golden("lm_loss")[0], lmLoss, lossBound);
        AssertRelative("lexical loss", Golden("lexical_loss")[0], lexical, lossBound);

        var expectedNames = golden.Tensors.Select(t => t.Name)
            .Where(n => n.StartsWith("grad.", StringComparison.Ordinal))
            .Select(n => n["grad.".Length..]).ToHashSet();
        Assert.Equal(expectedNames.Order(), trainer.Gradients.Names.Order());
        int nonzero = 0;
        foreach (string name in trainer.Gradients.Names)
        {
            double[] expected = Golden("grad." + name);
            double[] actual = trainer.Gradients.ToDoubles(name);
            Assert.Equal(expected.Length, actual.Length);
            double scale = expected.Max(Math.Abs), worst = 0;
            for (int i = 0; i < expected.Length; i++)
            {
                worst = Math.Max(worst, Math.Abs(actual[i] - expected[i]));
            }
            Assert.True(worst <= gradBound * Math.Max(scale, 1e-3),
                $"{family} {name}: max |ours − autograd| {worst:E3}, max |autograd| {scale:E3}");
            nonzero += scale > 0 ? 1 : 0;
        }
        // Every parameter that the step reaches has a gradient (causal LMs do not use the bias).
        Assert.True(nonzero >= trainer.Gradients.Names.Count - (family == "llama" ? 2 : 0),
            $"{nonzero} of {trainer.Gradients.Names.Count} gradients are nonzero");
    }

    private static void AssertRelative(string what, double expected, double actual, double bound) =>
        Assert.True(Math.Abs(actual - expected) <= bound * Math.Abs(expected),
            $"{what}: ours {actual:R}, autograd {expected:R}");
}
