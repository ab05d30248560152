using ZeTT.Kernels.Launch;

namespace ZeTT.Kernels.Tests;

/// <summary>Launch plans and argument validation of the op-layer launchers (flash attention,
/// fused cross-entropy, norms, activations, rotary, copies), on fabricated device views: no
/// device needed.</summary>
public sealed class OpLaunchPlanTests
{
    private static ulong _next = 0x4000_0000;

    private static DeviceView Fake(long n, KernelDType t = KernelDType.F32)
    {
        ulong a = Interlocked.Add(ref _next, 0x1000_0000) - 0x1000_0000;
        return new DeviceView(a, n, t);
    }

    private static ArgumentException Fails(Action a) => Assert.Throws<ArgumentException>(a);

    private static void Says(string expected, Action a) =>
        Assert.Contains(expected, Fails(a).Message, StringComparison.Ordinal);

    // ---- flash attention ------------------------------------------------------------------

    private static AttentionShape Shape(int b = 2, int tq = 2048, int tk = 2048, int hq = 32,
        int hkv = 8, int dh = 128, int window = 0) =>
        new(b, tq, tk, tk - tq, hq, hkv, dh, window, 1f / MathF.Sqrt(dh));

    private static AttentionOperand Dense(int b, int t, int h, int dh,
        KernelDType type = KernelDType.BF16) =>
        AttentionOperand.Dense(Fake((long)b * t * h * dh, type), t, h, dh);

    [Fact]
    public void Forward_plans_a_block_per_64_queries_and_head_with_the_tiles_in_shared_memory()
    {
        AttentionShape s = Shape();
        var (cfg, args) = FlashAttentionKernels.PlanForward(s, Dense(2, 2048, 32, 128),
            Dense(2, 2048, 8, 128), Dense(2, 2048, 8, 128), Dense(2, 2048, 32, 128),
            Fake(2 * 32 * 2048));
        Assert.Equal(new LaunchConfig(32, 64, 256, 74496), cfg);
        // Q tile 64 + K, V tiles 32 rows of 129 floats, probabilities 64 × 33: 74,496 bytes,
        // under the 163 KiB (A100) and 227 KiB (H100/H200) opt-in limits.
        Assert.Equal(74496u, FlashAttentionKernels.ForwardSharedBytes(128));
        Assert.Equal(107520u, FlashAttentionKernels.DqSharedBytes(128));
        Assert.Equal(116224u, FlashAttentionKernels.DkdvSharedBytes(128));
        Assert.Equal(2048L * 32 * 128, args.QBatchStride);
        Assert.Equal(8 * 128, args.KRowStride);
        Assert.Equal((int)KernelDType.BF16, args.InDtype);
        Assert.Equal(1, args.Causal);
        Assert.Equal(0ul, args.KvLens);
    }

    [Fact]
    public void Tensor_core_forward_applies_to_aligned_bf16_heads_of_64_and_128()
    {
        AttentionOperand q = Dense(2, 2048, 32, 128), kv = Dense(2, 2048, 8, 128);
        Assert.Equal(128, FlashAttentionKernels.TensorCoreHeadDim(Shape(), q, kv, kv));
        AttentionOperand q64 = Dense(1, 300, 4, 64), kv64 = Dense(1, 300, 4, 64);
        Assert.Equal(64, FlashAttentionKernels.TensorCoreHeadDim(Shape(1, 300, 300, 4, 4, 64),
            q64, kv64, kv64));
        // Four warps per 64 queries; K and V tiles of 64 rows of 128 + 8 bf16: 34,816 bytes.
        Assert.Equal(new LaunchConfig(32, 64, 128, 34816),
            FlashAttentionKernels.MmaForwardConfig(Shape()));
        // fp32 inputs, other head sizes and misaligned rows take the fp32-FMA kernel.
        AttentionOperand f = Dense(2, 2048, 32, 128, KernelDType.F32);
        Assert.Equal(0, FlashAttentionKernels.TensorCoreHeadDim(Shape(), f, kv, kv));
        AttentionOperand q80 = Dense(1, 100, 4, 80), kv80 = Dense(1, 100, 2, 80);
        Assert.Equal(0, FlashAttentionKernels.TensorCoreHeadDim(
            Shape(1, 100, 100, 4, 2, 80), q80, kv80, kv80));
        DeviceView raw = Fake(2L * 2048 * 8 * 132, KernelDType.BF16);
        var oddRows = new AttentionOperand(raw, 2048L * 8 * 132, 8 * 132 + 4);
        Assert.Equal(0, FlashAttentionKernels.TensorCoreHeadDim(Shape(), q, oddRows, kv));
        var shifted = new AttentionOperand(raw.Slice(4, raw.Length - 4), 2048L * 8 * 128,
            8 * 128);
        Assert.Equal(0, FlashAttentionKernels.TensorCoreHeadDim(Shape(), q, kv, shifted));
    }

