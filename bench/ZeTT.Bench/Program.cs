using System.Diagnostics;

namespace ZeTT.Bench;

/// <summary>
/// Benchmark driver: <c>ZeTT.Bench [name ...] [--out DIR] [--surface-forms FILE]
/// [--lm-dir DIR] [--keep-models]</c>. Each benchmark runs the
/// production code path, reports medians of repeated runs and writes a JSON result to the
/// output folder (default bench/results).
/// </summary>
internal static class Program
{
    private static readonly Dictionary<string, Func<BenchContext, int>> Benchmarks =
        new(StringComparer.Ordinal)
        {
            ["gemm-cpu"] = GemmCpuBench.Run,
            ["gemm-cpu-lm"] = GemmCpuBench.RunLm,
            ["gemm-cpu-gemv"] = GemmCpuBench.RunGemv,
            ["main-step-cpu"] = MainStepCpuBench.Run,
            ["hypernet-cpu"] = HypernetCpuBench.Run,
            ["gemm-gpu"] = GpuBenchmarks.Gemm,
            ["hypernet-gpu"] = GpuBenchmarks.Hypernet,
            ["lm-cpu"] = LmBench.Cpu,
            ["lm-gpu"] = LmBench.Gpu,
            ["lm-memory"] = LmBench.Memory,
            ["ops-gpu"] = OpsGpuBench.Run,
            ["sampler"] = SamplerBenchmark.Run,
            ["surface-forms"] = SurfaceFormsBenchmark.Run,
            ["tokenize"] = TokenizeBenchmark.Run,
            ["transfer-memory"] = TransferMemoryBench.Run,
            ["transfer-memory-large"] = TransferMemoryBench.RunLarge,
            ["train-cpu"] = TrainBench.Cpu,
            ["train-gpu"] = TrainBench.Gpu,
            ["transfer-memory-hypernet"] = TransferMemoryHypernetBench.Run,
        };

    private static int Main(string[] args)
    {
        string outDir = "bench/results";
        string? surfaceForms = null;
        string? lmDirectory = null;
        bool keepModels = false;
        var names = new List<string>();
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "--out" && i + 1 < args.Length)
            {
                outDir = args[++i];
            }
            else if (args[i] == "--surface-forms" && i + 1 < args.Length)
            {
                surfaceForms = args[++i];
            }
            else if (args[i] == "--lm-dir" && i + 1 < args.Length)
            {
                lmDirectory = args[++i];
            }
            else if (args[i] == "--keep-models")
            {
                keepModels = true;
            }
            else
            {
                names.Add(args[i]);
            }
        }
        if (names.Count == 0)
        {
            Console.WriteLine("benchmarks: " + string.Join(", ", Benchmarks.Keys.Order()));
            return 0;
        }
        Directory.CreateDirectory(outDir);
        var context = new BenchContext(outDir)
        {
            SurfaceFormsPath = surfaceForms,
            LmDirectory = lmDirectory,
            KeepModels = keepModels,
        };
        int failures = 0;
        foreach (string name in names)
        {
            if (!Benchmarks.TryGetValue(name, out Func<BenchContext, int>? run))
            {
                Console.Error.WriteLine($"error: unknown benchmark '{name}'");
                return 2;
            }
            Console.WriteLine($"== {name}");
            var sw = Stopwatch.StartNew();
            failures += run(context);
            Console.WriteLine($"== {name} done in {sw.Elapsed.TotalSeconds:F1} s");
        }
        return failures == 0 ? 0 : 1;
    }
}

/// <summary>Where results go, and the median helper every benchmark uses.</summary>
internal sealed class BenchContext(string outputDirectory)
{
    public string OutputDirectory { get; } = outputDirectory;

    /// <summary>A real surface-form matrix (`zett surface-forms` output) to benchmark over,
    /// instead of a synthetic one; null when not given.</summary>
    public string? SurfaceFormsPath { get; init; }

    /// <summary>Where the lm benchmarks keep the random models they generate (`--lm-dir`):
    /// lm-gpu's parent folder, lm-memory's model folder; null: a temporary folder.</summary>
    public string? LmDirectory { get; init; }

    /// <summary>`--keep-models`: leave the generated random models on disk.</summary>
    public bool KeepModels { get; init; }

    /// <summary>Runs <paramref name="action"/> <paramref name="warmup"/> times untimed, then
    /// <paramref name="repeats"/> times, and returns the median seconds.</summary>
    public static double MedianSeconds(Action action, int repeats = 5, int warmup = 1)
    {
        for (int i = 0; i < warmup; i++)
        {
            action();
        }
        var times = new double[repeats];
        for (int i = 0; i < repeats; i++)
        {
            long start = Stopwatch.GetTimestamp();
            action();
            times[i] = Stopwatch.GetElapsedTime(start).TotalSeconds;
        }
        Array.Sort(times);
        return times[repeats / 2];
    }
}
