using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Text.Json;
using ZeTT.Ops.Cpu;

namespace ZeTT.Bench;

/// <summary>
/// <c>gemm-cpu</c>: <see cref="CpuGemm"/> against OpenBLAS on the same shapes in the same run —
/// the hypernetwork's largest matmul (M 2048, N 1536, K 768) and a language model's projection
/// (M 2048, N 4096, K 4096) with fp32 and bf16 weights — each micro-kernel forced. Runs
/// alternate ours/theirs; medians of 5.
/// </summary>
internal static unsafe class GemmCpuBench
{
    private const int Repeats = 5;

    private sealed record Shape(string Name, int M, int N, int K, bool TransA, bool TransB);

    public static int Run(BenchContext context)
    {
        if (OpenBlas.Default is null)
        {
            Console.Error.WriteLine("error: libopenblas.so.0 not found (apt-get install libopenblas0-pthread)");
            return 1;
        }
        OpenBlas[] anchors = new[] { OpenBlas.Default, OpenBlas.Avx512 }.OfType<OpenBlas>().ToArray();
        foreach (OpenBlas o in anchors)
        {
            Console.WriteLine($"{o.Label}: {o.Config}");
        }
        Console.WriteLine($"best kernel here: {GemmKernels.Best}");
        Shape[] shapes =
        [
            new("hypernet ffn (x·Wᵀ)", 2048, 1536, 768, false, true),
            new("LM projection (x·Wᵀ)", 2048, 4096, 4096, false, true),
            new("LM weight grad (dYᵀ·X)", 4096, 4096, 2048, true, false),
            new("square NN", 2048, 2048, 2048, false, false),
        ];
        var rows = new List<object>();
        foreach (Shape s in shapes)
        {
            rows.Add(Compare(s, GemmType.F32, anchors));
            if (s.TransB)
            {
                rows.Add(Compare(s, GemmType.BF16, anchors));
            }
        }
        // One core, timed by the thread's CPU clock: on a machine other processes load, wall
        // time counts the time slices they take; CPU time counts only ours (cache pollution
        // from them remains), so this ratio moves far less from run to run.
        OpenBlas oneCoreAnchor = OpenBlas.Avx512 ?? OpenBlas.Default;
        var oneCore = new List<object>();
        foreach (Shape s in shapes)
        {
            oneCore.Add(CompareOneCore(s, GemmType.F32, oneCoreAnchor));
            if (s.TransB)
            {
                oneCore.Add(CompareOneCore(s, GemmType.BF16, oneCoreAnchor));
            }
        }
        var json = new
        {
            benchmark = "gemm-cpu",
            cores = Environment.ProcessorCount,
            openblas = anchors.ToDictionary(o => o.Label, o => o.Config),
            best_kernel = GemmKernels.Best.ToString(),
            repeats = Repeats,
            note = "GFLOP/s = 2·M·N·K / median seconds; ours and OpenBLAS alternate within one run",
            results = rows,
            one_core_note = "one thread each (ours maxThreads 1, OpenBLAS openblas_set_num_threads(1)); "
                + "GFLOP/s = 2·M·N·K / median CPU seconds of the calling thread",
            one_core = oneCore,
        };
        string path = Path.Combine(context.OutputDirectory, "gemm-cpu.json");
        File.WriteAllText(path, JsonSerializer.Serialize(json, new JsonSerializerOptions { WriteIndented = true }));
        Console.WriteLine($"wrote {path}");
        return 0;
    }

