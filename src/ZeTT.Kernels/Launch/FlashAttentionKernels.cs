using System.Runtime.InteropServices;
using static ZeTT.Kernels.Launch.LaunchChecks;

namespace ZeTT.Kernels.Launch;

/// <summary>Args of the forward in kernels/flash_attention.cu (same layout).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct FlashFwdArgs
{
    public ulong Q;
    public ulong K;
    public ulong V;
    public ulong Out;
    public ulong Lse;
    public ulong KvLens;
    public long QBatchStride;
    public long KBatchStride;
    public long VBatchStride;
    public long OBatchStride;
    public int QRowStride;
    public int KRowStride;
    public int VRowStride;
    public int ORowStride;
    public int Batch;
    public int QLen;
    public int KvLen;
    public int QOffset;
    public int Heads;
    public int KvHeads;
    public int HeadDim;
    public int Window;
    public float Scale;
    public int InDtype;
    public int OutDtype;
    public int Causal;
}

/// <summary>Args of the three backward kernels in kernels/flash_attention.cu (same layout).
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct FlashBwdArgs
{
    public ulong Q;
    public ulong K;
    public ulong V;
    public ulong Out;
    public ulong Dout;
    public ulong Lse;
    public ulong Delta;
    public ulong Dq;
    public ulong Dk;
    public ulong Dv;
    public ulong KvLens;
    public long QBatchStride;
    public long KBatchStride;
    public long VBatchStride;
    public long OBatchStride;
    public int QRowStride;
    public int KRowStride;
    public int VRowStride;
    public int ORowStride;
    public int Batch;
    public int QLen;
    public int KvLen;
    public int QOffset;
    public int Heads;
    public int KvHeads;
    public int HeadDim;
    public int Window;
    public float Scale;
    public int InDtype;
    public int GradDtype;
    public int Causal;
    public long DoBatchStride;
    public long DqBatchStride;
    public long DkBatchStride;
    public long DvBatchStride;
    public int DoRowStride;
    public int DqRowStride;
    public int DkRowStride;
    public int DvRowStride;
}

/// <summary>
/// The shape of one attention call: <see cref="Batch"/> sequences of <see cref="QLen"/>
/// queries over <see cref="KvLen"/> keys. With <see cref="Causal"/>, query i is at absolute
/// position i + <see cref="QOffset"/> and sees keys j ≤ that position (and, with
/// <see cref="Window"/> &gt; 0, position − j &lt; window); without, every key. Key lengths
/// (a separate device array) may cut each sequence's keys shorter. <see cref="Heads"/> query
/// heads share <see cref="KvHeads"/> key/value heads (GQA; heads a multiple of kvHeads).
/// </summary>
/// <param name="Batch">Sequences.</param>
/// <param name="QLen">Queries per sequence.</param>
/// <param name="KvLen">Keys per sequence (≥ QLen + QOffset is not required; keys past the
/// last query's position are simply never seen).</param>
/// <param name="QOffset">Position of query 0 (KV cache length before this call; 0 for a
/// whole sequence).</param>
/// <param name="Heads">Query heads.</param>
/// <param name="KvHeads">Key/value heads.</param>
/// <param name="HeadDim">Head dimension, at most <see cref="FlashAttentionKernels.MaxHeadDim"/>.
/// </param>
/// <param name="Window">Sliding window (Mistral), 0 for none.</param>
/// <param name="Scale">Score scale (1/√headDim unless the model says otherwise).</param>
/// <param name="Causal">Apply the causal mask (and the window).</param>
public readonly record struct AttentionShape(int Batch, int QLen, int KvLen, int QOffset,
    int Heads, int KvHeads, int HeadDim, int Window, float Scale, bool Causal = true);

/// <summary>A [batch, len, heads, headDim] operand: its memory, the elements between two
/// sequences and between two tokens (head h starts at column h·headDim of a token row).</summary>
/// <param name="View">Memory (F32 or BF16).</param>
/// <param name="BatchStride">Elements from one sequence to the next.</param>
/// <param name="RowStride">Elements from one token to the next (≥ heads·headDim).</param>
public readonly record struct AttentionOperand(DeviceView View, long BatchStride, int RowStride)
{
    /// <summary>A dense [batch, len, heads, headDim] tensor.</summary>
    public static AttentionOperand Dense(DeviceView view, int len, int heads, int headDim) =>
        new(view, (long)len * heads * headDim, heads * headDim);
}

