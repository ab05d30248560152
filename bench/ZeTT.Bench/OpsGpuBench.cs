using System.Globalization;
using System.Text.Json.Nodes;
using ZeTT.Kernels;
using ZeTT.Kernels.Blas;
using ZeTT.Kernels.Launch;

namespace ZeTT.Bench;

/// <summary>
/// <c>ops-gpu</c>: the op layer's long-sequence kernels on the GPU, bf16 storage —
/// flash attention forward and backward (causal, GQA 32/8 heads of 128 as Mistral-7B, 2k–8k
/// tokens per sequence, 16k tokens per call) and the fused LM-head cross-entropy forward and
/// backward (16k tokens, hidden 4096, vocabularies of 32,000 and 128,256). TFLOP/s count useful
/// work only — attention: 4·B·H·T²·D/2 forward (causal) and 2.5× that backward (FlashAttention's
/// convention; the recomputation is not counted); loss: 2·N·V·H forward, 4·N·V·H backward (the
/// recomputed logits are not counted) — against the bf16 GEMM peak measured in the same run
/// (an 8192³ cuBLASLt GEMM). Medians of 5 event-timed runs after a warm-up. Prints "skipped:
/// no CUDA device" and succeeds where there is none (fails under ZETT_REQUIRE_GPU=1).
/// </summary>
internal static class OpsGpuBench
{
    private const int Heads = 32, KvHeads = 8, HeadDim = 128, TokensPerCall = 16384;
    private const int Hidden = 4096;

