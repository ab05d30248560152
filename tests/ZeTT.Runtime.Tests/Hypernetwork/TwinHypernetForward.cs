using ZeTT.Kernels.Reference;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.Tensors;
using Activation = ZeTT.Kernels.Launch.Activation;

namespace ZeTT.Runtime.Tests.Hypernetwork;

/// <summary>
/// A plain fp32 forward pass of ZETT.md §3 composed from the kernels' CPU twins
/// (<see cref="CpuKernels"/>), the oracle for the CUDA backend's whole-model parity test. It
/// follows the backend's packed computation: the batch is packed with
/// <see cref="HypernetPacking.Pack"/> (padding skipped unless <c>skipPadding</c> is false) and
/// every stage runs on the packed tokens.
/// </summary>
internal static class TwinHypernetForward
{
    public static HypernetOutput Run(HypernetWeights w, HostTensor source, int[] ids, int rows,
        int langIndex, bool skipPadding = true)
    {
        HypernetConfig c = w.Config;
        int h = c.HiddenSize, d = c.SourceWidth;
        var layout = new int[HypernetPacking.Capacity(c, rows)];
        PackedSizes packed = HypernetPacking.Pack(ids, rows, c, skipPadding, layout);
        int tokens = packed.SurfaceTokens, n = packed.Tokens;
        int[] surfaceIds = layout[..tokens];
        int[] src = layout.AsSpan(packed.SourceOffset, n).ToArray();
        int[] pos = layout.AsSpan(packed.PositionOffset, n).ToArray();
        int[] seqIds = layout.AsSpan(packed.IdsOffset, n).ToArray();
        int[] rowStart = layout.AsSpan(packed.RowStartOffset, rows + 1).ToArray();
        var x0 = new float[tokens * d];
        CpuKernels.SurfaceEmbed(surfaceIds, source.Data, d, c.OriginalVocabSize,
            w.FallbackEmbeddings.Data, w.InScaler?.W.Data ?? [], w.InScaler?.B.Data ?? [], x0);
        float[] u = Linear(x0, tokens, w.InputProjection);
        float[] projected = Projector(u, tokens, w.InputBlock, c.ProjectorLayerNormEps);
        var hs = new float[n * h];
        float[] lang = c.EmbedLangId
            ? w.LangEmbeddings!.Data.AsSpan(langIndex * h, h).ToArray()
            : [];
        CpuKernels.RobertaEmbedLayerNorm(projected, src, pos, h, w.PositionEmbeddings.Data,
            w.TokenTypeEmbeddings.Data.AsSpan(0, h), lang, w.EmbeddingsLn.Weight.Data,
            w.EmbeddingsLn.Bias.Data, c.EncoderLayerNormEps, hs);
        foreach (EncoderLayerParams layer in w.Layers)
        {
            var qkv = new float[n * 3 * h];
            float[] q = Linear(hs, n, layer.Query, withBias: false);
            float[] k = Linear(hs, n, layer.Key, withBias: false);
            float[] v = Linear(hs, n, layer.Value, withBias: false);
            for (int r = 0; r < n; r++)
            {
                q.AsSpan(r * h, h).CopyTo(qkv.AsSpan(r * 3 * h));
                k.AsSpan(r * h, h).CopyTo(qkv.AsSpan(r * 3 * h + h));
                v.AsSpan(r * h, h).CopyTo(qkv.AsSpan(r * 3 * h + 2 * h));
            }
            float[] bias = [.. layer.Query.Bias.Data, .. layer.Key.Bias.Data,
                .. layer.Value.Bias.Data];
            var ctx = new float[n * h];
            CpuKernels.Attention(qkv, bias, seqIds, src, rowStart, c.NumAttentionHeads, c.HeadDim,
                c.PadTokenId, ctx);
            float[] t = Linear(ctx, n, layer.AttentionOutput, withBias: false);
            var a = new float[n * h];
            CpuKernels.BiasActivationResidualLayerNorm(t, layer.AttentionOutput.Bias.Data, hs,
                layer.AttentionLn.Weight.Data, layer.AttentionLn.Bias.Data,
                c.EncoderLayerNormEps, Activation.None, n, h, a);
            float[] f = Linear(a, n, layer.Intermediate, withBias: false);
            CpuKernels.BiasActivation(f, layer.Intermediate.Bias.Data, n, layer.Intermediate.Out,
                Activation.GeluErf, f);
            float[] t2 = Linear(f, n, layer.Output, withBias: false);
            CpuKernels.BiasActivationResidualLayerNorm(t2, layer.Output.Bias.Data, a,
                layer.OutputLn.Weight.Data, layer.OutputLn.Bias.Data, c.EncoderLayerNormEps,
                Activation.None, n, h, hs);
        }
        var z = new float[rows * h];
        CpuKernels.PoolFirst(hs, rowStart, h, z);
        float[] o = Linear(Projector(z, rows, w.OutputBlock, c.ProjectorLayerNormEps), rows,
            w.OutputLinear, withBias: false);
        int nOut = w.OutputLinear.Out, e = c.NEmbd;
        var eIn = new float[rows * e];
        CpuKernels.BiasRescale(o, nOut, 0, w.OutputLinear.Bias.Data, w.Scaler?.W.Data ?? [],
            w.Scaler?.B.Data ?? [], rows, e, eIn);
        float[]? eOut = null;
        if (c.SeparateOutEmbeddings)
        {
            eOut = new float[rows * e];
            if (c.SingleHead)
            {
                CpuKernels.BiasRescale(o, nOut, e, w.OutputLinear.Bias.Data,
                    w.OutScaler?.W.Data ?? [], w.OutScaler?.B.Data ?? [], rows, e, eOut);
            }
            else
            {
                float[] o2 = Linear(Projector(z, rows, w.OutputOutBlock!,
                    c.ProjectorLayerNormEps), rows, w.OutputOutLinear!, withBias: false);
                CpuKernels.BiasRescale(o2, e, 0, w.OutputOutLinear!.Bias.Data,
                    w.OutScaler?.W.Data ?? [], w.OutScaler?.B.Data ?? [], rows, e, eOut);
            }
        }
        float[]? bias2 = c.PredictBias ? Linear(z, rows, w.BiasProjection!) : null;
        return new HypernetOutput(eIn, eOut, bias2);
    }

    private static float[] Linear(float[] x, int rows, LinearParams p, bool withBias = true)
    {
        var y = new float[rows * p.Out];
        CpuKernels.Gemm(rows, p.Out, p.In, x, p.In, p.Weight.Data, p.In, true, y, p.Out);
        if (withBias)
        {
            CpuKernels.BiasActivation(y, p.Bias.Data, rows, p.Out, Activation.None, y);
        }
        return y;
    }

    private static float[] Projector(float[] u, int rows, ProjectorBlockParams p, float eps)
    {
        float[] g = Linear(u, rows, p.Dense1, withBias: false);
        CpuKernels.BiasActivation(g, p.Dense1.Bias.Data, rows, p.Dense1.Out, Activation.GeluTanh,
            g);
        float[] t = Linear(g, rows, p.Dense2, withBias: false);
        var y = new float[rows * p.Dense2.Out];
        CpuKernels.BiasActivationResidualLayerNorm(t, p.Dense2.Bias.Data, u, p.Ln.Weight.Data,
            p.Ln.Bias.Data, eps, Activation.GeluTanh, rows, p.Dense2.Out, y);
        return y;
    }
}
