using System.Runtime.InteropServices;
using ZeTT.Kernels.Blas;
using static ZeTT.Kernels.Launch.LaunchChecks;

namespace ZeTT.Kernels.Launch;

/// <summary>Args of the kernels in kernels/cross_entropy.cu (same layout).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct CrossEntropyArgs
{
    public ulong Logits;
    public ulong Targets;
    public ulong RowMax;
    public ulong RowSum;
    public ulong TargetLogit;
    public ulong Loss;
    public ulong Lse;
    public ulong Dloss;
    public ulong Dlogits;
    public ulong Bias;
    public int Rows;
    public int Cols;
    public int Ld;
    public int Col0;
    public int BiasDtype;
    public int OutDtype;
}

/// <summary>
/// Device memory the fused LM-head cross-entropy works in, owned by the caller: a logits chunk
/// <see cref="Logits"/> [rows, <see cref="ChunkColumns"/>] F32, the running statistics
/// <see cref="Stats"/> [3·rows] F32, and for the backward <see cref="DLogits"/> [rows,
/// ChunkColumns] in the weight's dtype (may be <see cref="Logits"/> itself for an F32 weight).
/// </summary>
/// <param name="Logits">[rows·chunkColumns] F32.</param>
/// <param name="Stats">[3·rows] F32.</param>
/// <param name="DLogits">[rows·chunkColumns] in the weight's dtype (backward only).</param>
/// <param name="ChunkColumns">Vocabulary columns per chunk.</param>
public readonly record struct CrossEntropyWorkspace(DeviceView Logits, DeviceView Stats,
    DeviceView DLogits, int ChunkColumns);

/// <summary>
/// Softmax cross-entropy fused with the LM head (kernels/cross_entropy.cu plus the one GEMM
/// wrapper): the vocabulary is processed in chunks, each chunk's logits computed by cuBLASLt
/// into a caller-owned fp32 buffer and folded into per-row online max/sum statistics, so that
/// [rows, vocab] logits never exist in fp32 at once. The backward recomputes each chunk's
/// logits (one extra GEMM per chunk, the same trade as the attention's recomputation) and turns
/// them into dlogits, then dHidden += dlogits·W_chunk and dW_chunk = dlogitsᵀ·hidden.
/// </summary>
public static class LmHeadCrossEntropy
{
    private const uint Threads = 256;

    /// <summary>Default logits-chunk budget: 256 MiB of fp32.</summary>
    public const long DefaultChunkBytes = 256L << 20;

    /// <summary>
    /// Vocabulary columns per chunk for <paramref name="rows"/> rows within
    /// <paramref name="budgetBytes"/> of fp32 logits: a multiple of 128 (whole GEMM tiles) but
    /// never more than the vocabulary, at least 128 (or the vocabulary, if smaller).
    /// </summary>
    public static int ChunkColumns(int rows, int vocab, long budgetBytes = DefaultChunkBytes)
    {
        Positive("lm_head_cross_entropy", rows, nameof(rows));
        Positive("lm_head_cross_entropy", vocab, nameof(vocab));
        long cols = budgetBytes / (4L * rows) / 128 * 128;
        return (int)Math.Min(vocab, Math.Max(128, cols));
    }

    /// <summary>The chunks [col0, col0 + cols) that cover the vocabulary in order.</summary>
    public static IReadOnlyList<(int Col0, int Cols)> Chunks(int vocab, int chunkColumns)
    {
        var list = new List<(int, int)>();
        for (int c0 = 0; c0 < vocab; c0 += chunkColumns)
        {
            list.Add((c0, Math.Min(chunkColumns, vocab - c0)));
        }
        return list;
    }