    public static int Run(BenchContext context)
    {
        if (GpuBenchmarks.Skip())
        {
            return 0;
        }
        double peak = GpuBenchmarks.MeasuredPeak();
        using CudaContext ctx = CudaContext.Create();
        using var stream = new CudaStream(ctx);
        using var kernels = new KernelSet(ctx);
        using var blas = new BlasHandle(stream);
        using var start = new CudaEvent(ctx);
        using var end = new CudaEvent(ctx);
        Console.WriteLine($"{ctx}: measured bf16 peak (8192³ GEMM) {peak:F0} TFLOP/s");

        double Median(Action run)
        {
            run();
            var times = new double[5];
            for (int i = 0; i < times.Length; i++)
            {
                start.Record(stream);
                run();
                end.Record(stream);
                end.Synchronize();
                times[i] = CudaEvent.ElapsedMilliseconds(start, end) / 1000.0;
            }
            Array.Sort(times);
            return times[times.Length / 2];
        }

        var attention = new JsonArray();
        foreach (int t in new[] { 2048, 4096, 8192 })
        {
            int b = TokensPerCall / t;
            long qn = (long)b * t * Heads * HeadDim, kn = (long)b * t * KvHeads * HeadDim;
            using DeviceBuffer q = Random(ctx, KernelDType.BF16, qn, 1);
            using DeviceBuffer k = Random(ctx, KernelDType.BF16, kn, 2);
            using DeviceBuffer v = Random(ctx, KernelDType.BF16, kn, 3);
            using DeviceBuffer o = DeviceBuffer.Allocate(ctx, KernelDType.BF16, qn);
            using DeviceBuffer dO = Random(ctx, KernelDType.BF16, qn, 4);
            using DeviceBuffer dq = DeviceBuffer.Allocate(ctx, KernelDType.BF16, qn);
            using DeviceBuffer dk = DeviceBuffer.Allocate(ctx, KernelDType.BF16, kn);
            using DeviceBuffer dv = DeviceBuffer.Allocate(ctx, KernelDType.BF16, kn);
            long stats = (long)b * Heads * t;
            using DeviceBuffer lse = DeviceBuffer.Allocate(ctx, KernelDType.F32, stats);
            using DeviceBuffer delta = DeviceBuffer.Allocate(ctx, KernelDType.F32, stats);
            var shape = new AttentionShape(b, t, t, 0, Heads, KvHeads, HeadDim, 0,
                1f / MathF.Sqrt(HeadDim));
            AttentionOperand Q(DeviceBuffer x) => AttentionOperand.Dense(x.View, t, Heads, HeadDim);
            AttentionOperand K(DeviceBuffer x) =>
                AttentionOperand.Dense(x.View, t, KvHeads, HeadDim);
            double fwd = Median(() => FlashAttentionKernels.Forward(kernels, stream, shape, Q(q),
                K(k), K(v), Q(o), lse.View));
            // The fp32-FMA kernel on the same bf16 inputs: the tensor-core kernel's anchor.
            double fwdFma = Median(() => FlashAttentionKernels.Forward(kernels, stream, shape,
                Q(q), K(k), K(v), Q(o), lse.View, tensorCores: false));
            double bwd = Median(() => FlashAttentionKernels.Backward(kernels, stream, shape, Q(q),
                K(k), K(v), Q(o), Q(dO), lse.View, delta.View, Q(dq), K(dk), K(dv)));
            double flops = 4.0 * b * Heads * (double)t * t * HeadDim / 2;
            double fT = flops / fwd / 1e12, bT = 2.5 * flops / bwd / 1e12;
            Console.WriteLine($"attention T {t,5} x {b,2}: forward {fwd * 1e3,8:F2} ms "
                + $"{fT,6:F1} TFLOP/s ({100 * fT / peak:F1} % of peak; fp32-FMA kernel "
                + $"{fwdFma * 1e3:F2} ms, {fwdFma / fwd:F2}x slower), backward "
                + $"{bwd * 1e3,8:F2} ms {bT,6:F1} TFLOP/s ({100 * bT / peak:F1} %)");
            attention.Add(new JsonObject
            {
                ["tokens_per_sequence"] = t,
                ["batch"] = b,
                ["forward_ms"] = Math.Round(fwd * 1e3, 3),
                ["forward_tflops"] = Math.Round(fT, 2),
                ["forward_kernel"] = FlashAttentionKernels.TensorCoreHeadDim(shape, Q(q), K(k),
                    K(v)) > 0 ? "tensor cores (mma.sync bf16)" : "fp32 FMA",
                ["forward_fp32_fma_ms"] = Math.Round(fwdFma * 1e3, 3),
                ["forward_fp32_fma_tflops"] = Math.Round(flops / fwdFma / 1e12, 2),
                ["backward_ms"] = Math.Round(bwd * 1e3, 3),
                ["backward_tflops"] = Math.Round(bT, 2),
            });
        }

        var loss = new JsonArray();
        foreach (int vocab in new[] { 32000, 128256 })
        {
            const int n = TokensPerCall;
            using DeviceBuffer h = Random(ctx, KernelDType.BF16, (long)n * Hidden, 5);
            using DeviceBuffer w = Random(ctx, KernelDType.BF16, (long)vocab * Hidden, 6);
            int[] targetIds = new int[n];
            var rng = new Random(7);
            for (int i = 0; i < n; i++)
            {
                targetIds[i] = rng.Next(vocab);
            }
            using DeviceBuffer targets = DeviceBuffer.FromHost<int>(ctx, KernelDType.I32,
                targetIds);
            int chunk = LmHeadCrossEntropy.ChunkColumns(n, vocab);
            using DeviceBuffer logits = DeviceBuffer.Allocate(ctx, KernelDType.F32,
                (long)n * chunk);
            using DeviceBuffer dlogits = DeviceBuffer.Allocate(ctx, KernelDType.BF16,
                (long)n * chunk);
            using DeviceBuffer st = DeviceBuffer.Allocate(ctx, KernelDType.F32, 3L * n);
            using DeviceBuffer lossRows = DeviceBuffer.Allocate(ctx, KernelDType.F32, n);
            using DeviceBuffer lse = DeviceBuffer.Allocate(ctx, KernelDType.F32, n);
            using DeviceBuffer dh = DeviceBuffer.Allocate(ctx, KernelDType.F32, (long)n * Hidden);
            using DeviceBuffer dw = DeviceBuffer.Allocate(ctx, KernelDType.F32,
                (long)vocab * Hidden);
            var ws = new CrossEntropyWorkspace(logits.View, st.View, dlogits.View, chunk);
            double fwd = Median(() => LmHeadCrossEntropy.Forward(kernels, blas, h.View, w.View,
                default, n, Hidden, vocab, targets.View, lossRows.View, lse.View, ws));
            double bwd = Median(() => LmHeadCrossEntropy.Backward(kernels, blas, h.View, w.View,
                default, n, Hidden, vocab, targets.View, lse.View, default, dh.View, dw.View,
                default, ws));
            double flops = 2.0 * n * vocab * Hidden;
            double fT = flops / fwd / 1e12, bT = 2 * flops / bwd / 1e12;
            Console.WriteLine($"lm-head cross-entropy V {vocab,6} (chunk {chunk}): forward "
                + $"{fwd * 1e3,8:F2} ms {fT,6:F1} TFLOP/s ({100 * fT / peak:F1} %), backward "
                + $"{bwd * 1e3,8:F2} ms {bT,6:F1} TFLOP/s ({100 * bT / peak:F1} %)");
            loss.Add(new JsonObject
            {
                ["tokens"] = n,
                ["hidden"] = Hidden,
                ["vocab"] = vocab,
                ["chunk_columns"] = chunk,
                ["forward_ms"] = Math.Round(fwd * 1e3, 3),
                ["forward_tflops"] = Math.Round(fT, 2),
                ["backward_ms"] = Math.Round(bwd * 1e3, 3),
                ["backward_tflops"] = Math.Round(bT, 2),
            });
        }
        JsonArray linear = LinearEpilogues(peak);
        GpuBenchmarks.Write(context, "ops-gpu.json", new JsonObject
        {
            ["date"] = DateTime.UtcNow.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture),
            ["gpu"] = ctx.ToString(),
            ["peak_tflops"] = Math.Round(peak, 1),
            ["attention"] = new JsonObject
            {
                ["heads"] = Heads,
                ["kv_heads"] = KvHeads,
                ["head_dim"] = HeadDim,
                ["dtype"] = "bf16",
                ["causal"] = true,
                ["runs"] = attention,
            },
            ["lm_head_cross_entropy"] = loss,
            ["linear"] = linear,
        });
        return 0;
    }

    /// <summary>
    /// <c>CudaBackend.Linear</c> with a bias and an activation at the hypernetworks' FFN shapes
    /// (32768 rows; TinyLlama H 2048 → I 4096, Mistral-7B H 4096 → I 8192): through one cuBLASLt
    /// matmul with an epilogue, and the unfused path (bias copied into y, GEMM with beta 1,
    /// activation pass) as the anchor in the same run. Two storage cases: fp32 activations with
    /// bf16 weights and an fp32 bias (what the hypernetwork runs now: x rounded to bf16 in
    /// scratch, fp32 y), and bf16 activations, weights and bias. TFLOP/s = 2·rows·in·out / time
    /// (the epilogue's work not counted), median of 5 (10 calls each) after a warm-up.
    /// </summary>
    private static JsonArray LinearEpilogues(double peak)
    {
        const int rows = 32768;
        var results = new JsonArray();
        using var ops = new Ops.Cuda.CudaBackend();
        foreach ((string size, int inF, int outF) in new[] { ("TinyLlama", 2048, 4096),
            ("Mistral-7B", 4096, 8192) })
        {
            foreach ((string storage, Ops.DType act, Ops.DType weightType) in new[]
            {
                ("fp32 activations, bf16 weights", Ops.DType.F32, Ops.DType.BF16),
                ("bf16", Ops.DType.BF16, Ops.DType.BF16),
            })
            {
                using Ops.Tensor x = Upload(ops, act, [rows, inF], 11);
                using Ops.Tensor w = Upload(ops, weightType, [outF, inF], 12);
                using Ops.Tensor b = Upload(ops, act, [outF], 13);
                using Ops.Tensor y = ops.Zeros(act, [rows, outF]);
                foreach (Ops.ActivationFunction? f in new Ops.ActivationFunction?[]
                    { null, Ops.ActivationFunction.GeluTanh, Ops.ActivationFunction.GeluErf })
                {
                    double Time(bool fused)
                    {
                        ops.FusedLinearEpilogues = fused;
                        void Run()
                        {
                            for (int i = 0; i < 10; i++)
                            {
                                ops.Linear(x, w, b, y, false, f);
                            }
                            ops.Synchronize();
                        }
                        Run();
                        var times = new double[5];
                        for (int i = 0; i < times.Length; i++)
                        {
                            long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
                            Run();
                            times[i] = System.Diagnostics.Stopwatch.GetElapsedTime(t0)
                                .TotalSeconds / 10;
                        }
                        Array.Sort(times);
                        return times[times.Length / 2];
                    }
                    double fused = Time(true), unfused = Time(false);
                    ops.FusedLinearEpilogues = true;
                    double flops = 2.0 * rows * inF * outF;
                    double fT = flops / fused / 1e12, uT = flops / unfused / 1e12;
                    string fn = f?.ToString() ?? "none";
                    Console.WriteLine($"linear {size,-10} {inF}->{outF} {storage,-31} "
                        + $"bias+{fn,-8}: fused {fused * 1e3,7:F3} ms {fT,6:F1} TFLOP/s "
                        + $"({100 * fT / peak:F1} %), unfused {unfused * 1e3,7:F3} ms "
                        + $"{uT,6:F1} TFLOP/s ({100 * uT / peak:F1} %)");
                    results.Add(new JsonObject
                    {
                        ["size"] = size,
                        ["rows"] = rows,
                        ["in"] = inF,
                        ["out"] = outF,
                        ["storage"] = storage,
                        ["activation"] = fn,
                        ["fused_ms"] = Math.Round(fused * 1e3, 4),
                        ["fused_tflops"] = Math.Round(fT, 2),
                        ["unfused_ms"] = Math.Round(unfused * 1e3, 4),
                        ["unfused_tflops"] = Math.Round(uT, 2),
                    });
                }
            }
        }
        return results;
    }

    /// <summary>Uniform values in [−1, 1) on the backend, in <paramref name="type"/>.</summary>
    private static Ops.Tensor Upload(Ops.Cuda.CudaBackend ops, Ops.DType type, long[] shape,
        int seed)
    {
        var rng = new Random(seed);
        using Ops.Tensor host = Ops.Tensor.Host(type, shape);
        long n = host.Count;
        if (type == Ops.DType.BF16)
        {
            Span<ushort> bits = host.AsSpan<ushort>();
            for (long i = 0; i < n; i++)
            {
                bits[(int)i] = Ops.BFloat16.FromFloat((float)(rng.NextDouble() * 2 - 1));
            }
        }
        else
        {
            Span<float> values = host.AsSpan<float>();
            for (long i = 0; i < n; i++)
            {
                values[(int)i] = (float)(rng.NextDouble() * 2 - 1);
            }
        }
        return ops.Upload(host);
    }

    /// <summary>Uniform values in [−1, 1) (bf16 bits or fp32), made on the host.</summary>
    private static DeviceBuffer Random(CudaContext ctx, KernelDType type, long n, int seed)
    {
        var rng = new Random(seed);
        if (type == KernelDType.BF16)
        {
            var bits = new ushort[n];
            for (long i = 0; i < n; i++)
            {
                bits[i] = Ops.BFloat16.FromFloat((float)(rng.NextDouble() * 2 - 1));
            }
            return DeviceBuffer.FromHost<ushort>(ctx, type, bits);
        }
        var values = new float[n];
        for (long i = 0; i < n; i++)
        {
            values[i] = (float)(rng.NextDouble() * 2 - 1);
        }
        return DeviceBuffer.FromHost<float>(ctx, type, values);
    }
}