    [Fact]
    public void Backward_plans_preprocess_dq_and_dkdv_grids()
    {
        AttentionShape s = Shape(b: 1, tq: 100, tk: 100, hq: 4, hkv: 2, dh: 80, window: 37);
        AttentionOperand q = Dense(1, 100, 4, 80), k = Dense(1, 100, 2, 80);
        var plan = FlashAttentionKernels.PlanBackward(s, q, k, Dense(1, 100, 2, 80),
            Dense(1, 100, 4, 80), Dense(1, 100, 4, 80), Fake(400), Fake(400),
            Dense(1, 100, 4, 80, KernelDType.F32), Dense(1, 100, 2, 80, KernelDType.F32),
            Dense(1, 100, 2, 80, KernelDType.F32), Fake(1, KernelDType.I32));
        // 400 (batch, head, query) rows, 8 warps a block; 2 query tiles × 4 heads; 2 key tiles ×
        // 2 kv heads.
        Assert.Equal(new LaunchConfig(50, 1, 256, 0), plan.Preprocess);
        Assert.Equal(new LaunchConfig(2, 4, 256, FlashAttentionKernels.DqSharedBytes(80)),
            plan.Dq);
        Assert.Equal(new LaunchConfig(2, 2, 256, FlashAttentionKernels.DkdvSharedBytes(80)),
            plan.Dkdv);
        Assert.Equal(37, plan.Args.Window);
        Assert.Equal((int)KernelDType.F32, plan.Args.GradDtype);
        Assert.Equal(2 * 80, plan.Args.DkRowStride);
        Assert.NotEqual(0ul, plan.Args.KvLens);
    }

    [Fact]
    public void Fused_qkv_windows_are_valid_operands()
    {
        // One [T, 3·H·D] projection: Q at column 0, K at H·D, V at 2·H·D, row stride 3·H·D.
        const int T = 70, H = 2, D = 32;
        DeviceView qkv = Fake((long)T * 3 * H * D);
        AttentionOperand Window(int i) =>
            new(qkv.Slice((long)i * H * D, qkv.Length - (long)i * H * D), 0, 3 * H * D);
        var (_, args) = FlashAttentionKernels.PlanForward(Shape(1, T, T, H, H, D), Window(0),
            Window(1), Window(2), AttentionOperand.Dense(Fake(T * H * D), T, H, D),
            Fake(H * T));
        Assert.Equal(qkv.Address + (ulong)(H * D * 4), args.K);
        Assert.Equal(3 * H * D, args.VRowStride);
    }

    [Fact]
    public void Attention_rejects_bad_shapes_with_named_messages()
    {
        AttentionOperand q = Dense(2, 2048, 32, 128), kv = Dense(2, 2048, 8, 128);
        DeviceView lse = Fake(2 * 32 * 2048);
        Says("head dimension 160 exceeds 128", () => FlashAttentionKernels.PlanForward(
            Shape(dh: 160), q, kv, kv, q, lse));
        Says("32 query heads are not a multiple of 12", () => FlashAttentionKernels.PlanForward(
            Shape(hkv: 12), q, kv, kv, q, lse));
        Says("k must be BF16", () => FlashAttentionKernels.PlanForward(Shape(), q,
            Dense(2, 2048, 8, 128, KernelDType.F32), kv, q, lse));
        Says("lse has 100 elements", () => FlashAttentionKernels.PlanForward(Shape(), q, kv, kv,
            q, Fake(100)));
        Says("v has", () => FlashAttentionKernels.PlanForward(Shape(), q, kv,
            kv with { View = kv.View with { Length = 1000 } }, q, lse));
        Says("row stride 64 is less than heads·headDim = 4096", () =>
            FlashAttentionKernels.PlanForward(Shape(), q with { RowStride = 64 }, kv, kv, q, lse));
        Says("exceeds the grid's y limit", () => FlashAttentionKernels.PlanForward(
            Shape(b: 4096, tq: 1, tk: 1, hq: 32, hkv: 32, dh: 8), Dense(4096, 1, 32, 8),
            Dense(4096, 1, 32, 8), Dense(4096, 1, 32, 8), Dense(4096, 1, 32, 8), Fake(4096 * 32)));
    }