    /// <summary>Ours (each kernel) and OpenBLAS sgemm on fp32 A; with a bf16 B, ours reads the
    /// bf16 weight directly and OpenBLAS gets the same values widened to fp32 (Debian's build
    /// exports no bf16 GEMM).</summary>
    private static object Compare(Shape s, GemmType bType, OpenBlas[] anchors)
    {
        long aLen = (long)s.M * s.K, bLen = (long)s.K * s.N;
        float* a = Alloc<float>(aLen), b = Alloc<float>(bLen), c = Alloc<float>((long)s.M * s.N);
        ushort* b16 = Alloc<ushort>(bLen);
        var rng = new Random(s.M + s.N + s.K);
        for (long i = 0; i < aLen; i++)
        {
            a[i] = (float)((rng.NextDouble() * 2) - 1);
        }
        for (long i = 0; i < bLen; i++)
        {
            b16[i] = (ushort)(BitConverter.SingleToUInt32Bits((float)((rng.NextDouble() * 2) - 1)) >> 16);
            b[i] = BitConverter.UInt32BitsToSingle((uint)b16[i] << 16);
        }
        int lda = s.TransA ? s.M : s.K, ldb = s.TransB ? s.K : s.N;
        double flops = 2.0 * s.M * s.N * s.K;
        void* bOurs = bType == GemmType.BF16 ? b16 : b;
        var actions = anchors.Select(o => (Name: o.Label, Run: (Action)(() =>
            o.Gemm(s.TransA, s.TransB, s.M, s.N, s.K, a, lda, b, ldb, c, s.N)))).ToList();
        foreach (GemmKernel kernel in new[] { GemmKernel.Avx512, GemmKernel.Avx2 }.Where(GemmKernels.IsSupported))
        {
            actions.Add(($"ours_{kernel}".ToLowerInvariant(), () => CpuGemm.Gemm(kernel, 0, s.TransA,
                s.TransB, s.M, s.N, s.K, 1f, a, GemmType.F32, lda, bOurs, bType, ldb, 0f, c, s.N)));
        }
        double[] medians = Alternate(actions.Select(x => x.Run).ToArray());
        var gflops = new Dictionary<string, double>();
        for (int i = 0; i < actions.Count; i++)
        {
            gflops[actions[i].Name] = Math.Round(flops / medians[i] / 1e9, 1);
        }
        double best = gflops.Where(kv => kv.Key.StartsWith("ours", StringComparison.Ordinal)).Max(kv => kv.Value);
        double theirs = gflops.Where(kv => kv.Key.StartsWith("openblas", StringComparison.Ordinal)).Max(kv => kv.Value);
        double ratio = best / theirs;
        Console.WriteLine($"{s.Name,-24} M {s.M} N {s.N} K {s.K} A f32 B {bType,-4}: "
            + string.Join(", ", gflops.Select(kv => $"{kv.Key} {kv.Value:F1}"))
            + $" GFLOP/s; ours/best OpenBLAS {ratio:F2}");
        foreach (nint p in new[] { (nint)a, (nint)b, (nint)c, (nint)b16 })
        {
            NativeMemory.AlignedFree((void*)p);
        }
        return new
        {
            shape = s.Name,
            m = s.M,
            n = s.N,
            k = s.K,
            trans_a = s.TransA,
            trans_b = s.TransB,
            a_type = "f32",
            b_type = bType.ToString().ToLowerInvariant(),
            gflops,
            ours_over_best_openblas = Math.Round(ratio, 3),
        };
    }

