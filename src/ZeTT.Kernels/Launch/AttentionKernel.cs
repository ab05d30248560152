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
    public ulong Out;
    public int Rows;
    public int Seq;
    public int Len;
    public int Heads;
    public int HeadDim;
    public int PadId;
    public float Scale;
    public int OutDtype;
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
    /// <paramref name="qkv"/> [rows·seq, 3H] (bias added here), scale 1/√headDim. Key p &lt;
    /// <paramref name="len"/> is attended iff <c>ids[r, p] != padId</c>; positions ≥ len (the
    /// language position) always are. Masked keys get -FLT_MAX added, so an all-padding row
    /// attends uniformly.
    /// </summary>
    /// <param name="kernels">Loaded kernels.</param>
    /// <param name="stream">Stream to queue on.</param>
    /// <param name="qkv">[rows·seq, 3·heads·headDim] F32.</param>
    /// <param name="qkvBias">[3·heads·headDim] F32, or none.</param>
    /// <param name="ids">[rows, len] I32 surface forms (for the mask).</param>
    /// <param name="rows">Sequences.</param>
    /// <param name="seq">Sequence length (len or len + 1).</param>
    /// <param name="len">Surface-form length L.</param>
    /// <param name="heads">Attention heads.</param>
    /// <param name="headDim">Head dimension.</param>
    /// <param name="padId">Pad id (masked).</param>
    /// <param name="output">[rows·seq, heads·headDim] F32 or BF16.</param>
    public static void Run(KernelSet kernels, CudaStream stream, DeviceView qkv,
        DeviceView qkvBias, DeviceView ids, int rows, int seq, int len, int heads, int headDim,
        int padId, DeviceView output)
    {
        ArgumentNullException.ThrowIfNull(kernels);
        var (config, args) = Plan(qkv, qkvBias, ids, rows, seq, len, heads, headDim, padId,
            output);
        kernels.Attention.Launch(config, stream, args);
    }

    /// <summary>Dynamic shared memory of one block: Q, K, V (rows padded by one float), the
    /// scores and the mask.</summary>
    public static uint SharedBytes(int seq, int headDim) =>
        (uint)((3 * seq * (headDim + 1) + seq * seq + seq) * sizeof(float));

    internal static (LaunchConfig, AttentionArgs) Plan(DeviceView qkv, DeviceView qkvBias,
        DeviceView ids, int rows, int seq, int len, int heads, int headDim, int padId,
        DeviceView output)
    {
        const string k = "zett_attention";
        Positive(k, rows, nameof(rows));
        Positive(k, seq, nameof(seq));
        Positive(k, len, nameof(len));
        Positive(k, heads, nameof(heads));
        Positive(k, headDim, nameof(headDim));
        if (seq > MaxSequence)
        {
            throw new ArgumentException($"{k}: sequence length {seq} exceeds {MaxSequence}, "
                + "the most the fused short-sequence kernel holds", nameof(seq));
        }
        if (headDim > MaxHeadDim)
        {
            throw new ArgumentException($"{k}: head dimension {headDim} exceeds {MaxHeadDim}",
                nameof(headDim));
        }
        if (len > seq || seq > len + 1)
        {
            throw new ArgumentException($"{k}: seq must be len or len + 1 (the language "
                + $"position), got seq {seq}, len {len}", nameof(seq));
        }
        int hidden = heads * headDim;
        View(k, qkv, nameof(qkv), (long)rows * seq * 3 * hidden, KernelDType.F32);
        ulong bias = Optional(k, qkvBias, nameof(qkvBias), 3L * hidden, KernelDType.F32);
        View(k, ids, nameof(ids), (long)rows * len, KernelDType.I32);
        View(k, output, nameof(output), (long)rows * seq * hidden, KernelDType.F32,
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
            Out = output.Address,
            Rows = rows,
            Seq = seq,
            Len = len,
            Heads = heads,
            HeadDim = headDim,
            PadId = padId,
            Scale = 1f / MathF.Sqrt(headDim),
            OutDtype = (int)output.DType,
        };
        return (new LaunchConfig((uint)heads, (uint)rows, Threads, SharedBytes(seq, headDim)),
            args);
    }
}
