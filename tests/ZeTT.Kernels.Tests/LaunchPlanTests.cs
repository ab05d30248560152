using ZeTT.Kernels.Launch;

namespace ZeTT.Kernels.Tests;

/// <summary>Launch-parameter logic and launcher validation, on fabricated device views (no
/// device needed).</summary>
public sealed class LaunchPlanTests
{
    private static ulong _next = 0x7000_0000;

    private static DeviceView F32(long n) => Fake(n, KernelDType.F32);

    private static DeviceView Fake(long n, KernelDType t)
    {
        ulong a = _next;
        _next += 0x100_0000;
        return new DeviceView(a, n, t);
    }

    [Fact]
    public void Surface_embed_plans_one_block_per_position_and_fills_args()
    {
        DeviceView ids = Fake(14, KernelDType.I32), src = Fake(10 * 768, KernelDType.BF16);
        DeviceView fb = F32(3 * 768), w = F32(768), b = F32(768), o = Fake(14 * 768,
            KernelDType.BF16);
        var (cfg, args) = EmbeddingKernels.PlanSurfaceEmbed(ids, 14, src, 768, 10, fb, w, b, o);
        Assert.Equal(new LaunchConfig(14, 1, 192, 0), cfg);
        Assert.Equal(ids.Address, args.Ids);
        Assert.Equal(src.Address, args.Source);
        Assert.Equal((int)KernelDType.BF16, args.SourceDtype);
        Assert.Equal((int)KernelDType.BF16, args.OutDtype);
        Assert.Equal(w.Address, args.InW);
        Assert.Equal(10, args.OriginalVocab);
    }