/// <summary>
/// Launchers of kernels/flash_attention.cu: attention (causal with an optional sliding window,
/// or bidirectional; GQA; per-sequence key lengths)
/// tiled so that no [T, T] matrix exists; the forward saves the log-sum-exp, the backward
/// recomputes the probabilities from it. The oracle is the op layer's CPU attention.
/// </summary>
public static class FlashAttentionKernels
{
    /// <summary>Largest head dimension (a thread keeps a quarter of a row in registers).</summary>
    public const int MaxHeadDim = 128;

    internal const int Br = 64;
    internal const int Bc = 32;
    internal const int Bkv = 64;
    internal const int Bq = 32;
    internal const uint Threads = 256;

    /// <summary>Dynamic shared memory of a forward block: Q tile, K and V tiles (rows padded by
    /// one float), probabilities.</summary>
    public static uint ForwardSharedBytes(int headDim) =>
        (uint)(((Br + 2 * Bc) * (headDim + 1) + Br * (Bc + 1)) * sizeof(float));

    /// <summary>Dynamic shared memory of a dQ block: Q, dO, K, V tiles and dS.</summary>
    public static uint DqSharedBytes(int headDim) =>
        (uint)(((2 * Br + 2 * Bc) * (headDim + 1) + Br * (Bc + 1)) * sizeof(float));

    /// <summary>Dynamic shared memory of a dK/dV block: K, V, Q, dO tiles, Pᵀ, dSᵀ, lse and
    /// delta of a query tile.</summary>
    public static uint DkdvSharedBytes(int headDim) =>
        (uint)(((2 * Bkv + 2 * Bq) * (headDim + 1) + 2 * Bkv * (Bq + 1) + 2 * Bq)
            * sizeof(float));

    /// <summary>
    /// Queues the forward: <paramref name="output"/> = softmax(scale·Q·Kᵀ + causal mask)·V per
    /// head, and <paramref name="lse"/> [batch, heads, qLen] F32 = the log-sum-exp of each
    /// query's scores (−∞ where a query sees nothing).
    /// </summary>
    /// <param name="kernels">Loaded kernels.</param>
    /// <param name="stream">Stream to queue on.</param>
    /// <param name="shape">Shape.</param>
    /// <param name="q">[batch, qLen, heads, headDim].</param>
    /// <param name="k">[batch, kvLen, kvHeads, headDim], q's dtype.</param>
    /// <param name="v">[batch, kvLen, kvHeads, headDim], q's dtype.</param>
    /// <param name="output">[batch, qLen, heads, headDim] F32 or BF16.</param>
    /// <param name="lse">[batch·heads·qLen] F32.</param>
    /// <param name="kvLens">[batch] I32 valid keys per sequence (device data, clamped to
    /// kvLen), or none.</param>
    /// <param name="tensorCores">Take the tensor-core kernel where it applies
    /// (<see cref="TensorCoreHeadDim"/>).</param>
    public static void Forward(KernelSet kernels, CudaStream stream, in AttentionShape shape,
        in AttentionOperand q, in AttentionOperand k, in AttentionOperand v,
        in AttentionOperand output, DeviceView lse, DeviceView kvLens = default,
        bool tensorCores = true)
    {
        ArgumentNullException.ThrowIfNull(kernels);
        var (config, args) = PlanForward(shape, q, k, v, output, lse, kvLens);
        int mma = tensorCores ? TensorCoreHeadDim(shape, q, k, v) : 0;
        if (mma == 0)
        {
            kernels.FlashForward.Launch(config, stream, args);
            return;
        }
        (mma == 64 ? kernels.FlashForwardMma64 : kernels.FlashForwardMma128)
            .Launch(MmaForwardConfig(shape), stream, args);
    }

    /// <summary>Query rows per block of the tensor-core forward.</summary>
    internal const int MmaBr = 64;

    /// <summary>Key rows per staged tile of the tensor-core forward.</summary>
    internal const int MmaBc = 64;

