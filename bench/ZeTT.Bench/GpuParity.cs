using System.Text.Json.Nodes;
using ZeTT.Ops.Cuda;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.Tensors;

namespace ZeTT.Bench;

/// <summary>
/// The parity numbers of <c>hypernet-gpu.json</c>: the CUDA backend in fp32 and bf16 on every
/// case of the golden fixtures (tests/fixtures/hypernet, the reference's own PyTorch outputs;
/// the reconstruction set when the golden one is absent). Same measures as the GPU tests state
/// their bounds in: fp32 max over elements of |gpu − ref| / (|ref| + rms(ref)) (bound 1e-4);
/// bf16 the relative Frobenius error ‖gpu − ref‖ / ‖ref‖ per output (bound 3e-2).
/// </summary>
internal static class GpuParity
{
    public static JsonObject Measure(string repoRoot)
    {
        string set = "hypernet";
        string root = Path.Combine(repoRoot, "tests", "fixtures", set);
        if (!Directory.Exists(root))
        {
            set = "hypernet-reconstruction";
            root = Path.Combine(repoRoot, "tests", "fixtures", set);
        }
        double fp32 = 0, bf16 = 0;
        var cases = new JsonArray();
        foreach (string dir in Directory.GetDirectories(root).Order(StringComparer.Ordinal))
        {
            if (!File.Exists(Path.Combine(dir, "outputs.safetensors")))
            {
                continue;
            }
            HypernetCheckpoint checkpoint = HypernetCheckpoint.Load(dir);
            if (checkpoint.Config.ConcatLastHiddenState)
            {
                continue; // CPU-only option, refused by the CUDA backend up front
            }
            int[] ids;
            int rows, lang;
            HostTensor source;
            using (SafetensorsFile inputs = SafetensorsFile.Open(Path.Combine(dir, "inputs.safetensors")))
            {
                ids = inputs.ReadInt32("surface_forms", out int[] shape);
                rows = shape[0];
                source = inputs.ReadFloat32("source_embeddings");
                lang = inputs.ReadInt32("lang_index", out _)[0];
            }
            var expected = new List<(string Name, float[] Data)>();
            using (SafetensorsFile outputs = SafetensorsFile.Open(Path.Combine(dir, "outputs.safetensors")))
            {
                foreach (string name in new[] { "embeddings_in", "embeddings_out", "bias" })
                {
                    if (outputs.Contains(name))
                    {
                        expected.Add((name, outputs.ReadFloat32(name).Data));
                    }
                }
            }
            double caseFp32 = 0, caseBf16 = 0;
            foreach (HypernetPrecision precision in new[] { HypernetPrecision.Float32, HypernetPrecision.BFloat16 })
            {
                using var gpu = new HypernetPredictor(new CudaBackend(), checkpoint.Weights, source,
                    precision, ownsBackend: true);
                HypernetOutput got = gpu.Predict(ids, rows, lang);
                foreach (var (name, want) in expected)
                {
                    float[] have = name switch
                    {
                        "embeddings_in" => got.EmbeddingsIn,
                        "embeddings_out" => got.EmbeddingsOut
                            ?? throw new InvalidOperationException($"{dir}: no embeddings_out"),
                        _ => got.Bias ?? throw new InvalidOperationException($"{dir}: no bias"),
                    };
                    if (precision == HypernetPrecision.Float32)
                    {
                        caseFp32 = Math.Max(caseFp32, ElementwiseRelative(want, have));
                    }
                    else
                    {
                        caseBf16 = Math.Max(caseBf16, Frobenius(want, have));
                    }
                }
            }
            fp32 = Math.Max(fp32, caseFp32);
            bf16 = Math.Max(bf16, caseBf16);
            cases.Add(new JsonObject
            {
                ["case"] = Path.GetFileName(dir),
                ["fp32_max_rel_err"] = caseFp32,
                ["bf16_rel_frobenius_err"] = caseBf16,
            });
            Console.WriteLine($"  parity {Path.GetFileName(dir),-28} fp32 {caseFp32:E2}  bf16 {caseBf16:E2}");
        }
        if (cases.Count == 0)
        {
            throw new InvalidOperationException($"{root}: no fixture case to measure parity on");
        }
        return new JsonObject
        {
            ["fixtures"] = $"tests/fixtures/{set}",
            ["fp32_max_rel_err"] = fp32,
            ["bf16_max_rel_err"] = bf16,
            ["fp32_measure"] = "max |gpu - ref| / (|ref| + rms(ref)) over elements (bound 1e-4)",
            ["bf16_measure"] = "max over outputs of ||gpu - ref|| / ||ref|| (bound 3e-2)",
            ["cases"] = cases,
        };
    }

    private static double ElementwiseRelative(float[] want, float[] have)
    {
        if (want.Length != have.Length)
        {
            throw new InvalidOperationException($"length {have.Length}, expected {want.Length}");
        }
        double sq = 0;
        foreach (float w in want)
        {
            sq += (double)w * w;
        }
        double rms = Math.Sqrt(sq / Math.Max(1, want.Length));
        double worst = 0;
        for (int i = 0; i < want.Length; i++)
        {
            double err = Math.Abs((double)have[i] - want[i]) / (Math.Abs(want[i]) + rms);
            worst = Math.Max(worst, double.IsNaN(err) ? double.PositiveInfinity : err);
        }
        return worst;
    }

    private static double Frobenius(float[] want, float[] have)
    {
        if (want.Length != have.Length)
        {
            throw new InvalidOperationException($"length {have.Length}, expected {want.Length}");
        }
        double num = 0, den = 0;
        for (int i = 0; i < want.Length; i++)
        {
            double d = (double)have[i] - want[i];
            num += d * d;
            den += (double)want[i] * want[i];
        }
        double rel = Math.Sqrt(num / Math.Max(den, 1e-30));
        return double.IsNaN(rel) ? double.PositiveInfinity : rel;
    }
}
