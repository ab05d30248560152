using ZeTT.Kernels.Launch;
using ZeTT.Kernels.Reference;

namespace ZeTT.Kernels.Tests.Gpu;

/// <summary>
/// Every kernel on the device against its CPU twin, on awkward sizes. Tolerances: fp32 outputs
/// 1e-5 + 1e-5·|ref| for element-wise ops (float vs the twin's double), 2e-5 + 2e-5·|ref| after
/// a LayerNorm or softmax (sums over a row); bf16 outputs one bf16 rounding step
/// since a value near a rounding tie can land on either side: one bf16 ulp is at most 2⁻⁷
/// of the value.
/// </summary>
[Collection("gpu")]
public sealed class KernelParityTests(GpuSession session)
{
    private const double Bf16Rtol = 1.0 / 128;

    [Theory]
    [InlineData(KernelDType.F32, KernelDType.F32, true)]
    [InlineData(KernelDType.BF16, KernelDType.BF16, true)]
    [InlineData(KernelDType.BF16, KernelDType.F32, false)]
    [InlineData(KernelDType.F32, KernelDType.BF16, false)]
    public void Surface_embed(KernelDType sourceType, KernelDType outType, bool rescale)
    {
        var g = session.Require();
        int v0 = 50, fallbackRows = 3, width = 77;
        int[] ids = [0, 49, 50, 52, 7, 1, 51, 49, 0, 13, 50];
        float[] source = Parity.Random(1, v0 * width);
        if (sourceType == KernelDType.BF16)
        {
            source = Parity.Bf16(source);
        }
        float[] fallback = Parity.Random(2, fallbackRows * width);
        float[] w = rescale ? Parity.Random(3, width) : [], b = rescale ? Parity.Random(4, width)
            : [];
        DeviceView output = g.Allocate(ids.Length * width, outType);
        EmbeddingKernels.SurfaceEmbed(g.Kernels, g.Stream, g.Upload(ids), ids.Length,
            g.Upload(source, sourceType), width, v0, g.Upload(fallback),
            rescale ? g.Upload(w) : default, rescale ? g.Upload(b) : default, output);
        var expected = new float[ids.Length * width];
        CpuKernels.SurfaceEmbed(ids, source, width, v0, fallback, w, b, expected, outType);
        Parity.Close(expected, g.Download(output), 1e-6,
            outType == KernelDType.BF16 ? Bf16Rtol : 1e-6, "surface embed");
    }

    /// <summary>Packed layout of rows [rows, len]: each row keeps its positions up to the last
    /// non-pad id (a padding-only row one with a language position, all without), then its
    /// language position — the backends' rule.</summary>
    private static (int[] Ids, int[] Src, int[] Pos, int[] Starts, int Surface) Pack(int[] ids,
        int rows, int len, bool lang, int pad)
    {
        var tIds = new List<int>();
        var src = new List<int>();
        var pos = new List<int>();
        var starts = new int[rows + 1];
        int surface = 0;
        for (int r = 0; r < rows; r++)
        {
            starts[r] = tIds.Count;
            int last = ids.AsSpan(r * len, len).LastIndexOfAnyExcept(pad);
            int n = last >= 0 ? last + 1 : lang ? 1 : len;
            for (int p = 0; p < n; p++)
            {
                tIds.Add(ids[r * len + p]);
                src.Add(surface++);
                pos.Add(p);
            }
            if (lang)
            {
                tIds.Add(pad);
                src.Add(-1);
                pos.Add(len);
            }
        }
        starts[rows] = tIds.Count;
        return ([.. tIds], [.. src], [.. pos], starts, surface);
    }

    private static int[] RandomRows(int rows, int len, int pad, int seed)
    {
        var rng = new Random(seed);
        int[] ids = new int[rows * len];
        for (int r = 0; r < rows; r++)
        {
            // Row 0 is all padding; the others have 1..len real ids (one padded in the middle
            // when there is room), then padding.
            int real = r == 0 ? 0 : 1 + rng.Next(len);
            for (int p = 0; p < len; p++)
            {
                ids[r * len + p] = p < real && !(p == 1 && real > 2) ? 2 + rng.Next(1000) : pad;
            }
        }
        return ids;
    }

