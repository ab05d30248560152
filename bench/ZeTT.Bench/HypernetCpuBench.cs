using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using System.Text.Json;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.Tensors;
using ZeTT.Runtime.Tokenizers;

namespace ZeTT.Bench;

/// <summary>
/// <c>hypernet-cpu</c>: the CPU backend at the xlm-roberta-base hypernetwork's size (H 768,
/// I 1536, 12 heads, L 7 + language position, 3 layers, rescale and bias on; random weights),
/// in tokens/s and GFLOP/s against this machine's fp32 peak, plus the blocked SGEMM against a
/// TensorPrimitives.Dot-per-element GEMM on the model's largest matmul shape.
/// </summary>
internal static class HypernetCpuBench
{
    private const int Vocab = 20_000;
    private const int Rows = 1024;

    public static int Run(BenchContext context)
    {
        HypernetConfig config = HypernetConfig.Parse("""
            {"model_type": "zett_hypernetwork", "n_embd": 768, "hn_hidden_size": 768,
             "hn_intermediate_size": 1536, "hn_n_layers": 3, "hn_num_attention_heads": 12,
             "hn_surface_maxlen": 7, "hn_rescale_embeddings": true, "hn_predict_bias": true,
             "hn_embed_lang_id": true, "n_langs": 26, "hn_n_extra_tokens": 161,
             "original_vocab_size": 20000, "pad_token_id": 1,
             "hn_embed_using_source_embeddings": true}
            """, "xlm-roberta-base-sized");
        var rng = new Random(7);
        HypernetWeights weights = RandomHypernet.Create(config, seed: 7);
        HostTensor source = RandomHypernet.Source(Vocab, 768, seed: 8);
        int l = config.SurfaceMaxLen;

        // Realistic lengths: GPT-2's vocabulary under the converted Mistral tokenizer (L 7).
        // Each benchmark row takes the padding pattern of a randomly drawn GPT-2 token and
        // random ids of this network's vocabulary at its real positions.
        SurfaceFormMatrix real = TransferTokenizers.Prepare(
            Path.Combine("tests", "data", "tokenizers", "mistral-7b-v0.1"), "gpt2", null, l).SurfaceForms;
        var histogram = new int[l + 1];
        for (int r = 0; r < real.Rows; r++)
        {
            histogram[real.Row(r).LastIndexOfAnyExcept(real.PadId) + 1]++;
        }
        double meanPieces = histogram.Select((c, n) => (double)c * n).Sum() / real.Rows;
        Console.WriteLine($"gpt2 under mistral-7b-v0.1, L {l}: {real.Rows} tokens, mean "
            + $"{meanPieces:F3} pieces/token, lengths 0..{l}: {string.Join(' ', histogram)}");
        var realistic = new int[Rows * l];
        for (int r = 0; r < Rows; r++)
        {
            ReadOnlySpan<int> row = real.Row(rng.Next(real.Rows));
            for (int p = 0; p < l; p++)
            {
                realistic[(r * l) + p] = row[p] == real.PadId ? config.PadTokenId : rng.Next(2, Vocab + 161);
            }
        }
        // Uniform lengths 1..L (what this benchmark used before).
        var uniform = new int[Rows * l];
        for (int r = 0; r < Rows; r++)
        {
            int used = 1 + rng.Next(l);
            for (int p = 0; p < l; p++)
            {
                uniform[(r * l) + p] = p < used ? rng.Next(2, Vocab + 161) : config.PadTokenId;
            }
        }

        var results = new Dictionary<string, object>();
        (double PeakGflops, string How) peak = EstimatePeak();
        foreach (HypernetPrecision precision in new[] { HypernetPrecision.Float32, HypernetPrecision.BFloat16 })
        {
            using var backend = new CpuHypernetBackend(weights, source, precision);
            double needed = backend.Flops(realistic, Rows);
            (double TokensPerSecond, object Json) Measure(string label, int[] ids, bool skipPadding)
            {
                backend.SkipPadding = skipPadding;
                double executed = backend.Flops(ids, Rows);
                backend.SkipPadding = true;
                double useful = backend.Flops(ids, Rows);
                backend.SkipPadding = skipPadding;
                double seconds = BenchContext.MedianSeconds(
                    () => HypernetBatching.PredictAll(backend, ids, Rows, 3, config), repeats: 3);
                backend.SkipPadding = true;
                double tokensPerSecond = Rows / seconds;
                double gflops = executed / seconds / 1e9, usefulGflops = useful / seconds / 1e9;
                Console.WriteLine($"{precision,-9} {label,-18}: {tokensPerSecond,7:F0} tokens/s, "
                    + $"executed {gflops,5:F1} GFLOP/s ({100 * gflops / peak.PeakGflops:F1}% of peak), "
                    + $"needed {usefulGflops,5:F1} GFLOP/s ({100 * usefulGflops / peak.PeakGflops:F1}%), "
                    + $"{executed / Rows / 1e6:F1} MFLOP/token executed");
                return (tokensPerSecond, new
                {
                    tokens_per_second = Math.Round(tokensPerSecond, 1),
                    executed_gflops = Math.Round(gflops, 2),
                    executed_percent_of_peak = Math.Round(100 * gflops / peak.PeakGflops, 1),
                    needed_gflops = Math.Round(usefulGflops, 2),
                    needed_percent_of_peak = Math.Round(100 * usefulGflops / peak.PeakGflops, 1),
                    executed_mflop_per_token = Math.Round(executed / Rows / 1e6, 2),
                    needed_mflop_per_token = Math.Round(useful / Rows / 1e6, 2),
                    median_seconds = seconds,
                });
            }
            var unpacked = Measure("realistic unpacked", realistic, skipPadding: false);
            var packed = Measure("realistic packed", realistic, skipPadding: true);
            var packedUniform = Measure("uniform packed", uniform, skipPadding: true);
            double speedup = packed.TokensPerSecond / unpacked.TokensPerSecond;
            Console.WriteLine($"{precision,-9} packing speedup on realistic lengths: {speedup:F2}x");
            results[precision == HypernetPrecision.Float32 ? "fp32" : "bf16_emulated"] = new
            {
                max_batch_size = backend.MaxBatchSize,
                unpacked_mflop_per_token = Math.Round(backend.FlopsPerRow / 1e6, 2),
                needed_mflop_per_token_realistic = Math.Round(needed / Rows / 1e6, 2),
                realistic_unpacked = unpacked.Json,
                realistic_packed = packed.Json,
                uniform_packed = packedUniform.Json,
                packing_speedup_realistic = Math.Round(speedup, 2),
            };
        }
        results["gemm_2048x768x1536"] = CompareGemms(rng, peak.PeakGflops);
        var json = new
        {
            benchmark = "hypernet-cpu",
            shape = "H 768, I 1536, 12 heads, L 7 + lang position, 3 layers, n_embd 768",
            rows = Rows,
            lengths = new
            {
                realistic = $"padding patterns of {Rows} random rows of gpt2's vocabulary under the "
                    + $"converted mistral-7b-v0.1 tokenizer, L {l}",
                realistic_vocab_mean_pieces_per_token = Math.Round(meanPieces, 3),
                realistic_vocab_length_histogram_0_to_L = histogram,
                uniform = $"1..{l} uniformly",
            },
            cores = Environment.ProcessorCount,
            simd = Vector512.IsHardwareAccelerated ? "AVX-512" : Vector256.IsHardwareAccelerated ? "AVX2" : "none",
            peak_gflops = Math.Round(peak.PeakGflops, 1),
            peak_estimate = peak.How,
            results,
        };
        string path = Path.Combine(context.OutputDirectory, "hypernet-cpu.json");
        File.WriteAllText(path, JsonSerializer.Serialize(json, new JsonSerializerOptions { WriteIndented = true }));
        Console.WriteLine($"wrote {path}");
        return 0;
    }

