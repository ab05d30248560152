using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using ZeTT.Kernels;
using ZeTT.Kernels.Blas;
using ZeTT.Ops;
using ZeTT.Ops.Cuda;
using ZeTT.Runtime;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.Tensors;

namespace ZeTT.Bench;

/// <summary>
/// GPU benchmarks: <c>gemm-gpu</c> (the row-major GEMM wrapper at hypernetwork shapes, TFLOP/s
/// against a measured bf16 peak) and <c>hypernet-gpu</c> (surface forms per second of
/// <see cref="HypernetPredictor"/> — HypernetGraph on CudaBackend — at the released
/// checkpoints' sizes, random weights, bf16). Both print
/// "skipped: no CUDA device" and succeed where there is none.
/// </summary>
internal static class GpuBenchmarks
{
    private sealed record Size(string Name, int Hidden, int Intermediate, int Heads, int NEmbd,
        bool Untied, bool Lang, int Vocab);

    /// <summary>The released hypernetworks' shapes (ZETT.md §3); vocab = base model's.</summary>
    private static readonly Size[] Sizes =
    [
        new("xlm-roberta-base", 768, 1536, 12, 768, false, true, 250002),
        new("TinyLlama-1.1B", 2048, 4096, 32, 2048, false, false, 32000),
        new("Mistral-7B", 4096, 8192, 32, 4096, true, false, 32000),
    ];

    private const int MaxLen = 7;

    /// <summary>Target vocabulary predicted per measurement (the transfer predicts every token
    /// of a 32k–50k vocabulary once).</summary>
    private const int TargetVocab = 32768;

    internal static bool Skip()
    {
        if (Cuda.IsAvailable)
        {
            return false;
        }
        // On the GPU machine (scripts/device-check.sh sets it) a missing device is a failure,
        // not a skip: a CUDA start-up problem must not look like a passing benchmark step.
        if (Environment.GetEnvironmentVariable("ZETT_REQUIRE_GPU") == "1")
        {
            throw new InvalidOperationException(
                $"ZETT_REQUIRE_GPU=1 but CUDA is unavailable: {Cuda.UnavailableReason}");
        }
        Console.WriteLine($"skipped: no CUDA device ({Cuda.UnavailableReason})");
        return true;
    }

