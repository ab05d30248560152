using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;
using ZeTT.Ops.Cpu;

namespace ZeTT.Bench;

/// <summary>
/// <c>gemm-cpu</c>: <see cref="CpuGemm"/> against OpenBLAS on the same shapes in the same run —
/// the hypernetwork's largest matmul (M 2048, N 1536, K 768) and a language model's projection
/// (M 2048, N 4096, K 4096) with fp32 and bf16 weights — each micro-kernel forced, plus the
/// hypernetwork's pre-packed entry point. Runs alternate ours/theirs; medians of 5.
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
        var json = new
        {
            benchmark = "gemm-cpu",
            cores = Environment.ProcessorCount,
            openblas = anchors.ToDictionary(o => o.Label, o => o.Config),
            best_kernel = GemmKernels.Best.ToString(),
            repeats = Repeats,
            note = "GFLOP/s = 2·M·N·K / median seconds; ours and OpenBLAS alternate within one run",
            results = rows,
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

    /// <summary>Runs each action once to warm up, then <see cref="Repeats"/> rounds of all of
    /// them in turn (so load from other processes hits each alike); median seconds per action.
    /// </summary>
    private static double[] Alternate(Action[] actions)
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
                long start = Stopwatch.GetTimestamp();
                actions[i]();
                times[i][r] = Stopwatch.GetElapsedTime(start).TotalSeconds;
            }
        }
        return times.Select(t => t.Order().ElementAt(Repeats / 2)).ToArray();
    }

    private static T* Alloc<T>(long count)
        where T : unmanaged => (T*)NativeMemory.AlignedAlloc((nuint)(count * sizeof(T)), 64);

    private static float[] Fill(int n, Random rng)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++)
        {
            x[i] = (float)((rng.NextDouble() * 2) - 1);
        }
        return x;
    }
}
