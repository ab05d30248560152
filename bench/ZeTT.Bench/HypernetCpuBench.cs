using System.Runtime.Intrinsics;
using System.Text.Json;
using ZeTT.Ops.Cpu;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.Tensors;
using ZeTT.Runtime.Tokenizers;

namespace ZeTT.Bench;

/// <summary>
/// <c>hypernet-cpu</c>: the hypernetwork on the CPU at the xlm-roberta-base hypernetwork's size
/// (H 768, I 1536, 12 heads, L 7 + language position, 3 layers, rescale and bias on; random
/// weights), in tokens/s and needed GFLOP/s against this machine's fp32 peak, fp32 and bf16
/// weights, and the same padded forward in PyTorch on this machine.
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
        object? pytorch = null;
        double graphRealisticSeconds = 0;
        double flopsRealistic = 0, flopsUniform = 0;
        using var cpu = new CpuBackend();
        foreach (HypernetPrecision precision in new[] { HypernetPrecision.Float32, HypernetPrecision.BFloat16 })
        {
            using var graph = new HypernetPredictor(cpu, weights, source, precision);
            flopsRealistic = NeededFlops(realistic, config);
            flopsUniform = NeededFlops(uniform, config);
            Dictionary<string, object> Measure(string label, int[] ids, double flops)
            {
                double seconds = Alternate([() => HypernetBatching.PredictAll(graph, ids, Rows, 3)],
                    repeats: 3)[0];
                double tokensPerSecond = Rows / seconds;
                double gflops = flops / seconds / 1e9;
                Console.WriteLine($"{precision,-9} {label,-10} graph: {tokensPerSecond,7:F0} tokens/s, "
                    + $"{gflops,5:F1} GFLOP/s needed ({100 * gflops / peak.PeakGflops:F1}% of peak)");
                if (precision == HypernetPrecision.Float32 && ids == realistic)
                {
                    graphRealisticSeconds = seconds;
                }
                return new Dictionary<string, object>
                {
                    ["tokens_per_second"] = Math.Round(tokensPerSecond, 1),
                    ["needed_gflops"] = Math.Round(gflops, 2),
                    ["percent_of_peak"] = Math.Round(100 * gflops / peak.PeakGflops, 1),
                    ["median_seconds"] = seconds,
                    ["needed_mflop_per_token"] = Math.Round(flops / Rows / 1e6, 2),
                };
            }
            var realResult = Measure("realistic", realistic, flopsRealistic);
            if (precision == HypernetPrecision.Float32)
            {
                pytorch = PyTorchPadded(realistic);
            }
            var uni = Measure("uniform", uniform, flopsUniform);
            results[precision == HypernetPrecision.Float32 ? "fp32" : "bf16"] = new
            {
                max_batch_size = graph.MaxBatchSize,
                realistic = realResult,
                uniform = uni,
            };
        }
        if (pytorch is JsonElement torch && torch.TryGetProperty("gflops", out JsonElement g))
        {
            // PyTorch computes the padded forward; ours skips padding, so compare the time to
            // the same predictions: PyTorch's padded GFLOP/s counts padding it need not compute.
            double torchTokens = torch.GetProperty("tokens_per_second").GetDouble();
            double oursTokens = Rows / graphRealisticSeconds;
            Console.WriteLine($"fp32 realistic: graph {oursTokens:F0} tokens/s, PyTorch (padded) "
                + $"{torchTokens:F0} tokens/s: {oursTokens / torchTokens:F2}x");
            results["fp32_graph_over_pytorch_tokens_per_second"] = Math.Round(oursTokens / torchTokens, 3);
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
            gemm_kernel = GemmKernels.Best.ToString(),
            path = "HypernetGraph on CpuBackend (HypernetPredictor), medians of 3; bf16: bf16 "
                + "weights read in place, fp32 activations",
            peak_gflops = Math.Round(peak.PeakGflops, 1),
            peak_estimate = peak.How,
            results,
        };
        string path = Path.Combine(context.OutputDirectory, "hypernet-cpu.json");
        File.WriteAllText(path, JsonSerializer.Serialize(json, new JsonSerializerOptions { WriteIndented = true }));
        Console.WriteLine($"wrote {path}");
        return 0;
    }

    /// <summary>Multiply and add counted separately (GEMMs and attention) of what the graph
    /// computes for these rows (HypernetGraph's remarks): per row its non-padding positions,
    /// position 0 when that is padding (all L for a row of padding without a language
    /// position), the language position; the last layer's queries and feed-forward for the
    /// pooled position only.</summary>
    private static double NeededFlops(int[] ids, HypernetConfig c)
    {
        double h = c.HiddenSize, i = c.IntermediateSize, d = c.SourceWidth;
        int l = c.SurfaceMaxLen, lang = c.SequenceLength - l;
        double flops = 0;
        for (int r = 0; r < ids.Length / l; r++)
        {
            ReadOnlySpan<int> row = ids.AsSpan(r * l, l);
            int valid = l - row.Count(c.PadTokenId);
            double p = valid == 0 && lang == 0 ? l : valid + (row[0] == c.PadTokenId ? 1 : 0);
            double s = p + lang, keys = valid == 0 && lang == 0 ? l : valid + lang;
            double block = 2 * (2 * h * i);
            flops += p * ((2 * d * h) + block);
            for (int layer = 0; layer < c.NumLayers; layer++)
            {
                double q = layer == c.NumLayers - 1 ? 1 : s;
                flops += (s * 2 * h * 2 * h) + (q * ((2 * h * h * 2) + (2 * 2 * h * i)))
                    + (q * keys * 4 * h);
            }
            flops += block + (2 * h * c.NEmbd) + (c.PredictBias ? 2 * h : 0);
        }
        return flops;
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
    internal static (double, string) EstimatePeak()
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