    // ---- cross-entropy --------------------------------------------------------------------

    [Theory]
    [InlineData(16384, 32000, 256L << 20, 4096)]
    [InlineData(8, 300, 4096, 128)]
    [InlineData(8, 100, 4096, 100)]
    [InlineData(1, 128256, 256L << 20, 128256)]
    [InlineData(100000, 50257, 1L << 20, 128)]
    public void Chunk_width_is_whole_gemm_tiles_within_the_budget(int rows, int vocab,
        long budget, int expected) =>
        Assert.Equal(expected, LmHeadCrossEntropy.ChunkColumns(rows, vocab, budget));

    [Fact]
    public void Chunks_cover_the_vocabulary_in_order_with_a_short_tail()
    {
        Assert.Equal([(0, 128), (128, 128), (256, 44)], LmHeadCrossEntropy.Chunks(300, 128));
        Assert.Equal([(0, 100)], LmHeadCrossEntropy.Chunks(100, 128));
    }

    [Fact]
    public void Cross_entropy_checks_its_operands_and_workspace()
    {
        const int N = 9, D = 40, V = 300, C = 128;
        DeviceView h = Fake(N * D, KernelDType.BF16), w = Fake(V * D, KernelDType.BF16);
        DeviceView t = Fake(N, KernelDType.I32), loss = Fake(N), lse = Fake(N);
        var ws = new CrossEntropyWorkspace(Fake(N * C), Fake(3 * N),
            Fake(N * C, KernelDType.BF16), C);
        CrossEntropyArgs args = LmHeadCrossEntropy.PlanForward(h, w, Fake(V), N, D, V, t, loss,
            lse, ws);
        Assert.Equal(C, args.Ld);
        Assert.Equal(ws.Stats.Address + (ulong)(N * 4), args.RowSum);
        Assert.Equal(ws.Stats.Address + (ulong)(2 * N * 4), args.TargetLogit);
        Says("weight must be BF16", () => LmHeadCrossEntropy.PlanForward(h,
            w with { DType = KernelDType.F32 }, default, N, D, V, t, loss, lse, ws));
        Says("workspace.Logits has 100 elements, needs at least 1152", () =>
            LmHeadCrossEntropy.PlanForward(h, w, default, N, D, V, t, loss, lse,
                ws with { Logits = Fake(100) }));
        Says("workspace.DLogits must be BF16", () => LmHeadCrossEntropy.PlanBackward(h, w,
            default, N, D, V, t, lse, default, Fake(N * D), Fake(V * D), default,
            ws with { DLogits = Fake(N * C) }));
        CrossEntropyArgs b = LmHeadCrossEntropy.PlanBackward(h, w, default, N, D, V, t, lse,
            default, Fake(N * D), default, default, ws);
        Assert.Equal((int)KernelDType.BF16, b.OutDtype);
        Assert.Equal(0ul, b.Dloss);
    }

    // ---- norms, activations, rotary, copies -----------------------------------------------

