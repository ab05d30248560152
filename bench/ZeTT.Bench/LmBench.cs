using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using ZeTT.Ops;
using ZeTT.Ops.Cpu;
using ZeTT.Ops.Cuda;
using ZeTT.Runtime.Models;
using ZeTT.Runtime.Transfer;

namespace ZeTT.Bench;

/// <summary>
/// Language-model forward throughput through the production path (<see cref="LanguageModel"/>
/// on an op backend), against PyTorch on the same weights in the same run
/// (scripts/bench_lm_pytorch.py):
/// <list type="bullet">
/// <item><c>lm-cpu</c>: stories260K (the built-in model) and a ≈106 M-parameter Llama with
/// random fp32 weights (written to a temporary folder, deleted after), fp32, all cores,
/// against plain PyTorch eager with the same thread count.</item>
/// <item><c>lm-gpu</c>: TinyLlama-1.1B and Mistral-7B shapes, random bf16 weights, 2048-token
/// sequences, on CUDA, against transformers with sdpa attention in bf16.</item>
/// <item><c>lm-memory</c>: <c>zett eval</c> of a Llama-7B-shaped bf16 model on the CPU (a
/// separate process): peak resident memory, split into anonymous memory (activations, the
/// runtime) and mapped file pages (the weights), and tokens/s.</item>
/// </list>
/// Eval: <c>Forward</c> of a batch of sequences, the head and the fused cross-entropy against
/// the next token (the mean loss is compared with PyTorch's as a check that both computed the
/// same thing). Generation: greedy decoding from the BOS token with the KV cache, one forward
/// pass per new token (TextGeneration.Generate; PyTorch: the same loop over its cache).
/// Ids are the formula 3 + (i·7919 mod (vocab − 3)) over the flat position i, in both.
/// Medians of repeated runs after a warm-up.
/// </summary>
internal static class LmBench
{
    private sealed record Case(string Model, string Directory, int Batch, int Tokens,
        int NewTokens, int Repeats);

    public static int Cpu(BenchContext context)
    {
        string stories = DefaultTransfer.AssetPath;
        if (!File.Exists(Path.Combine(stories, "config.json")))
        {
            Console.Error.WriteLine($"error: {stories} not found (run from the repository root)");
            return 1;
        }
        string random = Path.Combine(Path.GetTempPath(), $"zett-bench-llama-100m-{Environment.ProcessId}");
        var cases = new JsonArray();
        string loadBefore = LoadAverage();
        using var backend = new CpuBackend();
        try
        {
            Console.WriteLine($"writing {LlamaShape.Llama100M.Name} (random fp32, "
                + $"{RandomLlama.Millions(LlamaShape.Llama100M.Parameters)} parameters) to {random}");
            RandomLlama.Write(random, LlamaShape.Llama100M, DType.F32);
            foreach (Case c in new[]
            {
                new Case("stories260K", stories, 8, 256, 128, 5),
                new Case(LlamaShape.Llama100M.Name, random, 1, 256, 16, 3),
            })
            {
                cases.Add(Measure(c, backend, "cpu", "plain"));
            }
        }
        finally
        {
            if (Directory.Exists(random))
            {
                Directory.Delete(random, recursive: true);
            }
        }
        Write(context, "lm-cpu.json", new JsonObject
        {
            ["benchmark"] = "lm-cpu",
            ["date"] = Today(),
            ["cores"] = Environment.ProcessorCount,
            ["cpu"] = CpuName(),
            ["load_average_before_after"] = $"{loadBefore} / {LoadAverage()}",
            ["dtype"] = "fp32 weights and activations (both sides)",
            ["anchor"] = "scripts/bench_lm_pytorch.py --impl plain: the same Llama in PyTorch "
                + "eager (matmul attention with a causal mask, as transformers' eager path), "
                + "torch.set_num_threads(cores), inference_mode",
            ["cases"] = cases,
        });
        return 0;
    }

