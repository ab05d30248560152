using System.Runtime.InteropServices;
using static ZeTT.Kernels.Launch.LaunchChecks;

namespace ZeTT.Kernels.Launch;

/// <summary>Args of <c>zett_embedding_forward</c> / <c>_backward</c> (kernels/gather.cu, same
/// layout).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct EmbeddingArgs
{
    public ulong Ids;
    public ulong Table;
    public ulong Out;
    public ulong Dout;
    public ulong Error;
    public int Tokens;
    public int Cols;
    public float Scale;
    public int TableDtype;
    public int OutDtype;
    public int Vocab;
}

/// <summary>Launchers of kernels/gather.cu: the language models' embedding lookup and its
/// deterministic scatter-add gradient.</summary>
public static class GatherKernels
{
    private const uint BackwardThreads = 256;

    /// <summary>Queues <c>output[t] = table[ids[t]] · scale</c>. An id outside [0, vocab)
    /// (device data) gives a zero row and, when <paramref name="error"/> is given, raises it to
    /// 1 + the token's index (atomic max), for the caller to read after synchronising.</summary>
    /// <param name="kernels">Loaded kernels.</param>
    /// <param name="stream">Stream to queue on.</param>
    /// <param name="ids">[tokens] I32.</param>
    /// <param name="table">[vocab, cols] F32 or BF16.</param>
    /// <param name="vocab">Rows of the table.</param>
    /// <param name="cols">Embedding width.</param>
    /// <param name="scale">Multiplier (√hidden for gemma, else 1).</param>
    /// <param name="output">[tokens, cols] F32 or BF16.</param>
    /// <param name="error">[1] I32 error flag (0 when all ids are valid), or none.</param>
    public static void Forward(KernelSet kernels, CudaStream stream, DeviceView ids,
        DeviceView table, int vocab, int cols, float scale, DeviceView output,
        DeviceView error = default)
    {
        ArgumentNullException.ThrowIfNull(kernels);
        var (config, args) = PlanForward(ids, table, vocab, cols, scale, output, error);
        kernels.EmbeddingForward.Launch(config, stream, args);
    }

    /// <summary>Queues <c>dTable[ids[t]] += scale · dOutput[t]</c> for every token, in token
    /// order per column (deterministic, no atomics); out-of-range ids are skipped. dTable is
    /// accumulated into.</summary>
    /// <param name="kernels">Loaded kernels.</param>
    /// <param name="stream">Stream to queue on.</param>
    /// <param name="ids">[tokens] I32.</param>
    /// <param name="dOutput">[tokens, cols] F32 or BF16.</param>
    /// <param name="vocab">Rows of the table.</param>
    /// <param name="cols">Embedding width.</param>
    /// <param name="scale">The forward's multiplier.</param>
    /// <param name="dTable">[vocab, cols] F32.</param>
    public static void Backward(KernelSet kernels, CudaStream stream, DeviceView ids,
        DeviceView dOutput, int vocab, int cols, float scale, DeviceView dTable)
    {
        ArgumentNullException.ThrowIfNull(kernels);
        var (config, args) = PlanBackward(ids, dOutput, vocab, cols, scale, dTable);
        kernels.EmbeddingBackward.Launch(config, stream, args);
    }

    internal static (LaunchConfig, EmbeddingArgs) PlanForward(DeviceView ids, DeviceView table,
        int vocab, int cols, float scale, DeviceView output, DeviceView error = default)
    {
        const string k = "zett_embedding_forward";
        Positive(k, vocab, nameof(vocab));
        Positive(k, cols, nameof(cols));
        int tokens = TokenCount(k, ids);
        View(k, table, nameof(table), (long)vocab * cols, KernelDType.F32, KernelDType.BF16);
        View(k, output, nameof(output), (long)tokens * cols, KernelDType.F32, KernelDType.BF16);
        ulong err = Optional(k, error, nameof(error), 1, KernelDType.I32);
        var args = new EmbeddingArgs
        {
            Error = err,
            Vocab = vocab,
            Ids = ids.Address,
            Table = table.Address,
            Out = output.Address,
            Tokens = tokens,
            Cols = cols,
            Scale = scale,
            TableDtype = (int)table.DType,
            OutDtype = (int)output.DType,
        };
        return (new LaunchConfig((uint)tokens, 1, RowBlock(cols), 0), args);
    }

    internal static (LaunchConfig, EmbeddingArgs) PlanBackward(DeviceView ids,
        DeviceView dOutput, int vocab, int cols, float scale, DeviceView dTable)
    {
        const string k = "zett_embedding_backward";
        Positive(k, vocab, nameof(vocab));
        Positive(k, cols, nameof(cols));
        int tokens = TokenCount(k, ids);
        View(k, dOutput, nameof(dOutput), (long)tokens * cols, KernelDType.F32,
            KernelDType.BF16);
        View(k, dTable, nameof(dTable), (long)vocab * cols, KernelDType.F32);
        var args = new EmbeddingArgs
        {
            Vocab = vocab,
            Ids = ids.Address,
            Out = dTable.Address,
            Dout = dOutput.Address,
            Tokens = tokens,
            Cols = cols,
            Scale = scale,
            TableDtype = (int)dOutput.DType,
            OutDtype = (int)KernelDType.F32,
        };
        uint blocks = (uint)((cols + BackwardThreads - 1) / BackwardThreads);
        return (new LaunchConfig(blocks, 1, BackwardThreads, 0), args);
    }

    private static int TokenCount(string k, DeviceView ids)
    {
        View(k, ids, nameof(ids), 1, KernelDType.I32);
        if (ids.Length > int.MaxValue)
        {
            throw new ArgumentException($"{k}: {ids.Length} ids exceed one launch's "
                + $"{int.MaxValue}", nameof(ids));
        }
        return (int)ids.Length;
    }
}