    [Fact]
    public void Norm_backward_sums_parameter_gradients_in_chunks_of_64_rows()
    {
        var plan = NormKernels.PlanBackward(NormKind.Layer, Fake(130 * 96), Fake(96),
            Fake(130 * 96), Fake(130), Fake(130), 130, 96, false, Fake(130 * 96), Fake(96),
            Fake(96), Fake(2 * 3 * 96), 1f);
        Assert.Equal(new LaunchConfig(130, 1, 32, 0), plan.Dx);
        Assert.Equal(new LaunchConfig(1, 3, 256, 0), plan.Params);
        Assert.Equal(2, plan.Sums.Length);
        Assert.All(plan.Sums, s => Assert.Equal((3, 96, 1f), (s.Rows, s.Cols, s.Beta)));
        Assert.Equal(plan.Args.DwPartial + 3 * 96 * 4, plan.Args.DbPartial);
        // RMSNorm without a weight gradient needs no workspace and no second stage.
        var rms = NormKernels.PlanBackward(NormKind.Rms, Fake(10 * 8), Fake(8), Fake(10 * 8),
            default, Fake(10), 10, 8, true, Fake(10 * 8), default, default, default, 0f);
        Assert.Null(rms.Params);
        Assert.Equal(1, rms.Args.UnitOffset);
        Says("partial has 10 elements", () => NormKernels.PlanBackward(NormKind.Rms,
            Fake(10 * 8), Fake(8), Fake(10 * 8), default, Fake(10), 10, 8, false, Fake(10 * 8),
            Fake(8), default, Fake(10), 0f));
        Says("mean must be absent (RMSNorm saves no mean)", () => NormKernels.PlanForward(
            NormKind.Rms, Fake(80), Fake(8), default, 10, 8, 1e-6f, false, Fake(80), Fake(10),
            Fake(10)));
        Says("eps must be positive", () => NormKernels.PlanForward(NormKind.Layer, Fake(80),
            Fake(8), default, 10, 8, 0f, false, Fake(80), Fake(10), Fake(10)));
    }

    [Fact]
    public void Layer_norm_takes_a_fused_residual_of_the_same_extent()
    {
        DeviceView r = Fake(80, KernelDType.BF16);
        var (_, args) = NormKernels.PlanForward(NormKind.Layer, Fake(80), Fake(8), Fake(8), 10, 8,
            1e-5f, false, Fake(80), Fake(10), Fake(10), r);
        Assert.Equal((r.Address, (int)KernelDType.BF16), (args.Residual, args.ResDtype));
        var (_, plain) = NormKernels.PlanForward(NormKind.Layer, Fake(80), Fake(8), Fake(8), 10,
            8, 1e-5f, false, Fake(80), Fake(10), Fake(10));
        Assert.Equal(0ul, plain.Residual);
        Says("residual has 79 elements", () => NormKernels.PlanForward(NormKind.Layer, Fake(80),
            Fake(8), Fake(8), 10, 8, 1e-5f, false, Fake(80), Fake(10), Fake(10), Fake(79)));
    }

    [Fact]
    public void Gated_activation_reads_row_strided_windows()
    {
        DeviceView fused = Fake(11 * 2 * 93);
        var (cfg, args) = ActivationKernels.PlanGlu(false, Activation.Silu, fused,
            fused.Slice(93, fused.Length - 93), 11, 93, 186, Fake(11 * 93), 93, default, default);
        Assert.Equal(186, args.InLd);
        Assert.Equal(fused.Address + 93 * 4, args.Up);
        Assert.Equal(GridFor(11 * 93), cfg.GridX);
        Says("row strides (50, 93) must be at least the 93 columns", () =>
            ActivationKernels.PlanGlu(false, Activation.Silu, fused, fused, 11, 93, 50,
                Fake(11 * 93), 93, default, default));
        Says("unknown activation 9", () => ActivationKernels.Plan(false, (Activation)9,
            Fake(10), default, default, 1, 10, Fake(10)));
    }

    [Fact]
    public void Rotary_plans_pairs_plus_copied_columns_and_checks_the_rotary_dimension()
    {
        // GPT-NeoX: head 64, rotary 16: 8 pairs + 48 copied columns per head.
        var (cfg, args) = RotaryKernels.Plan(Fake(13 * 3 * 64), 3 * 64,
            Fake(13, KernelDType.I32), Fake(8), 13, 3, 64, 16, false, true, Fake(13 * 3 * 64),
            3 * 64);
        Assert.Equal(-1f, args.Sign);
        Assert.Equal(0, args.Style);
        Assert.Equal(GridFor(13L * 3 * (64 - 8)), cfg.GridX);
        Says("rotary dimension 15 must be even", () => RotaryKernels.Plan(Fake(64), 64,
            Fake(1, KernelDType.I32), Fake(8), 1, 1, 64, 15, false, false, Fake(64), 64));
        Says("invFreq has 4 elements, needs at least 8", () => RotaryKernels.Plan(Fake(64), 64,
            Fake(1, KernelDType.I32), Fake(4), 1, 1, 64, 16, true, false, Fake(64), 64));
        float[] f = RotaryKernels.InverseFrequencies(8, 10000f);
        Assert.Equal(1f, f[0]);
        Assert.Equal(1f / MathF.Pow(10000f, 0.75f), f[3]);
    }