    /// <summary>Ours (best kernel) and <paramref name="anchor"/> on one thread each, timed by
    /// the thread's CPU clock.</summary>
    private static object CompareOneCore(Shape s, GemmType bType, OpenBlas anchor)
    {
        long aLen = (long)s.M * s.K, bLen = (long)s.K * s.N;
        float* a = Alloc<float>(aLen), b = Alloc<float>(bLen), c = Alloc<float>((long)s.M * s.N);
        ushort* b16 = Alloc<ushort>(bLen);
        var rng = new Random(s.M + s.N + s.K);
        for (long i = 0; i < aLen; i++)
        {
            a[i] = (float)((rng.NextDouble() * 2) - 1);
        }
        for (long i = 0; i < bLen; i++)
        {
            b16[i] = (ushort)(BitConverter.SingleToUInt32Bits((float)((rng.NextDouble() * 2) - 1)) >> 16);
            b[i] = BitConverter.UInt32BitsToSingle((uint)b16[i] << 16);
        }
        int lda = s.TransA ? s.M : s.K, ldb = s.TransB ? s.K : s.N;
        void* bOurs = bType == GemmType.BF16 ? b16 : b;
        GemmKernel kernel = GemmKernels.Best;
        double[] medians;
        anchor.SetThreads(1);
        try
        {
            medians = Alternate(
            [
                () => CpuGemm.Gemm(kernel, 1, s.TransA, s.TransB, s.M, s.N, s.K, 1f, a,
                    GemmType.F32, lda, bOurs, bType, ldb, 0f, c, s.N),
                () => anchor.Gemm(s.TransA, s.TransB, s.M, s.N, s.K, a, lda, b, ldb, c, s.N),
            ], ThreadCpuSeconds);
        }
        finally
        {
            anchor.SetThreads(Environment.ProcessorCount);
        }
        double flops = 2.0 * s.M * s.N * s.K;
        double ours = flops / medians[0] / 1e9, theirs = flops / medians[1] / 1e9;
        Console.WriteLine($"one core: {s.Name,-24} M {s.M} N {s.N} K {s.K} B {bType,-4}: ours "
            + $"{ours:F1}, {anchor.Label} {theirs:F1} GFLOP/s per CPU-second; ratio {ours / theirs:F2}");
        foreach (nint p in new[] { (nint)a, (nint)b, (nint)c, (nint)b16 })
        {
            NativeMemory.AlignedFree((void*)p);
        }
        return new
        {
            shape = s.Name,
            m = s.M,
            n = s.N,
            k = s.K,
            b_type = bType.ToString().ToLowerInvariant(),
            gflops = new Dictionary<string, double>
            {
                ["ours"] = Math.Round(ours, 1),
                [anchor.Label] = Math.Round(theirs, 1),
            },
            ours_over_openblas = Math.Round(ours / theirs, 3),
        };
    }