    public static int Gpu(BenchContext context)
    {
        if (GpuBenchmarks.Skip())
        {
            return 0;
        }
        string root = context.LmDirectory ?? Path.Combine(Path.GetTempPath(), "zett-bench-lm");
        var cases = new JsonArray();
        string device;
        using (var backend = new CudaBackend())
        {
            device = backend.DeviceName;
            foreach ((LlamaShape shape, int batch) in new[]
            {
                (LlamaShape.TinyLlama, 4), (LlamaShape.Mistral7B, 1),
            })
            {
                string dir = Path.Combine(root, shape.Name + "-bf16");
                if (!File.Exists(Path.Combine(dir, "config.json")))
                {
                    Console.WriteLine($"writing {shape.Name} (random bf16, "
                        + $"{RandomLlama.Millions(shape.Parameters)} parameters) to {dir}");
                    if (Directory.Exists(dir))
                    {
                        Directory.Delete(dir, recursive: true);
                    }
                    RandomLlama.Write(dir, shape, DType.BF16);
                }
                cases.Add(Measure(new Case(shape.Name, dir, batch, 2048, 128, 3), backend, "cuda",
                    "transformers"));
                if (!context.KeepModels)
                {
                    Directory.Delete(dir, recursive: true);
                }
            }
        }
        Write(context, "lm-gpu.json", new JsonObject
        {
            ["benchmark"] = "lm-gpu",
            ["date"] = Today(),
            ["gpu"] = device,
            ["dtype"] = "bf16 weights; ours: bf16 activations and KV cache, fp32 accumulation, "
                + "statistics, logits and losses (cuBLASLt; tensor-core attention for heads of "
                + "64 and 128); transformers: bf16 throughout",
            ["anchor"] = "scripts/bench_lm_pytorch.py --impl transformers: "
                + "AutoModelForCausalLM(torch_dtype=bfloat16, attn_implementation=\"sdpa\"), "
                + "labels=ids for eval, generate(do_sample=False, min_new_tokens=N) for decoding",
            ["cases"] = cases,
        });
        return 0;
    }

    /// <summary>Ours and PyTorch's eval and generation for one model; the JSON of both and
    /// their ratios.</summary>
    private static JsonObject Measure(Case c, IOpBackend backend, string device, string impl)
    {
        JsonObject ours;
        // On CUDA bf16 activations, as the anchor's bf16 model; the CPU computes in fp32.
        using (LanguageModel model = LanguageModel.Open(c.Directory, backend,
            backend.Device == TensorDevice.Cuda ? DType.BF16 : DType.F32))
        {
            ours = MeasureOurs(model, c);
            ours["activations"] = model.ActivationType.ToString();
        }
        Console.WriteLine($"{c.Model}: ours eval {ours["eval_tokens_per_second"]} tokens/s "
            + $"(batch {c.Batch} x {c.Tokens}), generation {ours["generate_tokens_per_second"]} "
            + "tokens/s");
        JsonNode? torch = RunPyTorch(c, device, impl);
        var result = new JsonObject
        {
            ["model"] = c.Model,
            ["batch"] = c.Batch,
            ["tokens"] = c.Tokens,
            ["new_tokens"] = c.NewTokens,
            ["repeats"] = c.Repeats,
            ["ours"] = ours,
        };
        if (torch is null)
        {
            result["pytorch"] = "not run (needs python3 with torch; see the log)";
            return result;
        }
        result["pytorch"] = torch;
        double Ratio(string key) => Math.Round(ours[key]!.GetValue<double>()
            / torch[key]!.GetValue<double>(), 3);
        result["eval_ours_over_pytorch"] = Ratio("eval_tokens_per_second");
        result["generate_ours_over_pytorch"] = Ratio("generate_tokens_per_second");
        double lossOurs = ours["eval_mean_loss"]!.GetValue<double>();
        double lossTorch = torch["eval_mean_loss"]!.GetValue<double>();
        result["eval_mean_loss_relative_difference"] =
            Math.Abs(lossOurs - lossTorch) / Math.Abs(lossTorch);
        int[] a = [.. ours["generated_ids"]!.AsArray().Select(n => n!.GetValue<int>())];
        int[] b = [.. torch["generated_ids"]!.AsArray().Select(n => n!.GetValue<int>())];
        int same = 0;
        while (same < Math.Min(a.Length, b.Length) && a[same] == b[same])
        {
            same++;
        }
        result["generated_ids_equal_prefix"] = same;
        Console.WriteLine($"{c.Model}: PyTorch eval {torch["eval_tokens_per_second"]} tokens/s, "
            + $"generation {torch["generate_tokens_per_second"]} tokens/s; ours/PyTorch eval "
            + $"{result["eval_ours_over_pytorch"]}x, generation "
            + $"{result["generate_ours_over_pytorch"]}x; mean loss {lossOurs:F6} vs "
            + $"{lossTorch:F6}; greedy ids equal for the first {same} of {a.Length}");
        return result;
    }