    [Theory]
    [InlineData(1, 1, 7, false)]
    [InlineData(3, 7, 768, true)]
    [InlineData(5, 16, 64, true)]
    [InlineData(2, 7, 2048, false)]
    public void Roberta_embed_layer_norm(int rows, int len, int hidden, bool lang)
    {
        var g = session.Require();
        var (_, src, posIndex, _, surface) = Pack(RandomRows(rows, len, 1, 7), rows, len, lang,
            1);
        int tokens = src.Length;
        float[] x = Parity.Random(1, surface * hidden), pos = Parity.Random(2, 40 * hidden);
        float[] type0 = Parity.Random(3, hidden), langRow = lang ? Parity.Random(4, hidden) : [];
        float[] w = Parity.Random(5, hidden), b = Parity.Random(6, hidden);
        DeviceView output = g.Allocate(tokens * hidden);
        DeviceView gemm = g.Allocate(tokens * hidden, KernelDType.BF16);
        EmbeddingKernels.RobertaEmbedLayerNorm(g.Kernels, g.Stream, g.Upload(x), surface,
            g.Upload(src), g.Upload(posIndex), tokens, hidden, g.Upload(pos), len + 1,
            g.Upload(type0), lang ? g.Upload(langRow) : default, g.Upload(w), g.Upload(b),
            1e-5f, output, gemm);
        var expected = new float[tokens * hidden];
        CpuKernels.RobertaEmbedLayerNorm(x, src, posIndex, hidden, pos, type0, langRow, w, b,
            1e-5f, expected);
        Parity.Close(expected, g.Download(output), 2e-5, 2e-5, "roberta embed");
        Parity.Close(Parity.Bf16(expected), g.Download(gemm), 2e-5, Bf16Rtol,
            "roberta embed (bf16 copy)");
    }

    [Theory]
    [InlineData(1, 1, Activation.None, KernelDType.F32)]
    [InlineData(7, 33, Activation.GeluTanh, KernelDType.F32)]
    [InlineData(33, 1536, Activation.GeluErf, KernelDType.F32)]
    [InlineData(9, 100, Activation.GeluErf, KernelDType.BF16)]
    public void Bias_activation(int rows, int cols, Activation act, KernelDType outType)
    {
        var g = session.Require();
        float[] x = Parity.Random(1, rows * cols, 4f), bias = Parity.Random(2, cols);
        DeviceView output = g.Allocate(rows * cols, outType);
        EpilogueKernels.BiasActivation(g.Kernels, g.Stream, g.Upload(x), g.Upload(bias), rows,
            cols, act, output);
        var expected = new float[rows * cols];
        CpuKernels.BiasActivation(x, bias, rows, cols, act, expected, outType);
        Parity.Close(expected, g.Download(output), 1e-5,
            outType == KernelDType.BF16 ? Bf16Rtol : 1e-5, $"bias {act}");
    }

    [Theory]
    [InlineData(1, 7, Activation.None, false)]
    [InlineData(33, 768, Activation.None, true)]
    [InlineData(5, 2048, Activation.GeluTanh, false)]
    [InlineData(3, 4096, Activation.GeluTanh, true)]
    public void Residual_layer_norm(int rows, int cols, Activation act, bool inPlace)
    {
        var g = session.Require();
        float[] x = Parity.Random(1, rows * cols, 3f), bias = Parity.Random(2, cols);
        float[] res = Parity.Random(3, rows * cols), w = Parity.Random(4, cols);
        float[] b = Parity.Random(5, cols);
        float eps = act == Activation.None ? 1e-5f : 1e-6f;
        DeviceView dRes = g.Upload(res);
        DeviceView output = inPlace ? dRes : g.Allocate(rows * cols);
        DeviceView gemm = g.Allocate(rows * cols, KernelDType.BF16);
        EpilogueKernels.BiasActivationResidualLayerNorm(g.Kernels, g.Stream, g.Upload(x),
            g.Upload(bias), dRes, g.Upload(w), g.Upload(b), eps, act, rows, cols, output, gemm);
        var expected = new float[rows * cols];
        CpuKernels.BiasActivationResidualLayerNorm(x, bias, res, w, b, eps, act, rows, cols,
            expected);
        Parity.Close(expected, g.Download(output), 2e-5, 2e-5, $"residual LN {act}");
        Parity.Close(Parity.Bf16(expected), g.Download(gemm), 2e-5, Bf16Rtol,
            "residual LN (bf16 copy)");
    }