    /// <summary>CPU seconds the calling thread has run (CLOCK_THREAD_CPUTIME_ID).</summary>
    private static double ThreadCpuSeconds()
    {
        long* ts = stackalloc long[2];
        if (ClockGetTime(3, ts) != 0)
        {
            throw new InvalidOperationException("clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
        }
        return ts[0] + (ts[1] * 1e-9);
    }

    [DllImport("libc", EntryPoint = "clock_gettime")]
    private static extern int ClockGetTime(int clock, long* timespec);

    private static double WallSeconds() => Stopwatch.GetTimestamp() / (double)Stopwatch.Frequency;

    /// <summary>One matmul of a language model: <c>x[m, k]·W[n, k]ᵀ</c>.</summary>
    private sealed record LmShape(string Model, string Op, int N, int K, GemmType Weight);

    /// <summary>
    /// <c>gemm-cpu-lm</c>: the matmuls of stories260K (dim 64, hidden 172, 4 KV heads of 8,
    /// vocabulary 512, fp32 weights) and of a ~100M llama (dim 768, hidden 2048, 12 heads,
    /// vocabulary 32000; fp32 and bf16 weights) at m = 1 (a generated token) and m = 512 (a
    /// prompt), against the machine's FMA ceiling measured in the same rounds (every core
    /// running independent Vector512 FMA chains) and OpenBLAS SkylakeX (sgemv at m = 1).
    /// </summary>
    public static int RunLm(BenchContext context)
    {
        OpenBlas? blas = OpenBlas.Avx512 ?? OpenBlas.Default;
        if (blas is null)
        {
            Console.Error.WriteLine("error: libopenblas.so.0 not found (apt-get install libopenblas0-pthread)");
            return 1;
        }
        Console.WriteLine($"{blas.Label}: {blas.Config}; best kernel here: {GemmKernels.Best}");
        LmShape[] shapes =
        [
            new("stories260K", "q, o (64→64)", 64, 64, GemmType.F32),
            new("stories260K", "k, v (64→32)", 32, 64, GemmType.F32),
            new("stories260K", "gate, up (64→172)", 172, 64, GemmType.F32),
            new("stories260K", "down (172→64)", 64, 172, GemmType.F32),
            new("stories260K", "lm head (64→512)", 512, 64, GemmType.F32),
            .. new[] { GemmType.F32, GemmType.BF16 }.SelectMany(t => new LmShape[]
            {
                new("llama-100M", "q, k, v, o (768→768)", 768, 768, t),
                new("llama-100M", "gate, up (768→2048)", 2048, 768, t),
                new("llama-100M", "down (2048→768)", 768, 2048, t),
                new("llama-100M", "lm head (768→32000)", 32000, 768, t),
            }),
        ];
        var rows = new List<object>();
        foreach (int m in new[] { 1, 512 })
        {
            foreach (LmShape s in shapes)
            {
                rows.Add(CompareLm(s, m, blas));
            }
        }
        var json = new
        {
            benchmark = "gemm-cpu-lm",
            cores = Environment.ProcessorCount,
            openblas = blas.Config,
            best_kernel = GemmKernels.Best.ToString(),
            repeats = Repeats,
            note = "x[m,k]·W[n,k]ᵀ; GFLOP/s = 2·m·n·k / median wall seconds on all cores; "
                + "fma_ceiling = every core running independent FMA chains, timed in the same "
                + "rounds; weight_gb_s = weight bytes / median seconds (m = 1 streams them once); "
                + "ours_tiled = the same call without the small-m path; one_core = one thread "
                + "each, timed by the thread's CPU clock, against one core's FMA ceiling",
            results = rows,
        };
        string path = Path.Combine(context.OutputDirectory, "gemm-cpu-lm.json");
        File.WriteAllText(path, JsonSerializer.Serialize(json, new JsonSerializerOptions { WriteIndented = true }));
        Console.WriteLine($"wrote {path}");
        return 0;
    }

    /// <summary>
    /// <c>gemm-cpu-gemv</c>: decoding (m = 1, 2) on the ~100M llama's matmuls and a 7B llama's
    /// (dim 4096, hidden 11008, vocabulary 32000), fp32 and bf16 weights, against OpenBLAS
    /// SkylakeX's sgemv (m = 1; sgemm at m = 2) and this path with the L1 panel instead of the
    /// fused in-register transpose, in the same rounds; all cores and one core.
    /// </summary>
    public static int RunGemv(BenchContext context)
    {
        OpenBlas? blas = OpenBlas.Avx512 ?? OpenBlas.Default;
        if (blas is null)
        {
            Console.Error.WriteLine("error: libopenblas.so.0 not found (apt-get install libopenblas0-pthread)");
            return 1;
        }
        Console.WriteLine($"{blas.Label}: {blas.Config}; best kernel here: {GemmKernels.Best}");
        LmShape[] shapes =
        [
            .. new[] { GemmType.F32, GemmType.BF16 }.SelectMany(t => new LmShape[]
            {
                new("llama-100M", "q, k, v, o (768→768)", 768, 768, t),
                new("llama-100M", "down (2048→768)", 768, 2048, t),
                new("llama-100M", "lm head (768→32000)", 32000, 768, t),
                new("llama-7B", "q, k, v, o (4096→4096)", 4096, 4096, t),
                new("llama-7B", "gate, up (4096→11008)", 11008, 4096, t),
                new("llama-7B", "down (11008→4096)", 4096, 11008, t),
                new("llama-7B", "lm head (4096→32000)", 32000, 4096, t),
            }),
        ];
        var rows = new List<object>();
        foreach (int m in new[] { 1, 2 })
        {
            foreach (LmShape s in shapes)
            {
                rows.Add(CompareLm(s, m, blas, tiled: false));
            }
        }
        var json = new
        {
            benchmark = "gemm-cpu-gemv",
            cores = Environment.ProcessorCount,
            openblas = blas.Config,
            best_kernel = GemmKernels.Best.ToString(),
            repeats = Repeats,
            note = "x[m,k]·W[n,k]ᵀ at m = 1, 2; GFLOP/s = 2·m·n·k / median wall seconds on all "
                + "cores; OpenBLAS is sgemv at m = 1 (bf16 weights widened to fp32 for it), sgemm "
                + "at m = 2; ours_l1_panel = the small-m path with the weight panel transposed "
                + "into an L1 buffer (the code before the fused kernel), same bits; ours_32_rows = m = 1 "
                + "without the half-panel pairing of k blocks (all 32 rows per step), same bits; weight_gb_s = "
                + "weight bytes / median seconds; one_core = one thread each, timed by the "
                + "thread's CPU clock",
            results = rows,
        };
        string path = Path.Combine(context.OutputDirectory, "gemm-cpu-gemv.json");
        File.WriteAllText(path, JsonSerializer.Serialize(json, new JsonSerializerOptions { WriteIndented = true }));
        Console.WriteLine($"wrote {path}");
        return 0;
    }

    private static object CompareLm(LmShape s, int m, OpenBlas blas, bool tiled = true)
    {
        long xLen = (long)m * s.K, wLen = (long)s.N * s.K;
        float* x = Alloc<float>(xLen), w = Alloc<float>(wLen), y = Alloc<float>((long)m * s.N);
        ushort* w16 = Alloc<ushort>(wLen);
        var rng = new Random(s.N + s.K + m);
        for (long i = 0; i < xLen; i++)
        {
            x[i] = (float)((rng.NextDouble() * 2) - 1);
        }
        for (long i = 0; i < wLen; i++)
        {
            w16[i] = (ushort)(BitConverter.SingleToUInt32Bits((float)((rng.NextDouble() * 2) - 1)) >> 16);
            w[i] = BitConverter.UInt32BitsToSingle((uint)w16[i] << 16);
        }
        void* wOurs = s.Weight == GemmType.BF16 ? w16 : w;
        GemmKernel kernel = GemmKernels.Best;
        var actions = new List<(string Name, Action Run)>
        {
            ("ours", () => CpuGemm.Gemm(kernel, 0, false, true, m, s.N, s.K, 1f, x, GemmType.F32,
                s.K, wOurs, s.Weight, s.K, 0f, y, s.N)),
            (blas.Label, m == 1 ? () => blas.Gemv(s.N, s.K, w, s.K, x, y)
                : () => blas.Gemm(false, true, m, s.N, s.K, x, s.K, w, s.K, y, s.N)),
        };
        bool unfused = m <= 2 && GemmSmallM.Applies(kernel, m);
        void Unfused(int threads)
        {
            GemmSmallM.FusedTranspose = false;
            try
            {
                CpuGemm.Gemm(kernel, threads, false, true, m, s.N, s.K, 1f, x, GemmType.F32, s.K,
                    wOurs, s.Weight, s.K, 0f, y, s.N);
            }
            finally
            {
                GemmSmallM.FusedTranspose = true;
            }
        }
        // At m = 1 the L3-resident weights go half a panel at a time; this is the 32-row kernel
        // on the same call (same bits).
        bool halves = unfused && m == 1;
        void Rows32(int threads)
        {
            GemmSmallM.HalfPanels = false;
            try
            {
                CpuGemm.Gemm(kernel, threads, false, true, m, s.N, s.K, 1f, x, GemmType.F32, s.K,
                    wOurs, s.Weight, s.K, 0f, y, s.N);
            }
            finally
            {
                GemmSmallM.HalfPanels = true;
            }
        }
        if (unfused)
        {
            actions.Add(("ours_l1_panel", () => Unfused(0)));
        }
        if (halves)
        {
            actions.Add(("ours_32_rows", () => Rows32(0)));
        }
        if (GemmSmallM.Applies(kernel, m) && tiled)
        {
            actions.Add(("ours_tiled", () => CpuGemm.Gemm(kernel, 0, false, true, m, s.N, s.K, 1f,
                x, GemmType.F32, s.K, wOurs, s.Weight, s.K, 0f, y, s.N, smallM: false)));
        }
        double flops = 2.0 * m * s.N * s.K;
        // Tiny shapes would otherwise be timed in the JIT's first tier (tiered compilation
        // promotes a method only after 30 calls and a 100 ms pause in new compilations): warm
        // every action up for 0.25 s and at least 2 calls.
        foreach ((string _, Action run) in actions)
        {
            var warm = Stopwatch.StartNew();
            for (int i = 0; i < 2 || warm.Elapsed.TotalSeconds < 0.25; i++)
            {
                run();
            }
        }
        // Small shapes take microseconds: time a batch of calls (≥ ~20 ms per sample).
        var once = Stopwatch.StartNew();
        actions[0].Run();
        int batch = (int)Math.Clamp(0.02 / Math.Max(once.Elapsed.TotalSeconds, 1e-7), 1, 100_000);
        Action Batch(Action a) => () =>
        {
            for (int i = 0; i < batch; i++)
            {
                a();
            }
        };
        var timed = actions.Select(a => Batch(a.Run)).ToList();
        timed.Add(FmaCeiling.Burn);
        double[] medians = Alternate([.. timed]);
        var gflops = new Dictionary<string, double>();
        for (int i = 0; i < actions.Count; i++)
        {
            gflops[actions[i].Name] = Math.Round(flops * batch / medians[i] / 1e9, 2);
        }
        double ceiling = FmaCeiling.Flops / medians[^1] / 1e9;
        double ours = gflops["ours"], theirs = gflops[blas.Label];
        double weightBytes = wLen * (s.Weight == GemmType.BF16 ? 2 : 4);
        double gbs = weightBytes * batch / medians[0] / 1e9;
        // One core by the thread's CPU clock (see gemm-cpu's one_core): the same calls on one
        // thread, against one core's FMA ceiling.
        double[] one;
        bool small = GemmSmallM.Applies(kernel, m);
        blas.SetThreads(1);
        try
        {
            var oneCore = new List<Action>
            {
                Batch(() => CpuGemm.Gemm(kernel, 1, false, true, m, s.N, s.K, 1f, x, GemmType.F32,
                    s.K, wOurs, s.Weight, s.K, 0f, y, s.N)),
                Batch(actions[1].Run),
                FmaCeiling.BurnOne,
            };
            if (unfused)
            {
                oneCore.Add(Batch(() => Unfused(1)));
            }
            if (halves)
            {
                oneCore.Add(Batch(() => Rows32(1)));
            }
            if (small && tiled)
            {
                oneCore.Add(Batch(() => CpuGemm.Gemm(kernel, 1, false, true, m, s.N, s.K, 1f, x,
                    GemmType.F32, s.K, wOurs, s.Weight, s.K, 0f, y, s.N, smallM: false)));
            }
            one = Alternate([.. oneCore], ThreadCpuSeconds);
        }
        finally
        {
            blas.SetThreads(Environment.ProcessorCount);
        }
        double oursOne = flops * batch / one[0] / 1e9, theirsOne = flops * batch / one[1] / 1e9;
        double ceilingOne = FmaCeiling.FlopsOne / one[2] / 1e9;
        double? unfusedOne = unfused ? flops * batch / one[3] / 1e9 : null;
        double? rows32One = halves ? flops * batch / one[4] / 1e9 : null;
        double? tiledOne = small && tiled ? flops * batch / one[unfused ? (halves ? 5 : 4) : 3] / 1e9 : null;
        Console.WriteLine($"{s.Model,-11} m {m,3} {s.Op,-22} W {s.Weight,-4}: "
            + string.Join(", ", gflops.Select(kv => $"{kv.Key} {kv.Value:F2}"))
            + $" GFLOP/s, FMA ceiling {ceiling:F0}; ours/ceiling {ours / ceiling:P1}, ours/{blas.Label} {ours / theirs:F2}"
            + (m == 1 ? $", weights {gbs:F1} GB/s" : "")
            + $" | one core: ours {oursOne:F2}, {blas.Label} {theirsOne:F2}, ceiling {ceilingOne:F0}; "
            + $"ours/ceiling {oursOne / ceilingOne:P1}, ours/{blas.Label} {oursOne / theirsOne:F2}"
            + (unfusedOne is { } u ? $", ours_l1_panel {u:F2}" : "")
            + (rows32One is { } r32 ? $", ours_32_rows {r32:F2}" : "")
            + (tiledOne is { } t ? $", ours_tiled {t:F2}" : ""));
        foreach (nint p in new[] { (nint)x, (nint)w, (nint)y, (nint)w16 })
        {
            NativeMemory.AlignedFree((void*)p);
        }
        return new
        {
            model = s.Model,
            op = s.Op,
            m,
            n = s.N,
            k = s.K,
            weight_type = s.Weight.ToString().ToLowerInvariant(),
            calls_per_sample = batch,
            gflops,
            fma_ceiling_gflops = Math.Round(ceiling, 1),
            ours_over_ceiling = Math.Round(ours / ceiling, 4),
            ours_over_openblas = Math.Round(ours / theirs, 3),
            weight_gb_s = Math.Round(gbs, 2),
            one_core = new
            {
                gflops = new Dictionary<string, double>
                {
                    ["ours"] = Math.Round(oursOne, 2),
                    [blas.Label] = Math.Round(theirsOne, 2),
                },
                ours_l1_panel_gflops = unfusedOne is { } u1 ? Math.Round(u1, 2) : (double?)null,
                ours_32_rows_gflops = rows32One is { } r1 ? Math.Round(r1, 2) : (double?)null,
                ours_tiled_gflops = tiledOne is { } t1 ? Math.Round(t1, 2) : (double?)null,
                fma_ceiling_gflops = Math.Round(ceilingOne, 1),
                ours_over_ceiling = Math.Round(oursOne / ceilingOne, 4),
                ours_over_openblas = Math.Round(oursOne / theirsOne, 3),
            },
        };
    }

    /// <summary>Runs each action once to warm up, then <see cref="Repeats"/> rounds of all of
    /// them in turn (so load from other processes hits each alike); median seconds per action.
    /// </summary>
    private static double[] Alternate(Action[] actions) => Alternate(actions, WallSeconds);

    /// <summary><see cref="Alternate(Action[])"/> timed by <paramref name="clock"/> (seconds).
    /// </summary>
    private static double[] Alternate(Action[] actions, Func<double> clock)
    {
        foreach (Action a in actions)
        {
            a();
        }
        var times = new double[actions.Length][];
        for (int i = 0; i < actions.Length; i++)
        {
            times[i] = new double[Repeats];
        }
        for (int r = 0; r < Repeats; r++)
        {
            for (int i = 0; i < actions.Length; i++)
            {
                double start = clock();
                actions[i]();
                times[i][r] = clock() - start;
            }
        }
        return times.Select(t => t.Order().ElementAt(Repeats / 2)).ToArray();
    }

    private static T* Alloc<T>(long count)
        where T : unmanaged => (T*)NativeMemory.AlignedAlloc((nuint)(count * sizeof(T)), 64);
}

/// <summary>The machine's fp32 FMA ceiling as the benchmark sees it: every core running 12
/// independent Vector512 (or Vector256) FMA chains, enough to fill two pipes of 4-cycle latency;
/// timed like any other action, so load from other processes lowers it as it lowers ours.
/// </summary>
internal static class FmaCeiling
{
    private const int Iterations = 1 << 21;

