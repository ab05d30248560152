using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using ZeTT.Ops;
using ZeTT.Ops.Cpu;
using ZeTT.Ops.Cuda;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.Models;
using ZeTT.Runtime.Tensors;
using ZeTT.Runtime.Training;
using ZeTT.Runtime.Transfer;

namespace ZeTT.Bench;

/// <summary>
/// <c>train-cpu</c> / <c>train-gpu</c>: one whole main-stage training step
/// (<see cref="HypernetTrainer.MainStep"/>: the hypernetwork's forward over the padded
/// vocabulary, the frozen LM's forward and backward, the cross-entropy and the lexical loss
/// (weight 0.5), the hypernetwork's backward, the clip and AdamW) on the CPU or CUDA backend,
/// fp32, against the same step in PyTorch eager (scripts/bench_train_pytorch.py, the math of
/// the golden fixtures) on the same weights and batch, in the same run: zett first, then
/// PyTorch, per shape. Shapes:
/// <list type="bullet">
/// <item><c>stories260K</c>: the built-in model (d 64, tied, 512 ids) and the hypernetwork of
/// scripts/train-stories260k.sh (H 64, I 128, 3 layers, 1 head, L 7).</item>
/// <item><c>tinyllama-reduced</c>: a random Llama of TinyLlama's kind at a quarter of its
/// width (d 512, MLP 1408, 8 query heads of 64 over 1 key/value head as TinyLlama's 32 over 4,
/// 32 000 ids, untied) and 4 layers, with a hypernetwork of its width (H 512, I 1024, 3 layers,
/// 8 heads, L 7; two output heads).</item>
/// </list>
/// The batch: a target vocabulary of <c>ZETT_BENCH_TRAIN_PIECES</c> rows (padded to a multiple
/// of 128 + 128, the padding masked; surface forms of 1..7 uniform random pieces), and
/// <c>ZETT_BENCH_TRAIN_BATCH</c> × <c>ZETT_BENCH_TRAIN_TOKENS</c> random ids with next-id
/// targets. Also the CPU time per step (user + system of the process), the steadier measure on
/// a shared machine. The hypernetwork: random weights, its rescalers initialised as `zett train` does
/// (the output scalers fitted on the batch's first 2 048 rows). Reported: median ms per step after a warm-up, tokens/s, the first step's losses of
/// both (the initial weights: they must agree), <see cref="TrainStepFlops"/> and MFU against
/// <c>ZETT_PEAK_TFLOPS</c> (CPU default: the estimate of hypernet-cpu).
/// </summary>
internal static class TrainBench
{
    private const int L = 7;
    private const double LexicalWeight = 0.5, LearningRate = 1e-4;

    private static readonly LlamaShape TinyLlamaReduced =
        new("tinyllama-reduced", "llama", 32000, 512, 1408, 4, 8, 1, 2048, 0);

    private sealed record Shape(string Name, HypernetShape Hypernet, int Pieces, int Batch,
        int Tokens);

    public static int Cpu(BenchContext context)
    {
        using var backend = new CpuBackend();
        (double peak, string how) = PeakFromEnvironment() ?? HypernetCpuBench.EstimatePeak();
        return Run(context, backend, "cpu", "train-cpu.json", peak * 1e9, how,
        [
            new("stories260K", new HypernetShape(64, 128, 3, 1, L), 2048, 8, 128),
            new(TinyLlamaReduced.Name, new HypernetShape(512, 1024, 3, 8, L), 1024, 4, 128),
        ], repeats: 5);
    }

    public static int Gpu(BenchContext context)
    {
        if (GpuBenchmarks.Skip())
        {
            return 0;
        }
        using var backend = new CudaBackend();
        (double peak, string how) = PeakFromEnvironment()
            ?? (0, "unknown (set ZETT_PEAK_TFLOPS for MFU)");
        return Run(context, backend, "cuda", "train-gpu.json", peak * 1e9, how,
        [
            new("stories260K", new HypernetShape(64, 128, 3, 1, L), 8192, 16, 128),
            new(TinyLlamaReduced.Name, new HypernetShape(512, 1024, 3, 8, L), 8192, 16, 128),
        ], repeats: 5);
    }