    [Fact]
    public void Surface_embed_rejects_bad_views_with_named_messages()
    {
        DeviceView ids = Fake(4, KernelDType.I32), src = F32(10 * 8), fb = F32(8), o = F32(32);
        var e = Assert.Throws<ArgumentException>(() => EmbeddingKernels.PlanSurfaceEmbed(
            ids, 4, src, 8, 11, fb, default, default, o));
        Assert.Contains("source has 80 elements, needs at least 88", e.Message,
            StringComparison.Ordinal);
        e = Assert.Throws<ArgumentException>(() => EmbeddingKernels.PlanSurfaceEmbed(
            ids with { DType = KernelDType.F32 }, 4, src, 8, 10, fb, default, default, o));
        Assert.Contains("ids must be I32", e.Message, StringComparison.Ordinal);
        e = Assert.Throws<ArgumentException>(() => EmbeddingKernels.PlanSurfaceEmbed(
            ids, 4, src, 8, 10, fb, F32(8), default, o));
        Assert.Contains("given together", e.Message, StringComparison.Ordinal);
        e = Assert.Throws<ArgumentException>(() => EmbeddingKernels.PlanSurfaceEmbed(
            ids, 4, src, 8, 10, fb, default, default, o with { Address = o.Address + 2 }));
        Assert.Contains("not aligned", e.Message, StringComparison.Ordinal);
        e = Assert.Throws<ArgumentException>(() => EmbeddingKernels.PlanSurfaceEmbed(
            ids, 0, src, 8, 10, fb, default, default, o));
        Assert.Contains("tokens must be positive", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Roberta_embed_plans_a_block_per_packed_token_and_stages_it_in_shared_memory()
    {
        // 3 rows packed to 10 surface tokens, plus a language position each: 13 tokens.
        DeviceView src = Fake(13, KernelDType.I32), pos = Fake(13, KernelDType.I32);
        var (cfg, args) = EmbeddingKernels.PlanRobertaEmbedLayerNorm(F32(10 * 64), 10, src, pos,
            13, 64, F32(7 * 64), 7, F32(64), F32(64), F32(64), F32(64), 1e-5f, F32(13 * 64),
            Fake(13 * 64, KernelDType.BF16));
        Assert.Equal(new LaunchConfig(13, 1, 32, 256), cfg);
        Assert.Equal(13, args.Tokens);
        Assert.Equal(src.Address, args.Src);
        Assert.Equal(pos.Address, args.PosIndex);
        Assert.Equal(1e-5f, args.Eps);
        var (cfg2, args2) = EmbeddingKernels.PlanRobertaEmbedLayerNorm(F32(10 * 64), 10,
            Fake(10, KernelDType.I32), Fake(10, KernelDType.I32), 10, 64, F32(7 * 64), 7,
            F32(64), default, F32(64), F32(64), 1e-5f, F32(10 * 64), default);
        Assert.Equal(10u, cfg2.GridX);
        Assert.Equal(0ul, args2.Lang);
        Assert.Equal(0ul, args2.OutGemm);
        // Output too short for the tokens; eps not positive.
        Assert.Throws<ArgumentException>(() => EmbeddingKernels.PlanRobertaEmbedLayerNorm(
            F32(10 * 64), 10, src, pos, 13, 64, F32(7 * 64), 7, F32(64), F32(64), F32(64),
            F32(64), 1e-5f, F32(12 * 64), default));
        Assert.Throws<ArgumentException>(() => EmbeddingKernels.PlanRobertaEmbedLayerNorm(
            F32(10 * 64), 10, src, pos, 13, 64, F32(7 * 64), 7, F32(64), F32(64), F32(64),
            F32(64), 0f, F32(13 * 64), default));
    }

    [Fact]
    public void Roberta_embed_rejects_token_counts_the_surface_tokens_cannot_give()
    {
        // Without a language position every token is a surface token.
        var e = Assert.Throws<ArgumentException>(() => EmbeddingKernels.PlanRobertaEmbedLayerNorm(
            F32(10 * 64), 10, Fake(13, KernelDType.I32), Fake(13, KernelDType.I32), 13, 64,
            F32(7 * 64), 7, F32(64), default, F32(64), F32(64), 1e-5f, F32(13 * 64), default));
        Assert.Contains("13 tokens cannot come from 10 surface tokens", e.Message,
            StringComparison.Ordinal);
        // The position index array must hold one entry per token.
        var e2 = Assert.Throws<ArgumentException>(() => EmbeddingKernels.PlanRobertaEmbedLayerNorm(
            F32(10 * 64), 10, Fake(13, KernelDType.I32), Fake(12, KernelDType.I32), 13, 64,
            F32(7 * 64), 7, F32(64), F32(64), F32(64), F32(64), 1e-5f, F32(13 * 64), default));
        Assert.Contains("posIndex has 12 elements", e2.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(1, 32)]
    [InlineData(7, 32)]
    [InlineData(768, 192)]
    [InlineData(4096, 512)]
    public void Row_kernels_use_a_warp_multiple_of_threads(int cols, uint expected)
    {
        var (cfg, _) = EpilogueKernels.PlanBiasActivationResidualLayerNorm(F32(2 * cols),
            F32(cols), F32(2 * cols), F32(cols), F32(cols), 1e-6f, Activation.GeluTanh, 2, cols,
            F32(2 * cols), default);
        Assert.Equal(expected, cfg.BlockX);
        Assert.Equal(0u, cfg.BlockX % 32);
        Assert.Equal((uint)cols * 4, cfg.SharedBytes);
    }

    [Fact]
    public void Bias_activation_is_a_capped_grid_stride_loop()
    {
        var (cfg, args) = EpilogueKernels.PlanBiasActivation(F32(5 * 7), default, 5, 7,
            Activation.GeluErf, Fake(35, KernelDType.BF16));
        Assert.Equal(new LaunchConfig(1, 1, 256, 0), cfg);
        Assert.Equal(35, args.Count);
        Assert.Equal((int)Activation.GeluErf, args.Act);
        long big = 131072L * 8192;
        var (cfg2, _) = EpilogueKernels.PlanBiasActivation(F32(big), F32(8192), 131072, 8192,
            Activation.None, F32(big));
        Assert.Equal(65536u, cfg2.GridX);
        Assert.Throws<ArgumentException>(() => EpilogueKernels.PlanBiasActivation(F32(35),
            default, 5, 7, (Activation)9, F32(35)));
        Assert.Throws<ArgumentException>(() => EpilogueKernels.PlanBiasActivation(F32(35),
            Fake(7, KernelDType.BF16), 5, 7, Activation.None, F32(35)));
    }

    [Fact]
    public void Attention_plans_a_block_per_head_and_row_with_the_longest_row_in_shared_memory()
    {
        int rows = 5, tokens = 23, maxSeq = 8, heads = 12, hd = 64, h = heads * hd;
        DeviceView ids = Fake(tokens, KernelDType.I32), src = Fake(tokens, KernelDType.I32);
        DeviceView starts = Fake(rows + 1, KernelDType.I32);
        var (cfg, args) = AttentionKernel.Plan(F32(tokens * 3 * h), F32(3 * h), ids, src, starts,
            rows, tokens, maxSeq, heads, hd, 1, F32(tokens * h));
        Assert.Equal(new LaunchConfig(12, 5, 128, (uint)((3 * 8 * 65 + 64 + 8) * 4)), cfg);
        Assert.Equal(1f / 8f, args.Scale);
        Assert.Equal(1, args.PadId);
        Assert.Equal(8, args.MaxSeq);
        Assert.Equal(src.Address, args.Src);
        Assert.Equal(starts.Address, args.RowStart);
        Assert.Equal(53760u, AttentionKernel.SharedBytes(32, 128));
    }

    [Theory]
    [InlineData(2, 33, 64, 64, "exceeds 32")]
    [InlineData(2, 8, 129, 16, "head dimension 129")]
    [InlineData(2, 8, 64, 17, "17 tokens cannot be 2 rows of 1 to 8 tokens")]
    [InlineData(3, 8, 64, 2, "2 tokens cannot be 3 rows")]
    public void Attention_rejects_what_the_fused_kernel_cannot_hold(int rows, int maxSeq, int hd,
        int tokens, string message)
    {
        int h = 2 * hd;
        var e = Assert.Throws<ArgumentException>(() => AttentionKernel.Plan(
            F32(tokens * 3 * h), default, Fake(tokens, KernelDType.I32),
            Fake(tokens, KernelDType.I32), Fake(rows + 1, KernelDType.I32), rows, tokens, maxSeq,
            2, hd, 0, F32(tokens * h)));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Attention_needs_row_starts_for_every_row_and_an_end()
    {
        int rows = 4, tokens = 10, h = 128;
        var e = Assert.Throws<ArgumentException>(() => AttentionKernel.Plan(F32(tokens * 3 * h),
            default, Fake(tokens, KernelDType.I32), Fake(tokens, KernelDType.I32),
            Fake(rows, KernelDType.I32), rows, tokens, 8, 2, 64, 0, F32(tokens * h)));
        Assert.Contains("rowStart has 4 elements, needs at least 5", e.Message,
            StringComparison.Ordinal);
    }

    [Fact]
    public void Bias_rescale_offsets_the_window_and_its_bias()
    {
        DeviceView x = F32(3 * 10), bias = F32(10);
        var (_, args) = HeadKernels.PlanBiasRescale(x, 10, 6, bias, F32(4), F32(4), 3, 4,
            F32(12));
        Assert.Equal(x.Address + 24, args.X);
        Assert.Equal(bias.Address + 24, args.Bias);
        Assert.Equal(10, args.XLd);
        var e = Assert.Throws<ArgumentException>(() => HeadKernels.PlanBiasRescale(x, 10, 7,
            bias, default, default, 3, 4, F32(12)));
        Assert.Contains("window [7, 11)", e.Message, StringComparison.Ordinal);
        var (_, noBias) = HeadKernels.PlanBiasRescale(x, 10, 0, default, default, default, 3,
            10, F32(30));
        Assert.Equal(0ul, noBias.Bias);
        Assert.Equal(0ul, noBias.W);
    }

    [Fact]
    public void Pool_first_plans_a_block_per_row()
    {
        DeviceView starts = Fake(5, KernelDType.I32);
        var (cfg, args) = HeadKernels.PlanPoolFirst(F32(20 * 32), starts, 4, 20, 32, F32(4 * 32),
            default);
        Assert.Equal(4u, cfg.GridX);
        Assert.Equal(starts.Address, args.RowStart);
        Assert.Throws<ArgumentException>(() => HeadKernels.PlanPoolFirst(F32(20 * 32 - 1),
            starts, 4, 20, 32, F32(4 * 32), default));
        Assert.Throws<ArgumentException>(() => HeadKernels.PlanPoolFirst(F32(20 * 32),
            Fake(4, KernelDType.I32), 4, 20, 32, F32(4 * 32), default));
        Assert.Throws<ArgumentException>(() => HeadKernels.PlanPoolFirst(F32(20 * 32), starts, 4,
            3, 32, F32(4 * 32), default));
    }
}
