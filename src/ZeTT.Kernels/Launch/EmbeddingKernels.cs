using System.Runtime.InteropServices;
using static ZeTT.Kernels.Launch.LaunchChecks;

namespace ZeTT.Kernels.Launch;

/// <summary>Args of <c>zett_surface_embed</c> (kernels/embedding.cu, same layout).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct SurfaceEmbedArgs
{
    public ulong Ids;
    public ulong Source;
    public ulong Fallback;
    public ulong InW;
    public ulong InB;
    public ulong Out;
    public int Tokens;
    public int Width;
    public int OriginalVocab;
    public int SourceDtype;
    public int OutDtype;
    public int Pad0;
}

/// <summary>Args of <c>zett_roberta_embed_ln</c> (kernels/embedding.cu, same layout).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct RobertaEmbedArgs
{
    public ulong X;
    public ulong Pos;
    public ulong Type0;
    public ulong Lang;
    public ulong LnW;
    public ulong LnB;
    public ulong Out;
    public ulong OutGemm;
    public ulong Src;
    public ulong PosIndex;
    public int Tokens;
    public int Hidden;
    public float Eps;
    public int GemmDtype;
}

/// <summary>Launchers of kernels/embedding.cu. CPU twins: <see cref="Reference.CpuKernels"/>.
/// </summary>
public static class EmbeddingKernels
{
    /// <summary>
    /// Queues the surface-form gather: for each of <paramref name="tokens"/> ids, the source
    /// embedding row (rescaled by <paramref name="inW"/>·x + <paramref name="inB"/> when given)
    /// or, for ids ≥ <paramref name="originalVocab"/>, the fallback row. Ids must already be in
    /// [0, originalVocab + fallback rows) — the kernel does not check them.
    /// </summary>
    /// <param name="kernels">Loaded kernels.</param>
    /// <param name="stream">Stream to queue on.</param>
    /// <param name="ids">[tokens] I32.</param>
    /// <param name="tokens">Number of ids.</param>
    /// <param name="source">[V, width] F32 or BF16 source embeddings, V ≥ originalVocab.</param>
    /// <param name="width">D_in.</param>
    /// <param name="originalVocab">V0 (original_vocab_size).</param>
    /// <param name="fallback">[F, width] F32 fallback embeddings.</param>
    /// <param name="inW">[width] F32 in-scaler weight, or none.</param>
    /// <param name="inB">[width] F32 in-scaler bias (with inW).</param>
    /// <param name="output">[tokens, width] F32 or BF16.</param>
    public static void SurfaceEmbed(KernelSet kernels, CudaStream stream, DeviceView ids,
        int tokens, DeviceView source, int width, int originalVocab, DeviceView fallback,
        DeviceView inW, DeviceView inB, DeviceView output)
    {
        ArgumentNullException.ThrowIfNull(kernels);
        var (config, args) = PlanSurfaceEmbed(ids, tokens, source, width, originalVocab, fallback,
            inW, inB, output);
        kernels.SurfaceEmbed.Launch(config, stream, args);
    }

    internal static (LaunchConfig, SurfaceEmbedArgs) PlanSurfaceEmbed(DeviceView ids,
        int tokens, DeviceView source, int width, int originalVocab, DeviceView fallback,
        DeviceView inW, DeviceView inB, DeviceView output)
    {
        const string k = "zett_surface_embed";
        Positive(k, tokens, nameof(tokens));
        Positive(k, width, nameof(width));
        Positive(k, originalVocab, nameof(originalVocab));
        View(k, ids, nameof(ids), tokens, KernelDType.I32);
        View(k, source, nameof(source), (long)originalVocab * width, KernelDType.F32,
            KernelDType.BF16);
        if (source.Length % width != 0)
        {
            throw new ArgumentException($"{k}: source has {source.Length} elements, not a "
                + $"whole number of rows of width {width}", nameof(source));
        }
        View(k, fallback, nameof(fallback), width, KernelDType.F32);
        Both(k, inW, nameof(inW), inB, nameof(inB));
        ulong w = Optional(k, inW, nameof(inW), width, KernelDType.F32);
        ulong b = Optional(k, inB, nameof(inB), width, KernelDType.F32);
        View(k, output, nameof(output), (long)tokens * width, KernelDType.F32, KernelDType.BF16);
        var args = new SurfaceEmbedArgs
        {
            Ids = ids.Address,
            Source = source.Address,
            Fallback = fallback.Address,
            InW = w,
            InB = b,
            Out = output.Address,
            Tokens = tokens,
            Width = width,
            OriginalVocab = originalVocab,
            SourceDtype = (int)source.DType,
            OutDtype = (int)output.DType,
        };
        return (new LaunchConfig((uint)tokens, 1, RowBlock(width), 0), args);
    }