    /// <summary>
    /// The head dimension (64 or 128) when the tensor-core forward (mma.sync bf16, fp32
    /// accumulation, probabilities rounded to bf16 for P·V as FlashAttention-2 does) applies,
    /// else 0: bf16 Q, K and V; head_dim 64 or 128; Q read in 4-byte pairs (address and
    /// strides even), K and V rows in 16-byte chunks (addresses 16-byte aligned, strides
    /// multiples of 8 elements).
    /// </summary>
    public static int TensorCoreHeadDim(in AttentionShape shape, in AttentionOperand q,
        in AttentionOperand k, in AttentionOperand v)
    {
        if (q.View.DType != KernelDType.BF16 || shape.HeadDim is not (64 or 128))
        {
            return 0;
        }
        static bool Aligned(in AttentionOperand o, ulong bytes, long elements) =>
            o.View.Address % bytes == 0 && o.RowStride % elements == 0
            && o.BatchStride % elements == 0;
        return Aligned(q, 4, 2) && Aligned(k, 16, 8) && Aligned(v, 16, 8) ? shape.HeadDim : 0;
    }

    /// <summary>Grid, block and shared memory of the tensor-core forward: one block of four
    /// warps per (64-query tile, batch·head); K and V tiles of 64 rows in bf16, rows padded by
    /// 8 elements.</summary>
    internal static LaunchConfig MmaForwardConfig(in AttentionShape shape) =>
        new((uint)((shape.QLen + MmaBr - 1) / MmaBr), (uint)(shape.Batch * shape.Heads), 128,
            (uint)(2 * MmaBc * (shape.HeadDim + 8) * sizeof(ushort)));

    /// <summary>
    /// Queues the backward of <see cref="Forward"/>: dQ, dK, dV (each with strides of its own:
    /// dense buffers or windows of one fused gradient buffer) from Q, K, V, the forward's
    /// output and lse, and dO. <paramref name="delta"/> [batch·heads·qLen] F32 is workspace.
    /// dQ, dK and dV are written, not accumulated.
    /// </summary>
    /// <param name="kernels">Loaded kernels.</param>
    /// <param name="stream">Stream to queue on.</param>
    /// <param name="shape">Shape.</param>
    /// <param name="q">Q as in the forward.</param>
    /// <param name="k">K as in the forward.</param>
    /// <param name="v">V as in the forward.</param>
    /// <param name="output">The forward's output (q's dtype).</param>
    /// <param name="dOutput">Gradient of the output, the output's dtype.</param>
    /// <param name="lse">The forward's log-sum-exp.</param>
    /// <param name="delta">[batch·heads·qLen] F32 workspace.</param>
    /// <param name="dq">Gradient of Q, F32 or BF16.</param>
    /// <param name="dk">Gradient of K, dq's dtype.</param>
    /// <param name="dv">Gradient of V, dq's dtype.</param>
    /// <param name="kvLens">As in the forward.</param>
    public static void Backward(KernelSet kernels, CudaStream stream, in AttentionShape shape,
        in AttentionOperand q, in AttentionOperand k, in AttentionOperand v,
        in AttentionOperand output, in AttentionOperand dOutput, DeviceView lse,
        DeviceView delta, in AttentionOperand dq, in AttentionOperand dk,
        in AttentionOperand dv, DeviceView kvLens = default)
    {
        ArgumentNullException.ThrowIfNull(kernels);
        BackwardPlan plan = PlanBackward(shape, q, k, v, output, dOutput, lse, delta, dq, dk, dv,
            kvLens);
        kernels.FlashBwdPreprocess.Launch(plan.Preprocess, stream, plan.Args);
        kernels.FlashBwdDq.Launch(plan.Dq, stream, plan.Args);
        kernels.FlashBwdDkdv.Launch(plan.Dkdv, stream, plan.Args);
    }

    internal readonly record struct BackwardPlan(LaunchConfig Preprocess, LaunchConfig Dq,
        LaunchConfig Dkdv, FlashBwdArgs Args);