    /// <summary>Our blocked kernel against one TensorPrimitives.Dot per output element (W rows are
    /// contiguous in PyTorch layout, so that is the obvious vectorised alternative).</summary>
    private static unsafe object CompareGemms(Random rng, double peak)
    {
        int m = 2048, k = 768, n = 1536;
        float[] a = Fill(m * k, rng, 1f), w = Fill(n * k, rng, 0.03f), b = Fill(n, rng, 0.1f);
        var c = new float[m * n];
        PackedWeight packed = PackedWeight.FromRows([w], n, k, [b], roundToBf16: false);
        double flops = 2.0 * m * n * k;
        double blocked = BenchContext.MedianSeconds(() =>
        {
            fixed (float* pa = a, pc = c)
            {
                CpuMath.Gemm(pa, k, m, packed, pc, n, CpuActivation.GeluErf, roundAToBf16: false);
            }
        }, repeats: 3);
        double dot = BenchContext.MedianSeconds(() =>
            Parallel.For(0, m, i =>
            {
                ReadOnlySpan<float> row = a.AsSpan(i * k, k);
                for (int j = 0; j < n; j++)
                {
                    c[(i * n) + j] = TensorPrimitives.Dot(row, w.AsSpan(j * k, k)) + b[j];
                }
            }), repeats: 1);
        Console.WriteLine($"GEMM {m}x{k}x{n}: blocked {flops / blocked / 1e9:F1} GFLOP/s "
            + $"({100 * flops / blocked / 1e9 / peak:F1}% of peak), TensorPrimitives.Dot "
            + $"{flops / dot / 1e9:F1} GFLOP/s");
        return new
        {
            blocked_gflops = Math.Round(flops / blocked / 1e9, 2),
            tensorprimitives_dot_gflops = Math.Round(flops / dot / 1e9, 2),
        };
    }

    /// <summary>Cores × SIMD lanes × 2 FMA pipes × 2 FLOP × clock. The clock is the first
    /// "cpu MHz" of /proc/cpuinfo (the nominal clock on VMs; turbo may exceed it), 2 FMA pipes
    /// per core is what AMD Zen 2-4 and Intel server cores since Skylake-SP have.</summary>
    private static (double, string) EstimatePeak()
    {
        double mhz = 0;
        if (File.Exists("/proc/cpuinfo"))
        {
            string? line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(s => s.StartsWith("cpu MHz", StringComparison.Ordinal));
            if (line is not null)
            {
                _ = double.TryParse(line[(line.IndexOf(':') + 1)..].Trim(), System.Globalization.CultureInfo.InvariantCulture, out mhz);
            }
        }
        if (mhz <= 0)
        {
            mhz = 2500;
        }
        int lanes = Vector512.IsHardwareAccelerated ? 16 : 8;
        int cores = Environment.ProcessorCount;
        double peak = cores * lanes * 2 * 2 * mhz / 1000;
        return (peak, $"{cores} cores x {lanes} fp32 lanes x 2 FMA pipes x 2 FLOP x {mhz:F0} MHz "
            + "(/proc/cpuinfo)");
    }

    private static float[] Fill(int n, Random rng, float scale)
    {
        var a = new float[n];
        for (int i = 0; i < n; i++)
        {
            a[i] = (float)((rng.NextDouble() * 2) - 1) * scale;
        }
        return a;
    }
}