    private static uint GridFor(long n) => (uint)Math.Clamp((n + 255) / 256, 1, 65536);

    [Fact]
    public unsafe void Strided_copy_checks_extents_and_fills_without_a_source()
    {
        // A [7, 10] window at column 5 of a [7, 33] tensor into a dense [7, 10].
        DeviceView src = Fake(7 * 33), dst = Fake(7 * 10, KernelDType.BF16);
        var (cfg, args) = ResidualKernels.PlanCopy(src.Slice(5, 7 * 33 - 5), [33, 1], dst,
            [10, 1], [7, 10], 0f);
        Assert.Equal(70, args.Count);
        Assert.Equal(2, args.Rank);
        Assert.Equal(33, args.SrcStrides[0]);
        Assert.Equal(10, args.DstStrides[0]);
        Assert.Equal((int)KernelDType.BF16, args.DstDtype);
        Assert.Equal(1u, cfg.GridX);
        var (_, fill) = ResidualKernels.PlanCopy(default, [], dst, [10, 1], [7, 10], 2.5f);
        Assert.Equal(0ul, fill.Src);
        Assert.Equal(2.5f, fill.Value);
        Says("destination has 70 elements, needs at least 231", () => ResidualKernels.PlanCopy(
            src, [33, 1], dst, [33, 1], [7, 33], 0f));
        Says("7 dimensions exceed 6", () => ResidualKernels.PlanCopy(src, new long[7], dst,
            new long[7], [1, 1, 1, 1, 1, 1, 1], 0f));
    }

    [Fact]
    public void Embedding_backward_gives_each_thread_a_column()
    {
        var (cfg, args) = GatherKernels.PlanBackward(Fake(7, KernelDType.I32), Fake(7 * 4096),
            32000, 4096, 1f, Fake(32000L * 4096));
        Assert.Equal(new LaunchConfig(16, 1, 256, 0), cfg);
        Assert.Equal(32000, args.Vocab);
        Says("dTable must be F32", () => GatherKernels.PlanBackward(Fake(7, KernelDType.I32),
            Fake(7 * 8), 10, 8, 1f, Fake(80, KernelDType.BF16)));
        var (fcfg, fargs) = GatherKernels.PlanForward(Fake(7, KernelDType.I32),
            Fake(10 * 8, KernelDType.BF16), 10, 8, 2f, Fake(56), Fake(1, KernelDType.I32));
        Assert.Equal(7u, fcfg.GridX);
        Assert.NotEqual(0ul, fargs.Error);
        Assert.Equal(2f, fargs.Scale);
    }

    // ---- training: rescalers and AdamW ----------------------------------------------------

    [Fact]
    public void Scale_shift_reads_and_writes_row_strided_windows()
    {
        // x: 5 columns at offset 3 of rows 12 wide; the output dense.
        DeviceView wide = Fake(7 * 12);
        var (cfg, args) = TrainingKernels.PlanScaleShift(
            new StridedRows(wide.Slice(3, 6 * 12 + 5), 12), Fake(5), default, 7, 5,
            new StridedRows(Fake(35, KernelDType.BF16), 5));
        Assert.Equal(new LaunchConfig(1, 1, 256, 0), cfg);
        Assert.Equal((12, 5, 7, 5), (args.LdX, args.LdOut, args.Rows, args.Cols));
        Assert.Equal(wide.Address + 12, args.X);
        Assert.Equal(0ul, args.Shift);
        Assert.Equal((int)KernelDType.BF16, args.OutDtype);
        Says("x's row stride 4 is less than the 5 columns", () => TrainingKernels.PlanScaleShift(
            new StridedRows(Fake(35), 4), Fake(5), default, 7, 5, new StridedRows(Fake(35), 5)));
        Says("output has 34 elements, needs at least 35", () => TrainingKernels.PlanScaleShift(
            new StridedRows(Fake(35), 5), Fake(5), default, 7, 5, new StridedRows(Fake(34), 5)));
        Says("shift has 4 elements, needs at least 5", () => TrainingKernels.PlanScaleShift(
            new StridedRows(Fake(35), 5), Fake(5), Fake(4), 7, 5, new StridedRows(Fake(35), 5)));
    }