    private static float s_sink;

    /// <summary>Floating-point operations one <see cref="Burn"/> performs.</summary>
    public static double Flops => 2.0 * Environment.ProcessorCount * Iterations * 12
        * (Vector512.IsHardwareAccelerated ? 16 : 8);

    /// <summary>Floating-point operations one <see cref="BurnOne"/> performs.</summary>
    public static double FlopsOne => Flops / Environment.ProcessorCount;

    /// <summary>One burst on the calling thread.</summary>
    public static void BurnOne() =>
        Volatile.Write(ref s_sink, Vector512.IsHardwareAccelerated ? Chains512() : Chains256());

    /// <summary>One burst on every core.</summary>
    public static void Burn() =>
        Parallel.For(0, Environment.ProcessorCount,
            new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, _ =>
            {
                float r = Vector512.IsHardwareAccelerated ? Chains512() : Chains256();
                Volatile.Write(ref s_sink, r);
            });

    private static float Chains512()
    {
        Vector512<float> m = Vector512.Create(0.999999f), a = Vector512.Create(1e-7f);
        Vector512<float> c0 = Vector512.Create(1f), c1 = c0 + a, c2 = c1 + a, c3 = c2 + a;
        Vector512<float> c4 = c3 + a, c5 = c4 + a, c6 = c5 + a, c7 = c6 + a, c8 = c7 + a;
        Vector512<float> c9 = c8 + a, c10 = c9 + a, c11 = c10 + a;
        for (int i = 0; i < Iterations; i++)
        {
            c0 = Vector512.FusedMultiplyAdd(c0, m, a);
            c1 = Vector512.FusedMultiplyAdd(c1, m, a);
            c2 = Vector512.FusedMultiplyAdd(c2, m, a);
            c3 = Vector512.FusedMultiplyAdd(c3, m, a);
            c4 = Vector512.FusedMultiplyAdd(c4, m, a);
            c5 = Vector512.FusedMultiplyAdd(c5, m, a);
            c6 = Vector512.FusedMultiplyAdd(c6, m, a);
            c7 = Vector512.FusedMultiplyAdd(c7, m, a);
            c8 = Vector512.FusedMultiplyAdd(c8, m, a);
            c9 = Vector512.FusedMultiplyAdd(c9, m, a);
            c10 = Vector512.FusedMultiplyAdd(c10, m, a);
            c11 = Vector512.FusedMultiplyAdd(c11, m, a);
        }
        return Vector512.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11);
    }