    public static int Gemm(BenchContext context)
    {
        if (Skip())
        {
            return 0;
        }
        using CudaContext ctx = CudaContext.Create();
        using var stream = new CudaStream(ctx);
        using var blas = new BlasHandle(stream);
        using var start = new CudaEvent(ctx);
        using var end = new CudaEvent(ctx);
        double Time(int m, int n, int k, KernelDType type)
        {
            using DeviceBuffer a = DeviceBuffer.Allocate(ctx, type, (long)m * k);
            using DeviceBuffer b = DeviceBuffer.Allocate(ctx, type, (long)n * k);
            using DeviceBuffer c = DeviceBuffer.Allocate(ctx, KernelDType.F32, (long)m * n);
            a.ZeroAsync(stream);
            b.ZeroAsync(stream);
            void Run() => ZeTT.Kernels.Blas.Gemm.Run(blas, m, n, k, a.View, k, b.View, k, true,
                c.View, n);
            Run();
            const int reps = 10;
            start.Record(stream);
            for (int i = 0; i < reps; i++)
            {
                Run();
            }
            end.Record(stream);
            end.Synchronize();
            return CudaEvent.ElapsedMilliseconds(start, end) / 1000.0 / reps;
        }
        double peakSeconds = Time(8192, 8192, 8192, KernelDType.BF16);
        double peak = 2.0 * 8192 * 8192 * 8192 / peakSeconds / 1e12;
        Console.WriteLine($"{ctx}: measured bf16 peak (8192³ GEMM) {peak:F0} TFLOP/s");
        var rows = new JsonArray();
        int tokens = 4096 * 8;
        foreach (Size s in Sizes)
        {
            (string, int, int)[] shapes =
            [
                ("qkv", 3 * s.Hidden, s.Hidden),
                ("ffn1", s.Intermediate, s.Hidden),
                ("ffn2", s.Hidden, s.Intermediate),
            ];
            foreach ((string op, int n, int k) in shapes)
            {
                foreach (KernelDType type in new[] { KernelDType.BF16, KernelDType.F32 })
                {
                    double t = Time(tokens, n, k, type);
                    double tflops = 2.0 * tokens * n * k / t / 1e12;
                    Console.WriteLine($"{s.Name,-18} {op,-5} {type,-4} m {tokens} n {n} k {k}: "
                        + $"{tflops,7:F1} TFLOP/s ({100 * tflops / peak:F0} % of bf16 peak)");
                    rows.Add(new JsonObject
                    {
                        ["size"] = s.Name,
                        ["op"] = op,
                        ["dtype"] = type.ToString(),
                        ["m"] = tokens,
                        ["n"] = n,
                        ["k"] = k,
                        ["tflops"] = Math.Round(tflops, 1),
                    });
                }
            }
        }
        Write(context, "gemm-gpu.json", new JsonObject
        {
            ["date"] = DateTime.UtcNow.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture),
            ["gpu"] = ctx.ToString(),
            ["peak_tflops"] = Math.Round(peak, 1),
            ["gemms"] = rows,
        });
        return 0;
    }

    public static int Hypernet(BenchContext context)
    {
        if (Skip())
        {
            return 0;
        }
        string gpu;
        double peak;
        using (CudaContext ctx = CudaContext.Create())
        {
            gpu = ctx.ToString();
        }
        peak = MeasuredPeak();
        var sizes = new JsonArray();
        foreach (Size s in Sizes)
        {
            var (weights, source) = RandomHypernetOfSize(s);
            int[] forms = context.SurfaceFormsPath is { } file
                ? RealSurfaceForms(file, s, weights.Config)
                : SurfaceForms(s, weights.Config);
            int targetVocab = forms.Length / MaxLen;
            var cuda = new CudaBackend();
            using var backend = new HypernetPredictor(cuda, weights, source,
                HypernetPrecision.BFloat16, ownsBackend: true);
            Console.WriteLine($"  {backend.Name}, batch {backend.MaxBatchSize}");
            int lang = s.Lang ? 0 : -1;
            // The production path: HypernetGraph on CudaBackend, every row through
            // HypernetBatching as zett transfer runs it.
            double seconds = BenchContext.MedianSeconds(
                () => HypernetBatching.PredictAll(backend, forms, targetVocab, lang), repeats: 3,
                warmup: 1);
            double rate = targetVocab / seconds;
            // The same path with every Linear unfused (bias pre-filled into y, GEMM with beta 1,
            // activation as its own pass), the anchor for the cuBLASLt epilogues, in this run.
            cuda.FusedLinearEpilogues = false;
            double unfusedSeconds = BenchContext.MedianSeconds(
                () => HypernetBatching.PredictAll(backend, forms, targetVocab, lang), repeats: 1,
                warmup: 0);
            cuda.FusedLinearEpilogues = true;
            Console.WriteLine($"{s.Name,-18} unfused Linear: {targetVocab / unfusedSeconds,10:F0} "
                + $"tokens/s (cuBLASLt epilogues {unfusedSeconds / seconds:F3}x faster)");
            // The anchor for bf16 activations: the same weights over fp32 activations.
            double fp32ActSeconds;
            using (var fp32Act = new HypernetPredictor(new CudaBackend(), weights, source,
                HypernetPrecision.BFloat16, ownsBackend: true, activationDType: DType.F32))
            {
                fp32ActSeconds = BenchContext.MedianSeconds(
                    () => HypernetBatching.PredictAll(fp32Act, forms, targetVocab, lang),
                    repeats: 1, warmup: 1);
            }
            Console.WriteLine($"{s.Name,-18} fp32 activations: {targetVocab / fp32ActSeconds,10:F0} "
                + $"tokens/s (bf16 activations {fp32ActSeconds / seconds:F3}x faster)");
            double positions = MeanPositions(forms, weights.Config);
            double needed = 0;
            for (int r = 0; r < targetVocab; r++)
            {
                needed += FlopsPerSurfaceForm(weights.Config, PositionsOf(forms, r, weights.Config));
            }
            double useful = needed / seconds / 1e12;
            Console.WriteLine($"{s.Name,-18} H {s.Hidden}: {rate,10:F0} tokens/s "
                + $"({positions:F2} of {MaxLen} positions computed per row); "
                + $"{useful:F1} TFLOP/s ({100 * useful / peak:F0} % of the measured bf16 peak "
                + $"{peak:F0}); batch {backend.MaxBatchSize}");
            sizes.Add(new JsonObject
            {
                ["name"] = s.Name,
                ["hidden"] = s.Hidden,
                ["vocab"] = targetVocab,
                ["surface_forms"] = context.SurfaceFormsPath ?? "synthetic",
                ["path"] = "HypernetGraph on CudaBackend (HypernetPredictor), bf16 weights and "
                    + "activations",
                ["zett_tokens_per_s"] = Math.Round(rate),
                ["zett_tokens_per_s_unfused_linear"] = Math.Round(targetVocab / unfusedSeconds),
                ["zett_tokens_per_s_fp32_activations"] = Math.Round(targetVocab / fp32ActSeconds),
                ["mean_positions_computed"] = Math.Round(positions, 2),
                ["pytorch_tokens_per_s"] = null,
                ["useful_tflops"] = Math.Round(useful, 1),
                ["peak_tflops"] = Math.Round(peak, 1),
            });
        }
        // Parity after the timings, so that a parity failure still leaves the numbers: the
        // error is written into the result and the benchmark fails.
        JsonObject parity;
        int failed = 0;
        try
        {
            string root = Environment.GetEnvironmentVariable("ZETT_REPO_ROOT") is { Length: > 0 } r
                ? r : Environment.CurrentDirectory;
            parity = GpuParity.Measure(root);
        }
        catch (Exception e) when (e is InvalidOperationException or IOException or ZettException
            or CudaException)
        {
            Console.Error.WriteLine($"parity: {e.Message}");
            parity = new JsonObject { ["error"] = e.Message };
            failed = 1;
        }
        Write(context, "hypernet-gpu.json", new JsonObject
        {
            ["date"] = DateTime.UtcNow.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture),
            ["gpu"] = gpu,
            ["parity"] = parity,
            ["sanitizer"] = null,
            ["sizes"] = sizes,
        });
        return failed;
    }

    internal static double MeasuredPeak()
    {
        using CudaContext ctx = CudaContext.Create();
        using var stream = new CudaStream(ctx);
        using var blas = new BlasHandle(stream);
        using var start = new CudaEvent(ctx);
        using var end = new CudaEvent(ctx);
        const int n = 8192;
        using DeviceBuffer a = DeviceBuffer.Allocate(ctx, KernelDType.BF16, (long)n * n);
        using DeviceBuffer c = DeviceBuffer.Allocate(ctx, KernelDType.F32, (long)n * n);
        a.ZeroAsync(stream);
        ZeTT.Kernels.Blas.Gemm.Run(blas, n, n, n, a.View, n, a.View, n, true, c.View, n);
        start.Record(stream);
        for (int i = 0; i < 10; i++)
        {
            ZeTT.Kernels.Blas.Gemm.Run(blas, n, n, n, a.View, n, a.View, n, true, c.View, n);
        }
        end.Record(stream);
        end.Synchronize();
        return 2.0 * n * n * n * 10 / (CudaEvent.ElapsedMilliseconds(start, end) / 1000) / 1e12;
    }

    /// <summary>Surface-form positions the graph computes for row r: its non-padding ids, and
    /// position 0 when that is padding (all L for a row of padding without a language
    /// position).</summary>
    private static int PositionsOf(int[] forms, int r, HypernetConfig c)
    {
        ReadOnlySpan<int> row = forms.AsSpan(r * MaxLen, MaxLen);
        int valid = MaxLen - row.Count(c.PadTokenId);
        return valid == 0 && !c.EmbedLangId ? MaxLen : valid + (row[0] == c.PadTokenId ? 1 : 0);
    }

    private static double MeanPositions(int[] forms, HypernetConfig c)
    {
        int rows = forms.Length / MaxLen;
        double total = 0;
        for (int r = 0; r < rows; r++)
        {
            total += PositionsOf(forms, r, c);
        }
        return total / Math.Max(rows, 1);
    }

    /// <summary>Matmul FLOPs of a surface form computed on <paramref name="positions"/>
    /// surface-form positions (plus the language position when there is one): L for the
    /// unpacked layout, the row's packed length for the packed one.</summary>
    private static double FlopsPerSurfaceForm(HypernetConfig c, int positions)
    {
        double l = positions, s = positions + c.SequenceLength - c.SurfaceMaxLen;
        double h = c.HiddenSize;
        double i = c.IntermediateSize, d = c.SourceWidth, e = c.NEmbd;
        double projector = 2 * (2 * h * i);
        double input = l * (2 * d * h + projector);
        double layers = c.NumLayers * s * (2 * 4 * h * h + 2 * 2 * h * i);
        double heads = projector + 2 * h * (c.SingleHead ? d : e)
            + (c.SeparateOutEmbeddings && !c.SingleHead ? projector + 2 * h * e : 0)
            + (c.PredictBias ? 2 * h : 0);
        return input + layers + heads;
    }

    /// <summary>Surface forms of a 32768-token target vocabulary: lengths 1–7 drawn from a fixed
    /// distribution (mostly 1–3 pieces), ids uniform over the source vocabulary. The packed
    /// backend's throughput depends on these lengths; the unpacked one's does not.</summary>
    private static int[] SurfaceForms(Size s, HypernetConfig c)
    {
        var rng = new Random(1);
        double[] cumulative = [0.35, 0.65, 0.83, 0.92, 0.96, 0.98, 1.0];
        var ids = new int[TargetVocab * MaxLen];
        for (int r = 0; r < TargetVocab; r++)
        {
            double u = rng.NextDouble();
            int len = 1 + Array.FindIndex(cumulative, p => u <= p);
            for (int p = 0; p < MaxLen; p++)
            {
                ids[r * MaxLen + p] = p < len ? 3 + rng.Next(s.Vocab - 3) : c.PadTokenId;
            }
        }
        return ids;
    }

    /// <summary>A real surface-form matrix (I32 [V, 7], as `zett surface-forms` writes it with
    /// the Mistral hn tokenizer, whose pad is its eos id 2), mapped onto this size's random
    /// hypernetwork: pads to its pad id, other ids into its source vocabulary. The lengths, and
    /// so the work the packed backend does, are the real ones.</summary>
    private static int[] RealSurfaceForms(string file, Size s, HypernetConfig c)
    {
        const int SourcePad = 2;
        using SafetensorsFile f = SafetensorsFile.Open(file);
        int[] ids = f.ReadInt32("surface_forms", out int[] shape);
        if (shape.Length != 2 || shape[1] != MaxLen)
        {
            throw new InvalidOperationException(
                $"{file}: surface_forms must be [V, {MaxLen}], found [{string.Join(", ", shape)}]");
        }
        for (int i = 0; i < ids.Length; i++)
        {
            ids[i] = ids[i] == SourcePad ? c.PadTokenId : 3 + ids[i] % (s.Vocab - 3);
        }
        return ids;
    }

    private static (HypernetWeights, HostTensor) RandomHypernetOfSize(Size s)
    {
        string json = string.Create(CultureInfo.InvariantCulture, $$"""
            {"model_type": "zett_hypernetwork", "n_embd": {{s.NEmbd}},
             "hn_hidden_size": {{s.Hidden}}, "hn_intermediate_size": {{s.Intermediate}},
             "hn_n_layers": 3, "hn_num_attention_heads": {{s.Heads}}, "hn_surface_maxlen": 7,
             "hn_rescale_embeddings": true, "hn_predict_bias": true,
             "hn_embed_lang_id": {{(s.Lang ? "true" : "false")}}, "n_langs": 26,
             "hn_n_extra_tokens": 400, "original_vocab_size": {{s.Vocab}}, "pad_token_id": 1,
             "separate_out_embeddings": {{(s.Untied ? "true" : "false")}},
             "hn_embed_using_source_embeddings": true}
            """);
        HypernetConfig c = HypernetConfig.Parse(json, s.Name);
        return (RandomHypernet.Create(c, seed: 1), RandomHypernet.Source(s.Vocab, c.SourceWidth, 2));
    }

    internal static void Write(BenchContext context, string file, JsonObject json)
    {
        string path = Path.Combine(context.OutputDirectory, file);
        File.WriteAllText(path, json.ToJsonString(new JsonSerializerOptions { WriteIndented = true })
            + "\n");
        Console.WriteLine($"wrote {path}");
    }
}