    internal static int[] Ids(int count, int vocab)
    {
        var ids = new int[count];
        for (int i = 0; i < count; i++)
        {
            ids[i] = 3 + (int)(i * 7919L % (vocab - 3));
        }
        return ids;
    }

    private static JsonObject MeasureOurs(LanguageModel model, Case c)
    {
        int n = c.Batch * c.Tokens;
        int[] ids = Ids(n, model.Architecture.Vocab);
        var targets = new int[n];
        for (int i = 0; i < n; i++)
        {
            targets[i] = (i + 1) % c.Tokens == 0 ? -1 : ids[i + 1];
        }
        double loss = 0;
        void Eval()
        {
            using Tensor hidden = model.Forward(ids, c.Batch);
            using Tensor head = model.HeadInput(hidden);
            using Tensor losses = model.TokenLosses(head, targets);
            using Tensor host = Tensor.Host(DType.F32, losses.Shape);
            model.Ops.Download(losses, host);
            double sum = 0;
            foreach (float l in host.AsSpan<float>())
            {
                sum += l;
            }
            loss = sum / (c.Batch * (c.Tokens - 1));
        }
        double evalSeconds = BenchContext.MedianSeconds(Eval, c.Repeats);
        int[] generated = [];
        double genSeconds = BenchContext.MedianSeconds(() => generated =
            [.. TextGeneration.Generate(model, [1], c.NewTokens, new SamplingOptions())],
            c.Repeats);
        return new JsonObject
        {
            ["eval_seconds"] = Math.Round(evalSeconds, 4),
            ["eval_tokens_per_second"] = Math.Round(n / evalSeconds, 1),
            ["eval_mean_loss"] = loss,
            ["generate_seconds"] = Math.Round(genSeconds, 4),
            ["generate_tokens_per_second"] = Math.Round(c.NewTokens / genSeconds, 1),
            ["generated_ids"] = new JsonArray([.. generated.Select(i => (JsonNode)i)]),
        };
    }

    internal static string Python() =>
        Environment.GetEnvironmentVariable("ZETT_BENCH_PYTHON") is { Length: > 0 } p ? p
        : File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";

    private static JsonNode? RunPyTorch(Case c, string device, string impl)
    {
        string Inv(int v) => v.ToString(CultureInfo.InvariantCulture);
        return RunPython([Path.Combine("scripts", "bench_lm_pytorch.py"), "--model", c.Directory,
            "--device", device, "--impl", impl, "--threads", Inv(Environment.ProcessorCount),
            "--batch", Inv(c.Batch), "--tokens", Inv(c.Tokens), "--new-tokens", Inv(c.NewTokens),
            "--repeats", Inv(c.Repeats)]);
    }