    [Theory]
    [InlineData(1, 1, false, 1, 7)]
    [InlineData(3, 7, true, 12, 64)]
    [InlineData(4, 16, false, 2, 128)]
    [InlineData(2, 31, true, 1, 128)]
    [InlineData(65, 7, false, 32, 64)]
    public void Attention(int rows, int len, bool lang, int heads, int headDim)
    {
        var g = session.Require();
        int seq = len + (lang ? 1 : 0), hidden = heads * headDim, pad = 1;
        int[] rowIds = RandomRows(rows, len, pad, 3);
        // Packed (padding skipped) and unpacked layouts of the same rows.
        var (pIds, pSrc, _, pStarts, _) = Pack(rowIds, rows, len, lang, pad);
        var (fIds, fSrc, _, fStarts) = CpuKernels.FullLayout(rowIds, rows, seq, len, pad);
        foreach (var (ids, src, starts) in new[] { (pIds, pSrc, pStarts), (fIds, fSrc, fStarts) })
        {
            int tokens = ids.Length;
            float[] qkv = Parity.Random(1, tokens * 3 * hidden, 2f);
            float[] bias = Parity.Random(2, 3 * hidden);
            foreach (KernelDType outType in new[] { KernelDType.F32, KernelDType.BF16 })
            {
                DeviceView output = g.Allocate(tokens * hidden, outType);
                AttentionKernel.Run(g.Kernels, g.Stream, g.Upload(qkv), g.Upload(bias),
                    g.Upload(ids), g.Upload(src), g.Upload(starts), rows, tokens, seq, heads,
                    headDim, pad, output);
                var expected = new float[tokens * hidden];
                CpuKernels.Attention(qkv, bias, ids, src, starts, heads, headDim, pad, expected,
                    outType);
                Parity.Close(expected, g.Download(output), 2e-5,
                    outType == KernelDType.BF16 ? Bf16Rtol : 2e-5,
                    $"attention {outType}, {tokens} tokens");
            }
        }
    }

    [Fact]
    public void Pool_first_and_bias_rescale()
    {
        var g = session.Require();
        int rows = 5, hidden = 33, xCols = 17, offset = 9, cols = 8;
        int[] starts = [0, 8, 9, 15, 16, 23];
        float[] h = Parity.Random(1, 23 * hidden);
        DeviceView pooled = g.Allocate(rows * hidden), pooledGemm = g.Allocate(rows * hidden,
            KernelDType.BF16);
        HeadKernels.PoolFirst(g.Kernels, g.Stream, g.Upload(h), g.Upload(starts), rows, 23,
            hidden, pooled, pooledGemm);
        var expected = new float[rows * hidden];
        CpuKernels.PoolFirst(h, starts, hidden, expected);
        Parity.Close(expected, g.Download(pooled), 0, 0, "pool");
        Parity.Close(Parity.Bf16(expected), g.Download(pooledGemm), 0, 0, "pool (bf16)");

        float[] x = Parity.Random(2, rows * xCols), bias = Parity.Random(3, xCols);
        float[] w = Parity.Random(4, cols), b = Parity.Random(5, cols);
        DeviceView output = g.Allocate(rows * cols);
        HeadKernels.BiasRescale(g.Kernels, g.Stream, g.Upload(x), xCols, offset, g.Upload(bias),
            g.Upload(w), g.Upload(b), rows, cols, output);
        var rescaled = new float[rows * cols];
        CpuKernels.BiasRescale(x, xCols, offset, bias, w, b, rows, cols, rescaled);
        Parity.Close(rescaled, g.Download(output), 1e-6, 1e-6, "bias rescale");
    }
}