    /// <summary>ZETT_PEAK_TFLOPS as GFLOP/s, or null when unset.</summary>
    private static (double, string)? PeakFromEnvironment()
    {
        string? text = Environment.GetEnvironmentVariable("ZETT_PEAK_TFLOPS");
        if (string.IsNullOrEmpty(text))
        {
            return null;
        }
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double t)
            || t <= 0)
        {
            throw new ArgumentException($"ZETT_PEAK_TFLOPS '{text}' is not a positive number");
        }
        return (t * 1000, $"ZETT_PEAK_TFLOPS={text}");
    }

    private static int Env(string name, int fallback)
    {
        string? text = Environment.GetEnvironmentVariable(name);
        if (string.IsNullOrEmpty(text))
        {
            return fallback;
        }
        return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int v) && v > 0
            ? v : throw new ArgumentException($"{name} '{text}' is not a positive integer");
    }

    private static int Run(BenchContext context, IOpBackend backend, string device, string file,
        double peakFlops, string peakHow, Shape[] shapes, int repeats)
    {
        string root = Path.Combine(Path.GetTempPath(), $"zett-bench-train-{Environment.ProcessId}");
        var cases = new JsonArray();
        string loadBefore = LmBench.LoadAverage();
        int failures = 0;
        try
        {
            foreach (Shape defaults in shapes)
            {
                Shape s = defaults with
                {
                    Pieces = Env("ZETT_BENCH_TRAIN_PIECES", defaults.Pieces),
                    Batch = Env("ZETT_BENCH_TRAIN_BATCH", defaults.Batch),
                    Tokens = Env("ZETT_BENCH_TRAIN_TOKENS", defaults.Tokens),
                };
                JsonObject result = Measure(s, Path.Combine(root, s.Name), backend, device,
                    peakFlops, repeats);
                failures += result["pytorch"] is JsonObject ? 0 : 1;
                cases.Add(result);
            }
        }
        finally
        {
            if (Directory.Exists(root))
            {
                Directory.Delete(root, recursive: true);
            }
        }
        var json = new JsonObject
        {
            ["benchmark"] = Path.GetFileNameWithoutExtension(file),
            ["date"] = DateTime.UtcNow.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture),
            ["machine"] = device == "cpu" ? LmBench.CpuName() : backend is CudaBackend c
                ? c.DeviceName : device,
            ["cores"] = Environment.ProcessorCount,
            ["load_average_before_after"] = $"{loadBefore} / {LmBench.LoadAverage()}",
            ["step"] = "HypernetTrainer.MainStep: hypernetwork forward over every row, frozen LM "
                + "forward + backward, CE + 0.5 x lexical loss, hypernetwork backward, clip 0.1, "
                + "AdamW (lr 1e-4); fp32 both sides; zett then PyTorch eager "
                + "(scripts/bench_train_pytorch.py) on the same weights and batch",
            ["flops"] = "TrainStepFlops: matrix products of the dense step (the hypernetwork over "
                + "all rows x 7 positions, padding included; zett skips padding positions)",
            ["peak_tflops"] = peakFlops > 0 ? Math.Round(peakFlops / 1e12, 3) : null,
            ["peak"] = peakHow,
            ["cases"] = cases,
        };
        string path = Path.Combine(context.OutputDirectory, file);
        File.WriteAllText(path, json.ToJsonString(new JsonSerializerOptions
        {
            WriteIndented = true,
            Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        })
            + "\n");
        Console.WriteLine($"wrote {path}");
        return failures == 0 ? 0 : 1;
    }

    private static JsonObject Measure(Shape s, string dir, IOpBackend backend, string device,
        double peakFlops, int repeats)
    {
        string lmDir = s.Name == "stories260K" ? DefaultTransfer.AssetPath : Path.Combine(dir, "lm");
        string hnDir = Path.Combine(dir, "hypernet"), batchPath = Path.Combine(dir, "batch.safetensors");
        Directory.CreateDirectory(hnDir);
        if (s.Name != "stories260K")
        {
            Console.WriteLine($"writing {TinyLlamaReduced.Name} (random fp32, "
                + $"{RandomLlama.Millions(TinyLlamaReduced.Parameters)} parameters) to {lmDir}");
            RandomLlama.Write(lmDir, TinyLlamaReduced, DType.F32);
        }
        HostTensor e;
        LmArchitecture arch;
        using (HfModelDirectory model = HfModelDirectory.Open(lmDir))
        {
            arch = LmArchitecture.FromConfig(model);
            e = SourceEmbeddings.ReadStacked(model, withOutput: !arch.Tied);
        }
        int padId = arch.Tied ? 0 : 2;
        HypernetConfig c = HypernetInit.Config(arch.Hidden, untied: !arch.Tied,
            originalVocab: arch.Vocab, extraTokens: 0, padId: padId, predictBias: false, s.Hypernet);
        Dictionary<string, HostTensor> w = HypernetInit.RandomWeights(c, 1);
        HypernetInit.InitInScaler(w, e);
        MainBatch batch = MakeBatch(s, arch.Vocab, padId);
        // The output scalers as `zett train` fits them (anchors: the first real rows), so that the
        // initial predictions have the source embeddings' statistics and the losses their scale.
        using (var cpu = new CpuBackend())
        {
            HypernetInit.InitOutputScalers(c, w, e,
                batch.SurfaceForms[..(Math.Min(HypernetInit.Anchors, s.Pieces) * L)], cpu);
        }
        File.WriteAllText(Path.Combine(hnDir, "config.json"), TrainingCheckpoint.ConfigJson(c));
        SafetensorsWriter.Write(Path.Combine(hnDir, "model.safetensors"),
            [.. w.Values.OrderBy(t => t.Name, StringComparer.Ordinal)
                .Select(t => SafetensorsEntry.FromTensor(t))]);
        WriteBatch(batchPath, batch, s, L);

        TrainStepFlopCount flops = TrainStepFlops.Count(arch, c, batch.Rows, s.Batch, s.Tokens);
        long tokens = (long)s.Batch * s.Tokens, predicted = batch.Targets.Count(t => t >= 0);
        var settings = new TrainSettings(new LearningRateSchedule(0, 0, 0, LearningRate, 0, 1));
        JsonObject ours;
        using (LanguageModel lm = LanguageModel.Open(lmDir, backend))
        using (var trainer = new HypernetTrainer(c, w, e, backend, settings))
        {
            StepReport first = trainer.MainStep(lm, _ => batch, LexicalWeight);
            var reports = new StepReport[repeats];
            var seconds = new double[repeats];
            var cpuSeconds = new double[repeats];
            using var self = Process.GetCurrentProcess();
            for (int r = 0; r < repeats; r++)
            {
                self.Refresh();
                TimeSpan cpu0 = self.TotalProcessorTime;
                long start = Stopwatch.GetTimestamp();
                reports[r] = trainer.MainStep(lm, _ => batch, LexicalWeight);
                seconds[r] = Stopwatch.GetElapsedTime(start).TotalSeconds;
                self.Refresh();
                cpuSeconds[r] = (self.TotalProcessorTime - cpu0).TotalSeconds;
            }
            int median = Enumerable.Range(0, repeats).OrderBy(r => seconds[r]).ElementAt(repeats / 2);
            double sec = seconds[median];
            StepReport m = reports[median];
            ours = new JsonObject
            {
                ["impl"] = $"zett {(device == "cpu" ? "CpuBackend" : "CudaBackend")}, fp32",
                ["step_seconds"] = new JsonArray([.. seconds.Select(x => (JsonNode)Math.Round(x, 5))]),
                ["median_ms"] = Math.Round(1000 * sec, 2),
                ["median_cpu_seconds"] = Math.Round(cpuSeconds.Order().ElementAt(repeats / 2), 4),
                ["tokens_per_second"] = Math.Round(tokens / sec, 1),
                ["target_tokens_per_second"] = Math.Round(predicted / sec, 1),
                ["model_tflops_per_second"] = Math.Round(flops.Total / sec / 1e12, 4),
                ["mfu"] = peakFlops > 0 ? Math.Round(flops.Total / sec / peakFlops, 4) : null,
                ["median_step_split_seconds"] = new JsonObject
                {
                    ["hypernetwork"] = Math.Round(m.HypernetSeconds, 4),
                    ["lm_and_losses"] = Math.Round(m.LmSeconds, 4),
                    ["clip_and_adamw"] = Math.Round(m.OptimizerSeconds, 4),
                },
                ["first_step"] = new JsonObject
                {
                    ["loss"] = first.Loss,
                    ["lm_loss"] = first.LmLoss,
                    ["lexical_loss"] = first.LexicalLoss,
                    ["grad_norm"] = first.GradNorm,
                },
            };
        }
        Console.WriteLine($"{s.Name}: zett {ours["median_ms"]} ms/step ({ours["tokens_per_second"]} "
            + $"tokens/s, {ours["model_tflops_per_second"]} TFLOP/s, MFU {ours["mfu"]}), first "
            + $"loss {ours["first_step"]!["loss"]}");
        var result = new JsonObject
        {
            ["shape"] = s.Name,
            ["lm"] = $"{arch.ModelType} d {arch.Hidden}, MLP {arch.Intermediate}, {arch.Layers} "
                + $"layers, {arch.Heads}/{arch.KvHeads} heads of {arch.HeadDim}, vocab {arch.Vocab}, "
                + (arch.Tied ? "tied" : "untied"),
            ["hypernet"] = $"H {c.HiddenSize}, I {c.IntermediateSize}, {c.NumLayers} layers, "
                + $"{c.NumAttentionHeads} heads, L {c.SurfaceMaxLen}, n_embd {c.NEmbd}"
                + (c.SeparateOutEmbeddings ? ", two output heads" : ""),
            ["rows"] = batch.Rows,
            ["real_rows"] = s.Pieces,
            ["batch"] = s.Batch,
            ["tokens"] = s.Tokens,
            ["target_tokens"] = predicted,
            ["repeats"] = repeats,
            ["flops_per_step"] = new JsonObject
            {
                ["lm_forward"] = flops.LmForward,
                ["lm_backward"] = flops.LmBackward,
                ["hypernet_forward"] = flops.HypernetForward,
                ["hypernet_backward"] = flops.HypernetBackward,
                ["total"] = flops.Total,
            },
            ["zett"] = ours,
        };
        JsonObject? torch = RunPyTorch(lmDir, hnDir, batchPath, device, repeats);
        if (torch is null)
        {
            result["pytorch"] = "not run or failed (needs python3 with torch; see the log)";
            return result;
        }
        double torchSeconds = torch["median_ms"]!.GetValue<double>() / 1000;
        torch["model_tflops_per_second"] = Math.Round(flops.Total / torchSeconds / 1e12, 4);
        torch["mfu"] = peakFlops > 0 ? Math.Round(flops.Total / torchSeconds / peakFlops, 4) : null;
        result["pytorch"] = torch;
        double speedup = torch["median_ms"]!.GetValue<double>() / ours["median_ms"]!.GetValue<double>();
        result["zett_speedup_over_pytorch"] = Math.Round(speedup, 3);
        // CPU time per step (user + system, all threads): less sensitive than wall time to the
        // other processes of a shared machine.
        result["zett_speedup_over_pytorch_by_cpu_time"] = Math.Round(
            torch["median_cpu_seconds"]!.GetValue<double>()
            / ours["median_cpu_seconds"]!.GetValue<double>(), 3);
        double a = ours["first_step"]!["loss"]!.GetValue<double>();
        double b = torch["first_step"]!["loss"]!.GetValue<double>();
        double rel = Math.Abs(a - b) / Math.Abs(b);
        result["first_loss_relative_difference"] = rel;
        Console.WriteLine($"{s.Name}: PyTorch {torch["median_ms"]} ms/step, first loss {b}; zett "
            + $"{speedup:F2}x faster; first losses differ by {rel:E2} (relative)");
        return result;
    }

    /// <summary>The benchmark batch: <see cref="Shape.Pieces"/> real rows (special rows 0..2 the
    /// base model's 0..2), padded to a multiple of 128 plus 128 (masked, surface forms of zeros);
    /// random ids of the real rows and next-id targets (the last position none).</summary>
    private static MainBatch MakeBatch(Shape s, int v0, int padId)
    {
        int rows = ((s.Pieces / 128) + 1) * 128;
        var rng = new Random(3);
        var sf = new int[rows * L];
        for (int r = 0; r < s.Pieces; r++)
        {
            int used = 1 + rng.Next(L);
            for (int j = 0; j < L; j++)
            {
                sf[(r * L) + j] = r < 3 ? (j == 0 ? r : padId)
                    : j < used ? 3 + rng.Next(v0 - 3) : padId;
            }
        }
        int[] ids = [.. Enumerable.Range(0, s.Batch * s.Tokens).Select(_ => rng.Next(s.Pieces))];
        int[] targets = [.. Enumerable.Range(0, ids.Length)
            .Select(i => i % s.Tokens == s.Tokens - 1 ? -1 : ids[i + 1])];
        return new MainBatch(sf, rows, ids, targets, s.Batch)
        {
            Mask = [.. Enumerable.Range(0, rows).Select(r => r < s.Pieces)],
            SpecialIds = [0, 1, 2],
            SpecialIdsInReference = [0, 1, 2],
        };
    }

    /// <summary>The batch in the format of tests/fixtures/train (I32), for the PyTorch side.
    /// </summary>
    private static void WriteBatch(string path, MainBatch b, Shape s, int l) =>
        SafetensorsWriter.Write(path,
        [
            SafetensorsEntry.FromInt32("surface_forms", [b.Rows, l], b.SurfaceForms),
            SafetensorsEntry.FromInt32("input_ids", [s.Batch, s.Tokens], b.Ids),
            SafetensorsEntry.FromInt32("targets", [s.Batch, s.Tokens], b.Targets),
            SafetensorsEntry.FromInt32("mask", [b.Rows], [.. b.Mask!.Select(m => m ? 1 : 0)]),
            SafetensorsEntry.FromInt32("special_ids", [3], b.SpecialIds!),
            SafetensorsEntry.FromInt32("special_ids_in_reference", [3], b.SpecialIdsInReference!),
        ]);

    private static JsonObject? RunPyTorch(string lm, string hn, string batch, string device,
        int repeats)
    {
        string Inv(int v) => v.ToString(CultureInfo.InvariantCulture);
        return LmBench.RunPython([Path.Combine("scripts", "bench_train_pytorch.py"), "--lm", lm,
            "--hypernet", hn, "--batch", batch, "--device", device, "--threads",
            Inv(Environment.ProcessorCount), "--repeats", Inv(repeats), "--lr",
            LearningRate.ToString("R", CultureInfo.InvariantCulture), "--lexical-weight",
            LexicalWeight.ToString("R", CultureInfo.InvariantCulture)])?.AsObject();
    }
}