    /// <summary>
    /// Queues the forward: <c>loss[r] = lse_r − z[r, target_r]</c> (0 for a negative target:
    /// ignored) and <c>lse[r] = log Σ_v exp z[r, v]</c>, z = hidden·Wᵀ + bias.
    /// </summary>
    /// <param name="kernels">Loaded kernels.</param>
    /// <param name="blas">BLAS handle; its stream runs everything.</param>
    /// <param name="hidden">[rows, hiddenSize] F32 or BF16.</param>
    /// <param name="weight">[vocab, hiddenSize] in hidden's dtype (the LM head, or the tied
    /// embedding).</param>
    /// <param name="rows">Tokens.</param>
    /// <param name="hiddenSize">Hidden size.</param>
    /// <param name="vocab">Vocabulary size.</param>
    /// <param name="bias">[vocab] F32 or BF16, or none.</param>
    /// <param name="targets">[rows] I32 in [0, vocab), or negative (no loss).</param>
    /// <param name="loss">[rows] F32.</param>
    /// <param name="lse">[rows] F32 (the backward's input).</param>
    /// <param name="workspace">Chunk buffers.</param>
    public static void Forward(KernelSet kernels, BlasHandle blas, DeviceView hidden,
        DeviceView weight, DeviceView bias, int rows, int hiddenSize, int vocab,
        DeviceView targets, DeviceView loss, DeviceView lse, in CrossEntropyWorkspace workspace)
    {
        ArgumentNullException.ThrowIfNull(kernels);
        ArgumentNullException.ThrowIfNull(blas);
        CrossEntropyArgs args = PlanForward(hidden, weight, bias, rows, hiddenSize, vocab,
            targets, loss, lse, workspace);
        int ld = workspace.ChunkColumns;
        foreach ((int c0, int cols) in Chunks(vocab, ld))
        {
            LogitsChunk(blas, hidden, weight, rows, hiddenSize, c0, cols, workspace);
            CrossEntropyArgs a = args with { Col0 = c0, Cols = cols };
            kernels.CeChunkStats.Launch(new LaunchConfig((uint)rows, 1, Threads, 0), blas.Stream,
                a);
        }
        kernels.CeFinish.Launch(new LaunchConfig((uint)((rows + Threads - 1) / Threads), 1,
            Threads, 0), blas.Stream, args);
    }

    /// <summary>
    /// Queues the backward: with g_r = dLoss[r] (1 when dLoss is none, 0 for ignored rows),
    /// <c>dHidden = Σ_chunks dlogits·W_chunk</c> (overwritten),
    /// <c>dWeight[chunk] += dlogitsᵀ·hidden</c> and <c>dBias[chunk] += Σ_rows dlogits</c>
    /// (accumulated, as parameter gradients are), dlogits = (softmax − onehot)·g.
    /// </summary>
    /// <param name="kernels">Loaded kernels.</param>
    /// <param name="blas">BLAS handle; its stream runs everything.</param>
    /// <param name="hidden">As in the forward.</param>
    /// <param name="weight">As in the forward.</param>
    /// <param name="bias">As in the forward.</param>
    /// <param name="rows">Tokens.</param>
    /// <param name="hiddenSize">Hidden size.</param>
    /// <param name="vocab">Vocabulary size.</param>
    /// <param name="targets">As in the forward.</param>
    /// <param name="lse">The forward's lse.</param>
    /// <param name="dLoss">[rows] F32 gradient of each row's loss, or none (1).</param>
    /// <param name="dHidden">[rows, hiddenSize] F32 (or BF16 for a BF16 weight).</param>
    /// <param name="dWeight">[vocab, hiddenSize] F32 (or BF16 for a BF16 weight), or none.
    /// </param>
    /// <param name="dBias">[vocab] F32, or none.</param>
    /// <param name="workspace">Chunk buffers, DLogits included.</param>
    public static void Backward(KernelSet kernels, BlasHandle blas, DeviceView hidden,
        DeviceView weight, DeviceView bias, int rows, int hiddenSize, int vocab,
        DeviceView targets, DeviceView lse, DeviceView dLoss, DeviceView dHidden,
        DeviceView dWeight, DeviceView dBias, in CrossEntropyWorkspace workspace)
    {
        ArgumentNullException.ThrowIfNull(kernels);
        ArgumentNullException.ThrowIfNull(blas);
        CrossEntropyArgs args = PlanBackward(hidden, weight, bias, rows, hiddenSize, vocab,
            targets, lse, dLoss, dHidden, dWeight, dBias, workspace);
        int ld = workspace.ChunkColumns;
        foreach ((int c0, int cols) in Chunks(vocab, ld))
        {
            LogitsChunk(blas, hidden, weight, rows, hiddenSize, c0, cols, workspace);
            CrossEntropyArgs a = args with { Col0 = c0, Cols = cols };
            kernels.CeChunkGrad.Launch(new LaunchConfig((uint)rows, 1, Threads, 0), blas.Stream,
                a);
            DeviceView wChunk = weight.Slice((long)c0 * hiddenSize, (long)cols * hiddenSize);
            // dHidden (+)= dlogits[rows, cols] · W_chunk[cols, H]
            Gemm.Run(blas, false, false, rows, hiddenSize, cols, workspace.DLogits, ld, wChunk,
                hiddenSize, dHidden, hiddenSize, 1f, c0 > 0 ? 1f : 0f);
            if (dWeight.IsPresent)
            {
                // dW_chunk += dlogitsᵀ[cols, rows] · hidden[rows, H]
                Gemm.Run(blas, true, false, cols, hiddenSize, rows, workspace.DLogits, ld,
                    hidden, hiddenSize,
                    dWeight.Slice((long)c0 * hiddenSize, (long)cols * hiddenSize), hiddenSize,
                    1f, 1f);
            }
            if (dBias.IsPresent)
            {
                var (cfg, sum) = ResidualKernels.PlanSumRows(workspace.DLogits, rows, cols, ld,
                    1f, dBias.Slice(c0, cols));
                kernels.SumRows.Launch(cfg, blas.Stream, sum);
            }
        }
    }