    /// <summary>Runs a PyTorch anchor script (<see cref="Python"/> with
    /// <paramref name="args"/>, the script first) and parses the JSON it prints; null, with the
    /// reason printed, when it fails or Python cannot be started.</summary>
    internal static JsonNode? RunPython(IEnumerable<string> args)
    {
        var start = new ProcessStartInfo(Python())
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (string a in args)
        {
            start.ArgumentList.Add(a);
        }
        try
        {
            using Process process = Process.Start(start)!;
            Task<string> stderr = process.StandardError.ReadToEndAsync();
            string stdout = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            if (process.ExitCode != 0)
            {
                Console.WriteLine($"PyTorch anchor failed ({process.ExitCode}): "
                    + stderr.Result.Trim());
                return null;
            }
            return JsonNode.Parse(stdout);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            Console.WriteLine($"PyTorch anchor not run: {start.FileName}: {e.Message}");
            return null;
        }
    }

    /// <summary><c>lm-memory</c>: see the class summary. The model is written to
    /// <see cref="BenchContext.LmDirectory"/> (or a temporary folder) unless it is there
    /// already, and deleted afterwards unless <c>--keep-models</c>.</summary>
    public static int Memory(BenchContext context)
    {
        LlamaShape shape = LlamaShape.Llama7B;
        string dir = context.LmDirectory
            ?? Path.Combine(Path.GetTempPath(), $"zett-bench-{shape.Name}-bf16");
        const string TokenizerDir = "tests/data/tokenizers/llama2-tinyllama";
        const string Text = "../shared/data/text/tinystories/dev.jsonl";
        const int MaxBytes = 600, Context = 512;
        string zett = Path.GetFullPath("zett");
        foreach (string need in new[] { TokenizerDir, Text, zett })
        {
            if (!Path.Exists(need))
            {
                Console.Error.WriteLine($"error: {need} not found (run from the repository root "
                    + "after ./build.sh)");
                return 1;
            }
        }
        string json = Path.Combine(Path.GetTempPath(), $"zett-lm-memory-{Environment.ProcessId}.json");
        try
        {
            if (!File.Exists(Path.Combine(dir, "config.json")))
            {
                Console.WriteLine($"writing {shape.Name} (random bf16, "
                    + $"{RandomLlama.Millions(shape.Parameters)} parameters) to {dir}");
                var sw = Stopwatch.StartNew();
                RandomLlama.Write(dir, shape, DType.BF16);
                Console.WriteLine($"written in {sw.Elapsed.TotalSeconds:F0} s");
                foreach (string f in Directory.GetFiles(TokenizerDir))
                {
                    File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
                }
            }
            long weightBytes = Directory.GetFiles(dir, "*.safetensors")
                .Sum(f => new FileInfo(f).Length);
            var start = new ProcessStartInfo(zett)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            foreach (string a in new[] { "eval", "--model", dir, "--data", Text, "--max-bytes",
                MaxBytes.ToString(CultureInfo.InvariantCulture), "--context",
                Context.ToString(CultureInfo.InvariantCulture), "--json", json })
            {
                start.ArgumentList.Add(a);
            }
            var wall = Stopwatch.StartNew();
            using Process process = Process.Start(start)!;
            Task<string> stdout = process.StandardOutput.ReadToEndAsync();
            Task<string> stderr = process.StandardError.ReadToEndAsync();
            long anon = 0, file = 0, hwm = 0;
            while (!process.HasExited)
            {
                (long a, long f, long h) = ReadRss(process.Id);
                (anon, file, hwm) = (Math.Max(anon, a), Math.Max(file, f), Math.Max(hwm, h));
                Thread.Sleep(50);
            }
            process.WaitForExit();
            double seconds = wall.Elapsed.TotalSeconds;
            Console.WriteLine(stdout.Result.TrimEnd());
            if (process.ExitCode != 0)
            {
                Console.Error.WriteLine($"zett eval failed ({process.ExitCode}): "
                    + stderr.Result.Trim());
                return 1;
            }
            JsonElement r = JsonDocument.Parse(File.ReadAllText(json)).RootElement;
            JsonElement m = r.ValueKind == JsonValueKind.Array ? r[0]
                : r.GetProperty("models")[0];
            long tokens = m.GetProperty("encoded_tokens").GetInt64();
            const double GiB = 1 << 30;
            Console.WriteLine($"{shape.Name} bf16 ({weightBytes / GiB:F2} GiB of weights): peak RSS "
                + $"{hwm / GiB:F2} GiB (anonymous {anon / GiB:F2} GiB, mapped weights "
                + $"{file / GiB:F2} GiB); {tokens} tokens in {seconds:F1} s = "
                + $"{tokens / seconds:F2} tokens/s (start-up included)");
            Write(context, "lm-memory-7b.json", new JsonObject
            {
                ["benchmark"] = "lm-memory",
                ["date"] = Today(),
                ["cores"] = Environment.ProcessorCount,
                ["cpu"] = CpuName(),
                ["load_average_after"] = LoadAverage(),
                ["model"] = $"{shape.Name}, random bf16 weights, "
                    + RandomLlama.Millions(shape.Parameters) + " parameters",
                ["command"] = $"zett eval --model DIR --data {Text} --max-bytes {MaxBytes} "
                    + $"--context {Context}",
                ["weight_bytes"] = weightBytes,
                ["peak_rss_bytes"] = hwm,
                ["peak_rss_anonymous_bytes"] = anon,
                ["peak_rss_file_bytes"] = file,
                ["peak_rss_over_weights"] = Math.Round((double)hwm / weightBytes, 3),
                ["tokens"] = tokens,
                ["wall_seconds"] = Math.Round(seconds, 1),
                ["tokens_per_second"] = Math.Round(tokens / seconds, 3),
                ["tokens_per_second_note"] = "encoded tokens / the process's wall time (start-up, "
                    + "memory map and tokenizer included: one window, so the progress bar has no "
                    + "time of its own)",
                ["sampling"] = "VmHWM, RssAnon and RssFile of /proc/PID/status every 50 ms "
                    + "(the anonymous and file peaks are maxima of samples)",
            });
            return 0;
        }
        finally
        {
            File.Delete(json);
            if (!context.KeepModels && context.LmDirectory is null && Directory.Exists(dir))
            {
                Directory.Delete(dir, recursive: true);
            }
        }
    }