    internal static (LaunchConfig, FlashFwdArgs) PlanForward(in AttentionShape shape,
        in AttentionOperand q, in AttentionOperand k, in AttentionOperand v,
        in AttentionOperand output, DeviceView lse, DeviceView kvLens = default)
    {
        const string n = "zett_flash_attn_forward";
        CheckShape(n, shape);
        Operand(n, q, "q", shape.Batch, shape.QLen, shape.Heads, shape.HeadDim,
            KernelDType.F32, KernelDType.BF16);
        Operand(n, k, "k", shape.Batch, shape.KvLen, shape.KvHeads, shape.HeadDim, q.View.DType);
        Operand(n, v, "v", shape.Batch, shape.KvLen, shape.KvHeads, shape.HeadDim, q.View.DType);
        Operand(n, output, "output", shape.Batch, shape.QLen, shape.Heads, shape.HeadDim,
            KernelDType.F32, KernelDType.BF16);
        View(n, lse, nameof(lse), (long)shape.Batch * shape.Heads * shape.QLen, KernelDType.F32);
        ulong lens = Optional(n, kvLens, nameof(kvLens), shape.Batch, KernelDType.I32);
        var args = new FlashFwdArgs
        {
            KvLens = lens,
            Causal = shape.Causal ? 1 : 0,
            Q = q.View.Address,
            K = k.View.Address,
            V = v.View.Address,
            Out = output.View.Address,
            Lse = lse.Address,
            QBatchStride = q.BatchStride,
            KBatchStride = k.BatchStride,
            VBatchStride = v.BatchStride,
            OBatchStride = output.BatchStride,
            QRowStride = q.RowStride,
            KRowStride = k.RowStride,
            VRowStride = v.RowStride,
            ORowStride = output.RowStride,
            Batch = shape.Batch,
            QLen = shape.QLen,
            KvLen = shape.KvLen,
            QOffset = shape.QOffset,
            Heads = shape.Heads,
            KvHeads = shape.KvHeads,
            HeadDim = shape.HeadDim,
            Window = shape.Window,
            Scale = shape.Scale,
            InDtype = (int)q.View.DType,
            OutDtype = (int)output.View.DType,
        };
        uint tiles = (uint)((shape.QLen + Br - 1) / Br);
        return (new LaunchConfig(tiles, (uint)(shape.Batch * shape.Heads), Threads,
            ForwardSharedBytes(shape.HeadDim)), args);
    }

    internal static BackwardPlan PlanBackward(in AttentionShape shape, in AttentionOperand q,
        in AttentionOperand k, in AttentionOperand v, in AttentionOperand output,
        in AttentionOperand dOutput, DeviceView lse, DeviceView delta, in AttentionOperand dq,
        in AttentionOperand dk, in AttentionOperand dv, DeviceView kvLens = default)
    {
        const string n = "zett_flash_attn_backward";
        CheckShape(n, shape);
        KernelDType t = q.View.DType;
        Operand(n, q, "q", shape.Batch, shape.QLen, shape.Heads, shape.HeadDim,
            KernelDType.F32, KernelDType.BF16);
        Operand(n, k, "k", shape.Batch, shape.KvLen, shape.KvHeads, shape.HeadDim, t);
        Operand(n, v, "v", shape.Batch, shape.KvLen, shape.KvHeads, shape.HeadDim, t);
        Operand(n, output, "output", shape.Batch, shape.QLen, shape.Heads, shape.HeadDim, t);
        Operand(n, dOutput, nameof(dOutput), shape.Batch, shape.QLen, shape.Heads,
            shape.HeadDim, t);
        long stats = (long)shape.Batch * shape.Heads * shape.QLen;
        View(n, lse, nameof(lse), stats, KernelDType.F32);
        View(n, delta, nameof(delta), stats, KernelDType.F32);
        Operand(n, dq, nameof(dq), shape.Batch, shape.QLen, shape.Heads, shape.HeadDim,
            KernelDType.F32, KernelDType.BF16);
        Operand(n, dk, nameof(dk), shape.Batch, shape.KvLen, shape.KvHeads, shape.HeadDim,
            dq.View.DType);
        Operand(n, dv, nameof(dv), shape.Batch, shape.KvLen, shape.KvHeads, shape.HeadDim,
            dq.View.DType);
        if (shape.Batch * shape.KvHeads > 65535)
        {
            throw new ArgumentException($"{n}: batch·kvHeads = {shape.Batch * shape.KvHeads} "
                + "exceeds the grid's y limit 65535", nameof(shape));
        }
        ulong lens = Optional(n, kvLens, nameof(kvLens), shape.Batch, KernelDType.I32);
        var args = new FlashBwdArgs
        {
            KvLens = lens,
            Causal = shape.Causal ? 1 : 0,
            Q = q.View.Address,
            K = k.View.Address,
            V = v.View.Address,
            Out = output.View.Address,
            Dout = dOutput.View.Address,
            Lse = lse.Address,
            Delta = delta.Address,
            Dq = dq.View.Address,
            Dk = dk.View.Address,
            Dv = dv.View.Address,
            DoBatchStride = dOutput.BatchStride,
            DqBatchStride = dq.BatchStride,
            DkBatchStride = dk.BatchStride,
            DvBatchStride = dv.BatchStride,
            DoRowStride = dOutput.RowStride,
            DqRowStride = dq.RowStride,
            DkRowStride = dk.RowStride,
            DvRowStride = dv.RowStride,
            QBatchStride = q.BatchStride,
            KBatchStride = k.BatchStride,
            VBatchStride = v.BatchStride,
            OBatchStride = output.BatchStride,
            QRowStride = q.RowStride,
            KRowStride = k.RowStride,
            VRowStride = v.RowStride,
            ORowStride = output.RowStride,
            Batch = shape.Batch,
            QLen = shape.QLen,
            KvLen = shape.KvLen,
            QOffset = shape.QOffset,
            Heads = shape.Heads,
            KvHeads = shape.KvHeads,
            HeadDim = shape.HeadDim,
            Window = shape.Window,
            Scale = shape.Scale,
            InDtype = (int)t,
            GradDtype = (int)dq.View.DType,
        };
        const uint warpsPerBlock = 8;
        var pre = new LaunchConfig((uint)((stats + warpsPerBlock - 1) / warpsPerBlock), 1,
            warpsPerBlock * 32, 0);
        var dqCfg = new LaunchConfig((uint)((shape.QLen + Br - 1) / Br),
            (uint)(shape.Batch * shape.Heads), Threads, DqSharedBytes(shape.HeadDim));
        var dkdv = new LaunchConfig((uint)((shape.KvLen + Bkv - 1) / Bkv),
            (uint)(shape.Batch * shape.KvHeads), Threads, DkdvSharedBytes(shape.HeadDim));
        return new BackwardPlan(pre, dqCfg, dkdv, args);
    }

