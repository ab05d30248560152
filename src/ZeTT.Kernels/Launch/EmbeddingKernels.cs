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
    public int Rows;
    public int Len;
    public int Seq;
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
    /// Queues RoBERTa embeddings + LayerNorm: for each row and position p &lt; len,
    /// LN((x + type0) + pos[p]); when <paramref name="lang"/> is given, position len is
    /// LN(lang). Writes fp32 <paramref name="output"/> [rows·seq, hidden] (seq = len, or len+1
    /// with a language position) and, when given, the same in <paramref name="outputGemm"/>'s
    /// dtype.
    /// </summary>
    /// <param name="kernels">Loaded kernels.</param>
    /// <param name="stream">Stream to queue on.</param>
    /// <param name="x">[rows·len, hidden] F32 input projector output.</param>
    /// <param name="rows">Surface forms.</param>
    /// <param name="len">L.</param>
    /// <param name="hidden">H.</param>
    /// <param name="positions">[≥ len, hidden] F32 position embeddings.</param>
    /// <param name="type0">[hidden] F32 token-type embedding 0.</param>
    /// <param name="lang">[hidden] F32 language embedding row, or none.</param>
    /// <param name="lnW">[hidden] LayerNorm weight.</param>
    /// <param name="lnB">[hidden] LayerNorm bias.</param>
    /// <param name="eps">LayerNorm eps.</param>
    /// <param name="output">[rows·seq, hidden] F32.</param>
    /// <param name="outputGemm">[rows·seq, hidden] F32/BF16 copy, or none.</param>
    public static void RobertaEmbedLayerNorm(KernelSet kernels, CudaStream stream, DeviceView x,
        int rows, int len, int hidden, DeviceView positions, DeviceView type0, DeviceView lang,
        DeviceView lnW, DeviceView lnB, float eps, DeviceView output, DeviceView outputGemm)
    {
        ArgumentNullException.ThrowIfNull(kernels);
        var (config, args) = PlanRobertaEmbedLayerNorm(x, rows, len, hidden, positions, type0,
            lang, lnW, lnB, eps, output, outputGemm);
        kernels.RobertaEmbedLn.Launch(config, stream, args);
    }

    internal static (LaunchConfig, RobertaEmbedArgs) PlanRobertaEmbedLayerNorm(DeviceView x,
        int rows, int len, int hidden, DeviceView positions, DeviceView type0, DeviceView lang,
        DeviceView lnW, DeviceView lnB, float eps, DeviceView output, DeviceView outputGemm)
    {
        const string k = "zett_roberta_embed_ln";
        Positive(k, rows, nameof(rows));
        Positive(k, len, nameof(len));
        Positive(k, hidden, nameof(hidden));
        if (!(eps > 0))
        {
            throw new ArgumentException($"{k}: eps must be positive, got {eps}", nameof(eps));
        }
        int seq = len + (lang.IsPresent ? 1 : 0);
        View(k, x, nameof(x), (long)rows * len * hidden, KernelDType.F32);
        View(k, positions, nameof(positions), (long)len * hidden, KernelDType.F32);
        View(k, type0, nameof(type0), hidden, KernelDType.F32);
        ulong l = Optional(k, lang, nameof(lang), hidden, KernelDType.F32);
        View(k, lnW, nameof(lnW), hidden, KernelDType.F32);
        View(k, lnB, nameof(lnB), hidden, KernelDType.F32);
        View(k, output, nameof(output), (long)rows * seq * hidden, KernelDType.F32);
        ulong g = Optional(k, outputGemm, nameof(outputGemm), (long)rows * seq * hidden,
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
            Rows = rows,
            Len = len,
            Seq = seq,
            Hidden = hidden,
            Eps = eps,
            GemmDtype = (int)outputGemm.DType,
        };
        return (new LaunchConfig((uint)(rows * seq), 1, RowBlock(hidden), (uint)hidden * 4), args);
    }
}