    [Fact]
    public void Scale_shift_gradients_sum_chunks_of_64_rows_into_the_gradients()
    {
        DeviceView partial = Fake(2 * 3 * 96);
        var plan = TrainingKernels.PlanScaleShiftParams(new StridedRows(Fake(130 * 100), 100),
            new StridedRows(Fake(130 * 96), 96), 130, 96, Fake(96), Fake(96), partial);
        Assert.Equal(new LaunchConfig(1, 3, 256, 0), plan.Partials);
        Assert.Equal((100, 96, 64), (plan.Args.LdDy, plan.Args.LdX, plan.Args.RowsPerChunk));
        Assert.Equal(partial.Address, plan.Args.DsPartial);
        Assert.Equal(partial.Address + 3 * 96 * 4, plan.Args.DbPartial);
        Assert.Equal(2, plan.Sums.Length);
        // Accumulated (beta 1) into dScale and dShift, as the op's contract says (+=).
        Assert.All(plan.Sums, s => Assert.Equal((3, 96, 96, 1f), (s.Rows, s.Cols, s.Ld, s.Beta)));
        // Only dShift: x is not read and only the second half of the workspace is written.
        var shiftOnly = TrainingKernels.PlanScaleShiftParams(new StridedRows(Fake(10 * 8), 8),
            default, 10, 8, default, Fake(8), Fake(2 * 8));
        Assert.Equal((0ul, 0ul), (shiftOnly.Args.X, shiftOnly.Args.DsPartial));
        Assert.Single(shiftOnly.Sums);
        Says("neither dScale nor dShift is given", () => TrainingKernels.PlanScaleShiftParams(
            new StridedRows(Fake(80), 8), new StridedRows(Fake(80), 8), 10, 8, default, default,
            Fake(16)));
        Says("partial has 8 elements, needs at least 16", () =>
            TrainingKernels.PlanScaleShiftParams(new StridedRows(Fake(80), 8),
                new StridedRows(Fake(80), 8), 10, 8, Fake(8), default, Fake(8)));
        Says("dScale must be F32", () => TrainingKernels.PlanScaleShiftParams(
            new StridedRows(Fake(80), 8), new StridedRows(Fake(80), 8), 10, 8,
            Fake(8, KernelDType.BF16), default, Fake(16)));
    }

    [Fact]
    public void AdamW_scalars_are_rounded_as_the_cpu_update_rounds_them()
    {
        AdamWScalars s = AdamWScalars.For(1e-3, 0.9, 0.95, 1e-8, 0.01, 3, 0.5);
        Assert.Equal(1f - 0.9f, s.OneMinusBeta1);
        Assert.Equal(1f - 0.95f, s.OneMinusBeta2);
        Assert.Equal((float)(1 - Math.Pow(0.9, 3)), s.C1);
        Assert.Equal((float)(1 - Math.Pow(0.95, 3)), s.C2);
        Assert.Equal((1e-3f, 0.5f, 1e-8f), (s.LearningRate, s.GradientScale, s.Eps));
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            AdamWScalars.For(1e-3, 0.9, 0.95, 1e-8, 0, 0, 1));

        var (cfg, args) = TrainingKernels.PlanAdamW(Fake(100_000), Fake(100_000, KernelDType.BF16),
            Fake(100_000), Fake(100_000), 100_000, s);
        Assert.Equal(new LaunchConfig(391, 1, 256, 0), cfg);
        Assert.Equal(((int)KernelDType.F32, (int)KernelDType.BF16, (int)KernelDType.F32),
            (args.ParamDtype, args.GradDtype, args.StateDtype));
        Assert.Equal((s.C1, s.C2, s.WeightDecay), (args.C1, args.C2, args.WeightDecay));
        Says("v must be BF16", () => TrainingKernels.PlanAdamW(Fake(10), Fake(10),
            Fake(10, KernelDType.BF16), Fake(10), 10, s));
        Says("gradient has 9 elements, needs at least 10", () => TrainingKernels.PlanAdamW(
            Fake(10), Fake(9), Fake(10), Fake(10), 10, s));
    }
}