    /// <summary>
    /// Queues RoBERTa embeddings + LayerNorm over <paramref name="tokens"/> packed sequence
    /// tokens: token t with <c>src[t] ≥ 0</c> gets LN((x[src[t]] + type0) + pos[posIndex[t]]),
    /// a token with <c>src[t] &lt; 0</c> (the language position) LN(lang). Writes fp32
    /// <paramref name="output"/> [tokens, hidden] and, when given, the same in
    /// <paramref name="outputGemm"/>'s dtype. The kernel trusts src (below the surface tokens)
    /// and posIndex (below maxPositions), which are device data.
    /// </summary>
    /// <param name="kernels">Loaded kernels.</param>
    /// <param name="stream">Stream to queue on.</param>
    /// <param name="x">[surfaceTokens, hidden] F32 input projector output.</param>
    /// <param name="surfaceTokens">Rows of x.</param>
    /// <param name="src">[tokens] I32: row of x, or negative for the language position.</param>
    /// <param name="posIndex">[tokens] I32 position of each token in its row.</param>
    /// <param name="tokens">Sequence tokens.</param>
    /// <param name="hidden">H.</param>
    /// <param name="positions">[maxPositions, hidden] F32 position embeddings.</param>
    /// <param name="maxPositions">Rows of positions posIndex may address (L).</param>
    /// <param name="type0">[hidden] F32 token-type embedding 0.</param>
    /// <param name="lang">[hidden] F32 language embedding row, or none (then src must be
    /// non-negative).</param>
    /// <param name="lnW">[hidden] LayerNorm weight.</param>
    /// <param name="lnB">[hidden] LayerNorm bias.</param>
    /// <param name="eps">LayerNorm eps.</param>
    /// <param name="output">[tokens, hidden] F32.</param>
    /// <param name="outputGemm">[tokens, hidden] F32/BF16 copy, or none.</param>
    public static void RobertaEmbedLayerNorm(KernelSet kernels, CudaStream stream, DeviceView x,
        int surfaceTokens, DeviceView src, DeviceView posIndex, int tokens, int hidden,
        DeviceView positions, int maxPositions, DeviceView type0, DeviceView lang,
        DeviceView lnW, DeviceView lnB, float eps, DeviceView output, DeviceView outputGemm)
    {
        ArgumentNullException.ThrowIfNull(kernels);
        var (config, args) = PlanRobertaEmbedLayerNorm(x, surfaceTokens, src, posIndex, tokens,
            hidden, positions, maxPositions, type0, lang, lnW, lnB, eps, output, outputGemm);
        kernels.RobertaEmbedLn.Launch(config, stream, args);
    }

    internal static (LaunchConfig, RobertaEmbedArgs) PlanRobertaEmbedLayerNorm(DeviceView x,
        int surfaceTokens, DeviceView src, DeviceView posIndex, int tokens, int hidden,
        DeviceView positions, int maxPositions, DeviceView type0, DeviceView lang,
        DeviceView lnW, DeviceView lnB, float eps, DeviceView output, DeviceView outputGemm)
    {
        const string k = "zett_roberta_embed_ln";
        Positive(k, surfaceTokens, nameof(surfaceTokens));
        Positive(k, tokens, nameof(tokens));
        Positive(k, hidden, nameof(hidden));
        Positive(k, maxPositions, nameof(maxPositions));
        if (!(eps > 0))
        {
            throw new ArgumentException($"{k}: eps must be positive, got {eps}", nameof(eps));
        }
        if (tokens > 2L * surfaceTokens || (!lang.IsPresent && tokens > surfaceTokens))
        {
            throw new ArgumentException($"{k}: {tokens} tokens cannot come from "
                + $"{surfaceTokens} surface tokens"
                + (lang.IsPresent ? " and one language position per row" : ""), nameof(tokens));
        }
        View(k, x, nameof(x), (long)surfaceTokens * hidden, KernelDType.F32);
        View(k, src, nameof(src), tokens, KernelDType.I32);
        View(k, posIndex, nameof(posIndex), tokens, KernelDType.I32);
        View(k, positions, nameof(positions), (long)maxPositions * hidden, KernelDType.F32);
        View(k, type0, nameof(type0), hidden, KernelDType.F32);
        ulong l = Optional(k, lang, nameof(lang), hidden, KernelDType.F32);
        View(k, lnW, nameof(lnW), hidden, KernelDType.F32);
        View(k, lnB, nameof(lnB), hidden, KernelDType.F32);
        View(k, output, nameof(output), (long)tokens * hidden, KernelDType.F32);
        ulong g = Optional(k, outputGemm, nameof(outputGemm), (long)tokens * hidden,
            KernelDType.F32, KernelDType.BF16);
        var args = new RobertaEmbedArgs
        {
            X = x.Address,
            Pos = positions.Address,
            Type0 = type0.Address,
            Lang = l,
            LnW = lnW.Address,
            LnB = lnB.Address,
            Out = output.Address,
            OutGemm = g,
            Src = src.Address,
            PosIndex = posIndex.Address,
            Tokens = tokens,
            Hidden = hidden,
            Eps = eps,
            GemmDtype = (int)outputGemm.DType,
        };
        return (new LaunchConfig((uint)tokens, 1, RowBlock(hidden), (uint)hidden * 4), args);
    }
}