    private static void CheckShape(string n, in AttentionShape s)
    {
        Positive(n, s.Batch, "batch");
        Positive(n, s.QLen, "qLen");
        Positive(n, s.KvLen, "kvLen");
        Positive(n, s.Heads, "heads");
        Positive(n, s.KvHeads, "kvHeads");
        Positive(n, s.HeadDim, "headDim");
        if (s.HeadDim > MaxHeadDim)
        {
            throw new ArgumentException($"{n}: head dimension {s.HeadDim} exceeds {MaxHeadDim}",
                "headDim");
        }
        if (s.Heads % s.KvHeads != 0)
        {
            throw new ArgumentException($"{n}: {s.Heads} query heads are not a multiple of "
                + $"{s.KvHeads} key/value heads", "kvHeads");
        }
        if (s.QOffset < 0 || s.Window < 0)
        {
            throw new ArgumentException($"{n}: qOffset ({s.QOffset}) and window ({s.Window}) "
                + "must not be negative", "qOffset");
        }
        if (!(s.Scale > 0) || float.IsInfinity(s.Scale))
        {
            throw new ArgumentException($"{n}: scale must be positive and finite, got {s.Scale}",
                "scale");
        }
        if ((long)s.Batch * s.Heads > 65535)
        {
            throw new ArgumentException($"{n}: batch·heads = {(long)s.Batch * s.Heads} exceeds "
                + "the grid's y limit 65535", "batch");
        }
    }

    private static void Operand(string n, in AttentionOperand o, string name, int batch,
        int len, int heads, int headDim, params KernelDType[] dtypes)
    {
        int width = heads * headDim;
        if (o.RowStride < width)
        {
            throw new ArgumentException($"{n}: {name} row stride {o.RowStride} is less than "
                + $"heads·headDim = {width}", name);
        }
        if (batch > 1 && o.BatchStride < (long)(len - 1) * o.RowStride + width)
        {
            throw new ArgumentException($"{n}: {name} batch stride {o.BatchStride} is smaller "
                + $"than one sequence of {len} tokens", name);
        }
        long extent = (long)(batch - 1) * o.BatchStride + (long)(len - 1) * o.RowStride + width;
        View(n, o.View, name, extent, dtypes);
    }
}