    private static void LogitsChunk(BlasHandle blas, DeviceView hidden, DeviceView weight,
        int rows, int hiddenSize, int c0, int cols, in CrossEntropyWorkspace ws)
    {
        // logits[rows, cols] = hidden[rows, H] · W[c0 : c0 + cols, H]ᵀ
        Gemm.Run(blas, false, true, rows, cols, hiddenSize, hidden, hiddenSize,
            weight.Slice((long)c0 * hiddenSize, (long)cols * hiddenSize), hiddenSize,
            ws.Logits, ws.ChunkColumns);
    }

    internal static CrossEntropyArgs PlanForward(DeviceView hidden, DeviceView weight,
        DeviceView bias, int rows, int hiddenSize, int vocab, DeviceView targets,
        DeviceView loss, DeviceView lse, in CrossEntropyWorkspace ws)
    {
        const string k = "lm_head_cross_entropy";
        Common(k, hidden, weight, bias, rows, hiddenSize, vocab, targets, ws);
        View(k, loss, nameof(loss), rows, KernelDType.F32);
        View(k, lse, nameof(lse), rows, KernelDType.F32);
        return Args(ws, rows, targets, bias) with
        {
            Loss = loss.Address,
            Lse = lse.Address,
        };
    }

    internal static CrossEntropyArgs PlanBackward(DeviceView hidden, DeviceView weight,
        DeviceView bias, int rows, int hiddenSize, int vocab, DeviceView targets,
        DeviceView lse, DeviceView dLoss, DeviceView dHidden, DeviceView dWeight,
        DeviceView dBias, in CrossEntropyWorkspace ws)
    {
        const string k = "lm_head_cross_entropy_backward";
        Common(k, hidden, weight, bias, rows, hiddenSize, vocab, targets, ws);
        View(k, lse, nameof(lse), rows, KernelDType.F32);
        ulong dl = Optional(k, dLoss, nameof(dLoss), rows, KernelDType.F32);
        View(k, ws.DLogits, "workspace.DLogits", (long)rows * ws.ChunkColumns, weight.DType);
        KernelDType[] gradTypes = weight.DType == KernelDType.BF16
            ? [KernelDType.F32, KernelDType.BF16] : [KernelDType.F32];
        View(k, dHidden, nameof(dHidden), (long)rows * hiddenSize, gradTypes);
        Optional(k, dWeight, nameof(dWeight), (long)vocab * hiddenSize, gradTypes);
        Optional(k, dBias, nameof(dBias), vocab, KernelDType.F32);
        return Args(ws, rows, targets, bias) with
        {
            Lse = lse.Address,
            Dloss = dl,
            Dlogits = ws.DLogits.Address,
            OutDtype = (int)weight.DType,
        };
    }

    private static void Common(string k, DeviceView hidden, DeviceView weight, DeviceView bias,
        int rows, int hiddenSize, int vocab, DeviceView targets, in CrossEntropyWorkspace ws)
    {
        Optional(k, bias, nameof(bias), vocab, KernelDType.F32, KernelDType.BF16);
        Positive(k, rows, nameof(rows));
        Positive(k, hiddenSize, nameof(hiddenSize));
        Positive(k, vocab, nameof(vocab));
        Positive(k, ws.ChunkColumns, "workspace.ChunkColumns");
        View(k, hidden, nameof(hidden), (long)rows * hiddenSize, KernelDType.F32,
            KernelDType.BF16);
        View(k, weight, nameof(weight), (long)vocab * hiddenSize, hidden.DType);
        View(k, targets, nameof(targets), rows, KernelDType.I32);
        View(k, ws.Logits, "workspace.Logits", (long)rows * ws.ChunkColumns, KernelDType.F32);
        View(k, ws.Stats, "workspace.Stats", 3L * rows, KernelDType.F32);
    }

    private static CrossEntropyArgs Args(in CrossEntropyWorkspace ws, int rows,
        DeviceView targets, DeviceView bias) => new()
        {
            Bias = bias.Address,
            BiasDtype = (int)bias.DType,
            Logits = ws.Logits.Address,
            Targets = targets.Address,
            RowMax = ws.Stats.Address,
            RowSum = ws.Stats.Slice(rows, rows).Address,
            TargetLogit = ws.Stats.Slice(2L * rows, rows).Address,
            Rows = rows,
            Ld = ws.ChunkColumns,
            OutDtype = (int)KernelDType.F32,
        };
}
