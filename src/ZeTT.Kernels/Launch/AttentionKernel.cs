using System.Runtime.InteropServices;
using static ZeTT.Kernels.Launch.LaunchChecks;

namespace ZeTT.Kernels.Launch;

/// <summary>Args of <c>zett_attention</c> (kernels/attention.cu, same layout).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct AttentionArgs
{
    public ulong Qkv;
    public ulong QkvBias;
    public ulong Ids;
    public ulong Src;
    public ulong RowStart;
    public ulong Out;
    public int Rows;
    public int MaxSeq;
    public int Heads;
    public int HeadDim;
    public int PadId;
    public float Scale;
    public int OutDtype;
    public int Pad0;
}

/// <summary>Launcher of kernels/attention.cu. CPU twin: <see cref="Reference.CpuKernels"/>.
/// </summary>
public static class AttentionKernel
{
    /// <summary>Longest sequence (incl. the language position) the fused kernel takes.</summary>
    public const int MaxSequence = 32;

    /// <summary>Largest head dimension the fused kernel takes.</summary>
    public const int MaxHeadDim = 128;

    private const uint Threads = 128;

    /// <summary>
    /// Queues masked multi-head self-attention over the fused QKV projection
    /// <paramref name="qkv"/> [tokens, 3H] (bias added here), scale 1/√headDim, of packed rows:
    /// row r is tokens <c>rowStart[r] .. rowStart[r+1]</c> (at most <paramref name="maxSeq"/>)
    /// and attends over its own tokens only. Key t is attended iff <c>src[t] &lt; 0</c> (the
    /// language position) or <c>ids[t] != padId</c>. Masked keys get -FLT_MAX added, so an
    /// all-padding row attends uniformly over its tokens. The kernel trusts
    /// <paramref name="rowStart"/> (device data): it must be non-decreasing from 0 to at most
    /// <paramref name="tokens"/> with no row longer than maxSeq.
    /// </summary>
    /// <param name="kernels">Loaded kernels.</param>
    /// <param name="stream">Stream to queue on.</param>
    /// <param name="qkv">[tokens, 3·heads·headDim] F32.</param>
    /// <param name="qkvBias">[3·heads·headDim] F32, or none.</param>
    /// <param name="ids">[tokens] I32 token ids (for the mask).</param>
    /// <param name="src">[tokens] I32: negative for a language position (always attended).
    /// </param>
    /// <param name="rowStart">[rows + 1] I32 row offsets into the tokens.</param>
    /// <param name="rows">Sequences.</param>
    /// <param name="tokens">Packed tokens of all rows.</param>
    /// <param name="maxSeq">Longest row (sizes shared memory).</param>
    /// <param name="heads">Attention heads.</param>
    /// <param name="headDim">Head dimension.</param>
    /// <param name="padId">Pad id (masked).</param>
    /// <param name="output">[tokens, heads·headDim] F32 or BF16.</param>
    public static void Run(KernelSet kernels, CudaStream stream, DeviceView qkv,
        DeviceView qkvBias, DeviceView ids, DeviceView src, DeviceView rowStart, int rows,
        int tokens, int maxSeq, int heads, int headDim, int padId, DeviceView output)
    {
        ArgumentNullException.ThrowIfNull(kernels);
        var (config, args) = Plan(qkv, qkvBias, ids, src, rowStart, rows, tokens, maxSeq, heads,
            headDim, padId, output);
        kernels.Attention.Launch(config, stream, args);
    }

    /// <summary>Dynamic shared memory of one block: Q, K, V (rows padded by one float), the
    /// scores and the mask.</summary>
    public static uint SharedBytes(int seq, int headDim) =>
        (uint)((3 * seq * (headDim + 1) + seq * seq + seq) * sizeof(float));

    internal static (LaunchConfig, AttentionArgs) Plan(DeviceView qkv, DeviceView qkvBias,
        DeviceView ids, DeviceView src, DeviceView rowStart, int rows, int tokens, int maxSeq,
        int heads, int headDim, int padId, DeviceView output)
    {
        const string k = "zett_attention";
        Positive(k, rows, nameof(rows));
        Positive(k, tokens, nameof(tokens));
        Positive(k, maxSeq, nameof(maxSeq));
        Positive(k, heads, nameof(heads));
        Positive(k, headDim, nameof(headDim));
        if (maxSeq > MaxSequence)
        {
            throw new ArgumentException($"{k}: sequence length {maxSeq} exceeds {MaxSequence}, "
                + "the most the fused short-sequence kernel holds", nameof(maxSeq));
        }
        if (headDim > MaxHeadDim)
        {
            throw new ArgumentException($"{k}: head dimension {headDim} exceeds {MaxHeadDim}",
                nameof(headDim));
        }
        if (tokens < rows || tokens > (long)rows * maxSeq)
        {
            throw new ArgumentException($"{k}: {tokens} tokens cannot be {rows} rows of 1 to "
                + $"{maxSeq} tokens each", nameof(tokens));
        }
        int hidden = heads * headDim;
        View(k, qkv, nameof(qkv), (long)tokens * 3 * hidden, KernelDType.F32);
        ulong bias = Optional(k, qkvBias, nameof(qkvBias), 3L * hidden, KernelDType.F32);
        View(k, ids, nameof(ids), tokens, KernelDType.I32);
        View(k, src, nameof(src), tokens, KernelDType.I32);
        View(k, rowStart, nameof(rowStart), rows + 1L, KernelDType.I32);
        View(k, output, nameof(output), (long)tokens * hidden, KernelDType.F32,
            KernelDType.BF16);
        if (rows > 65535)
        {
            throw new ArgumentException($"{k}: {rows} rows exceed the grid's y limit 65535; "
                + "split the batch", nameof(rows));
        }
        var args = new AttentionArgs
        {
            Qkv = qkv.Address,
            QkvBias = bias,
            Ids = ids.Address,
            Src = src.Address,
            RowStart = rowStart.Address,
            Out = output.Address,
            Rows = rows,
            MaxSeq = maxSeq,
            Heads = heads,
            HeadDim = headDim,
            PadId = padId,
            Scale = 1f / MathF.Sqrt(headDim),
            OutDtype = (int)output.DType,
        };
        return (new LaunchConfig((uint)heads, (uint)rows, Threads, SharedBytes(maxSeq, headDim)),
            args);
    }
}