    /// <summary>RssAnon, RssFile and VmHWM of a live process, in bytes (zeros once it is
    /// gone).</summary>
    private static (long Anon, long File, long Hwm) ReadRss(int pid)
    {
        long anon = 0, file = 0, hwm = 0;
        try
        {
            foreach (string line in File.ReadLines($"/proc/{pid}/status"))
            {
                // "RssAnon:\t  123456 kB" (a tab, then padding spaces).
                long Kb() => long.Parse(line.Split([' ', '\t'],
                    StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
                if (line.StartsWith("RssAnon:", StringComparison.Ordinal))
                {
                    anon = Kb();
                }
                else if (line.StartsWith("RssFile:", StringComparison.Ordinal))
                {
                    file = Kb();
                }
                else if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                {
                    hwm = Kb();
                }
            }
        }
        catch (IOException)
        {
            // The process ended between the check and the read: its last sample stands.
        }
        return (anon, file, hwm);
    }

    /// <summary>/proc/loadavg's 1-minute figure: the machine is shared, and only ratios
    /// within one run compare.</summary>
    internal static string LoadAverage() => File.Exists("/proc/loadavg")
        ? File.ReadAllText("/proc/loadavg").Split(' ')[0] : "unknown";

    private static string Today() =>
        DateTime.UtcNow.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);

    internal static string CpuName() => File.Exists("/proc/cpuinfo")
        ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name",
            StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "unknown"
        : "unknown";

    private static void Write(BenchContext context, string name, JsonObject json)
    {
        string path = Path.Combine(context.OutputDirectory, name);
        File.WriteAllText(path, json.ToJsonString(new JsonSerializerOptions { WriteIndented = true })
            + "\n");
        Console.WriteLine($"wrote {path}");
    }
}
