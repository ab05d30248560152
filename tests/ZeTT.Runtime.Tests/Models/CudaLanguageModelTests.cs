using System.Text.Json;
using ZeTT.Kernels;
using ZeTT.Ops;
using ZeTT.Ops.Cuda;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Models;
using ZeTT.Runtime.Transfer;

namespace ZeTT.Runtime.Tests.Models;

/// <summary>
/// The language models on the CUDA op backend: the same golden logits and greedy generation as
/// on the CPU (<see cref="GoldenLogitsTests"/>, <see cref="GreedyGenerationTests"/>); skipped,
/// and reported as skipped, where there is no CUDA device.
/// Bounds (max |ours − ref| over max |ref|): fp32 weights 1e-4, as on the CPU — the CUDA path
/// computes in fp32 throughout (cuBLAS without TF32), so only summation order differs. bf16
/// weights 3e-2, the hypernetwork's bf16 bound: cuBLAS multiplies like with like, so each
/// fp32 activation is rounded to bf16 (2⁻⁹ relative) before a product with a bf16 weight, as
/// PyTorch does for a bf16 model; through two layers and the head that moves logits by up to
/// about 1 % of their scale, while a wrong formula moves them by tens of percent.
/// </summary>
public sealed class CudaLanguageModelTests
{
    private static CudaBackend Backend()
    {
        Assert.SkipUnless(Cuda.IsAvailable, Cuda.UnavailableReason);
        return new CudaBackend();
    }

    [Theory]
    [MemberData(nameof(GoldenLogitsTests.Families), MemberType = typeof(GoldenLogitsTests))]
    public void Cuda_logits_match_the_pytorch_reference(string family)
    {
        using CudaBackend backend = Backend();
        string dir = GoldenLogitsTests.FixtureDir(family);
        using SafetensorsFile golden = SafetensorsFile.Open(Path.Combine(dir, "golden.safetensors"));
        int[] ids = golden.ReadInt32("input_ids", out _);
        float[] expected = golden.ReadFloat32("logits").Data;
        float[] actual;
        using (var model = LanguageModel.Open(dir, backend))
        {
            using Tensor hidden = model.Forward(ids, 1);
            using Tensor head = model.HeadInput(hidden);
            using Tensor logits = model.Logits(head);
            using Tensor host = Tensor.Host(DType.F32, logits.Shape);
            backend.Download(logits, host);
            actual = host.ToFloats();
        }
        Assert.Equal(expected.Length, actual.Length);
        double scale = expected.Max(Math.Abs), worst = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            worst = Math.Max(worst, Math.Abs(actual[i] - expected[i]));
        }
        double bound = family == "llama-bf16" ? 3e-2 : 1e-4;
        Assert.True(worst <= bound * scale,
            $"{family}: max |diff| {worst:E2}, scale {scale:F3}, bound {bound}");
    }

    /// <summary>bf16 activations on CUDA (the tensor-core attention where heads are 64 or 128
    /// wide), within the bound of <see cref="Bf16ActivationLanguageModelTests"/> (4e-2 of the
    /// logit scale), which checks the same numerics on the CPU model of the bf16 path.</summary>
    [Theory]
    [MemberData(nameof(GoldenLogitsTests.Families), MemberType = typeof(GoldenLogitsTests))]
    public void Cuda_bf16_activation_logits_stay_within_the_bf16_bound(string family)
    {
        using CudaBackend backend = Backend();
        string dir = GoldenLogitsTests.FixtureDir(family);
        using SafetensorsFile golden = SafetensorsFile.Open(Path.Combine(dir, "golden.safetensors"));
        int[] ids = golden.ReadInt32("input_ids", out _);
        float[] expected = golden.ReadFloat32("logits").Data;
        float[] actual;
        using (var model = LanguageModel.Open(dir, backend, DType.BF16))
        {
            using Tensor hidden = model.Forward(ids, 1);
            using Tensor head = model.HeadInput(hidden);
            using Tensor logits = model.Logits(head);
            using Tensor host = Tensor.Host(DType.F32, logits.Shape);
            backend.Download(logits, host);
            actual = host.ToFloats();
        }
        double scale = expected.Max(Math.Abs), worst = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            worst = Math.Max(worst, Math.Abs(actual[i] - expected[i]));
        }
        Assert.True(worst <= 4e-2 * scale,
            $"{family}: max |diff| {worst:E2}, scale {scale:F3}, bound 4e-2 of the scale");
    }

    [Fact]
    public void Stories260K_reproduces_its_256_greedy_reference_tokens_with_cuda()
    {
        using CudaBackend backend = Backend();
        string dir = RepoPath(DefaultTransfer.AssetPath);
        using JsonDocument reference = JsonDocument.Parse(
            File.ReadAllText(Path.Combine(dir, "reference_greedy_generation.json")));
        int[] expected = [.. reference.RootElement.GetProperty("generated_ids").EnumerateArray()
            .Select(e => e.GetInt32())];
        int start = reference.RootElement.GetProperty("start_token").GetInt32();
        int[] generated;
        using (var model = LanguageModel.Open(dir, backend))
        {
            generated = [.. TextGeneration.Generate(model, [start], expected.Length,
                new SamplingOptions())];
        }
        Assert.Equal(256, expected.Length);
        Assert.Equal(expected, generated);
    }

    internal static string RepoPath(string relative)
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            string candidate = Path.Combine(d.FullName, relative);
            if (File.Exists(candidate) || Directory.Exists(candidate))
            {
                return candidate;
            }
        }
        throw new DirectoryNotFoundException(relative);
    }
}
