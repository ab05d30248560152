using System.Runtime.Intrinsics;
using System.Text.Json;
using ZeTT.Ops.Cpu;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.Tensors;
using ZeTT.Runtime.Tokenizers;

namespace ZeTT.Bench;

/// <summary>
/// <c>hypernet-cpu</c>: the CPU backend at the xlm-roberta-base hypernetwork's size (H 768,
/// I 1536, 12 heads, L 7 + language position, 3 layers, rescale and bias on; random weights),
/// in tokens/s and GFLOP/s against this machine's fp32 peak, on the AVX2 and the AVX-512 GEMM
/// micro-kernel (before/after), and the same padded forward in PyTorch on this machine.
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
        GemmKernel[] kernels = new[] { GemmKernel.Avx2, GemmKernel.Avx512 }.Where(GemmKernels.IsSupported).ToArray();
        object? pytorch = null;
        double oursPadded = 0;
        foreach (HypernetPrecision precision in new[] { HypernetPrecision.Float32, HypernetPrecision.BFloat16 })
        {
            // The GEMM micro-kernel before (AVX2 6x16, what this backend ran until it shared
            // CpuGemm) and after (AVX-512 12x32), alternating repeat by repeat in this run.
            var backends = kernels.Select(k => new CpuHypernetBackend(weights, source, precision, 0,
                false, k)).ToArray();
            CpuHypernetBackend first = backends[0];
            double needed = first.Flops(realistic, Rows);
            Dictionary<string, object> Measure(string label, int[] ids, bool skipPadding)
            {
                first.SkipPadding = skipPadding;
                double executed = first.Flops(ids, Rows);
                first.SkipPadding = true;
                double useful = first.Flops(ids, Rows);
                foreach (CpuHypernetBackend b in backends)
                {
                    b.SkipPadding = skipPadding;
                }
                double[] medians = Alternate(backends.Select(b => (Action)(() =>
                    HypernetBatching.PredictAll(b, ids, Rows, 3, config))).ToArray(), repeats: 3);
                foreach (CpuHypernetBackend b in backends)
                {
                    b.SkipPadding = true;
                }
                var byKernel = new Dictionary<string, object>();
                for (int i = 0; i < backends.Length; i++)
                {
                    double seconds = medians[i];
                    double tokensPerSecond = Rows / seconds;
                    double gflops = executed / seconds / 1e9, usefulGflops = useful / seconds / 1e9;
                    Console.WriteLine($"{precision,-9} {label,-18} {kernels[i],-6}: {tokensPerSecond,7:F0} tokens/s, "
                        + $"executed {gflops,5:F1} GFLOP/s ({100 * gflops / peak.PeakGflops:F1}% of peak), "
                        + $"needed {usefulGflops,5:F1} GFLOP/s, {executed / Rows / 1e6:F1} MFLOP/token executed");
                    if (precision == HypernetPrecision.Float32 && !skipPadding && i == backends.Length - 1)
                    {
                        oursPadded = gflops;
                    }
                    byKernel[kernels[i].ToString().ToLowerInvariant()] = new
                    {
                        tokens_per_second = Math.Round(tokensPerSecond, 1),
                        executed_gflops = Math.Round(gflops, 2),
                        executed_percent_of_peak = Math.Round(100 * gflops / peak.PeakGflops, 1),
                        needed_gflops = Math.Round(usefulGflops, 2),
                        median_seconds = seconds,
                    };
                }
                byKernel["executed_mflop_per_token"] = Math.Round(executed / Rows / 1e6, 2);
                byKernel["needed_mflop_per_token"] = Math.Round(useful / Rows / 1e6, 2);
                return byKernel;
            }
            var unpacked = Measure("realistic unpacked", realistic, skipPadding: false);
            if (precision == HypernetPrecision.Float32)
            {
                pytorch = PyTorchPadded(realistic);
            }
            var packed = Measure("realistic packed", realistic, skipPadding: true);
            var packedUniform = Measure("uniform packed", uniform, skipPadding: true);
            results[precision == HypernetPrecision.Float32 ? "fp32" : "bf16_emulated"] = new
            {
                max_batch_size = first.MaxBatchSize,
                unpacked_mflop_per_token = Math.Round(first.FlopsPerRow / 1e6, 2),
                needed_mflop_per_token_realistic = Math.Round(needed / Rows / 1e6, 2),
                realistic_unpacked = unpacked,
                realistic_packed = packed,
                uniform_packed = packedUniform,
            };
            foreach (CpuHypernetBackend b in backends)
            {
                b.Dispose();
            }
        }
        if (pytorch is JsonElement torch && torch.TryGetProperty("gflops", out JsonElement g))
        {
            Console.WriteLine($"padded forward, fp32: ours {oursPadded:F1} GFLOP/s, PyTorch {g.GetDouble():F1} "
                + $"GFLOP/s: {oursPadded / g.GetDouble():F2}x");
            results["padded_fp32_ours_over_pytorch"] = Math.Round(oursPadded / g.GetDouble(), 3);
        }
        results["pytorch_padded_fp32"] = pytorch ?? "not run (needs /usr/bin/python3 with torch)";
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
            gemm_kernels = "avx2: 6x16 micro-kernel (the backend's GEMM before), avx512: 12x32 (after); "
                + "same run, alternating, medians of 3",
            peak_gflops = Math.Round(peak.PeakGflops, 1),
            peak_estimate = peak.How,
            results,
        };
        string path = Path.Combine(context.OutputDirectory, "hypernet-cpu.json");
        File.WriteAllText(path, JsonSerializer.Serialize(json, new JsonSerializerOptions { WriteIndented = true }));
        Console.WriteLine($"wrote {path}");
        return 0;
    }

    /// <summary>scripts/bench_cpu_pytorch_hypernet.py on the same padding patterns (the same
    /// padded forward in PyTorch, fp32, all cores); its JSON, or null without python3+torch.
    /// </summary>
    private static JsonElement? PyTorchPadded(int[] ids)
    {
        const string python = "/usr/bin/python3";
        string script = Path.Combine("scripts", "bench_cpu_pytorch_hypernet.py");
        if (!File.Exists(python) || !File.Exists(script))
        {
            return null;
        }
        string idsPath = Path.GetTempFileName();
        try
        {
            File.WriteAllBytes(idsPath, System.Runtime.InteropServices.MemoryMarshal.AsBytes(ids.AsSpan()).ToArray());
            var start = new System.Diagnostics.ProcessStartInfo(python)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            foreach (string a in new[] { script, "--ids", idsPath, "--threads",
                Environment.ProcessorCount.ToString(System.Globalization.CultureInfo.InvariantCulture),
                "--repeats", "3" })
            {
                start.ArgumentList.Add(a);
            }
            using var process = System.Diagnostics.Process.Start(start)!;
            string stdout = process.StandardOutput.ReadToEnd();
            string stderr = process.StandardError.ReadToEnd();
            process.WaitForExit();
            if (process.ExitCode != 0)
            {
                Console.WriteLine($"PyTorch anchor failed ({process.ExitCode}): {stderr.Trim()}");
                return null;
            }
            JsonElement result = JsonDocument.Parse(stdout).RootElement.Clone();
            Console.WriteLine($"PyTorch padded fp32: {result.GetProperty("tokens_per_second")} tokens/s, "
                + $"{result.GetProperty("gflops")} GFLOP/s");
            return result;
        }
        finally
        {
            File.Delete(idsPath);
        }
    }

    /// <summary>One warm-up of each action, then <paramref name="repeats"/> rounds of all in
    /// turn; median seconds per action.</summary>
    private static double[] Alternate(Action[] actions, int repeats)
    {
        foreach (Action a in actions)
        {
            a();
        }
        var times = actions.Select(_ => new double[repeats]).ToArray();
        for (int r = 0; r < repeats; r++)
        {
            for (int i = 0; i < actions.Length; i++)
            {
                long start = System.Diagnostics.Stopwatch.GetTimestamp();
                actions[i]();
                times[i][r] = System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds;
            }
        }
        return times.Select(t => t.Order().ElementAt(repeats / 2)).ToArray();
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
}