    private static float Chains256()
    {
        Vector256<float> m = Vector256.Create(0.999999f), a = Vector256.Create(1e-7f);
        Vector256<float> c0 = Vector256.Create(1f), c1 = c0 + a, c2 = c1 + a, c3 = c2 + a;
        Vector256<float> c4 = c3 + a, c5 = c4 + a, c6 = c5 + a, c7 = c6 + a, c8 = c7 + a;
        Vector256<float> c9 = c8 + a, c10 = c9 + a, c11 = c10 + a;
        for (int i = 0; i < Iterations; i++)
        {
            c0 = Vector256.FusedMultiplyAdd(c0, m, a);
            c1 = Vector256.FusedMultiplyAdd(c1, m, a);
            c2 = Vector256.FusedMultiplyAdd(c2, m, a);
            c3 = Vector256.FusedMultiplyAdd(c3, m, a);
            c4 = Vector256.FusedMultiplyAdd(c4, m, a);
            c5 = Vector256.FusedMultiplyAdd(c5, m, a);
            c6 = Vector256.FusedMultiplyAdd(c6, m, a);
            c7 = Vector256.FusedMultiplyAdd(c7, m, a);
            c8 = Vector256.FusedMultiplyAdd(c8, m, a);
            c9 = Vector256.FusedMultiplyAdd(c9, m, a);
            c10 = Vector256.FusedMultiplyAdd(c10, m, a);
            c11 = Vector256.FusedMultiplyAdd(c11, m, a);
        }
        return Vector256.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11);
    }
}
