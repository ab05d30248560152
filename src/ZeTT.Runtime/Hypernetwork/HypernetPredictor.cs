using ZeTT.Kernels;
using ZeTT.Ops;
using ZeTT.Ops.Cpu;
using ZeTT.Ops.Cuda;
using ZeTT.Runtime.Tensors;

namespace ZeTT.Runtime.Hypernetwork;

/// <summary>Numeric precision of the hypernetwork's weights when predicting.</summary>
public enum HypernetPrecision
{
    /// <summary>fp32 everywhere (parity runs; no TF32).</summary>
    Float32,

    /// <summary>bf16 GEMM weights, read in place by the matrix products; fp32 accumulation,
    /// LayerNorm statistics, softmax, rescaling and outputs. Activations: bf16 on CUDA (every
    /// tensor between two ops, as in the reference's bf16 forward pass; bf16 tensor-core GEMMs),
    /// fp32 on the CPU.</summary>
    BFloat16,
}

/// <summary>What the hypernetwork predicts for n target tokens (row-major).</summary>
/// <param name="EmbeddingsIn">[n, n_embd] predicted input embeddings.</param>
/// <param name="EmbeddingsOut">[n, n_embd] predicted output embeddings (untied models only).</param>
/// <param name="Bias">[n] predicted bias (when the config predicts one).</param>
public sealed record HypernetOutput(float[] EmbeddingsIn, float[]? EmbeddingsOut, float[]? Bias);

/// <summary>
/// Runs the hypernetwork forward pass (ZETT.md §3) for <c>zett transfer</c> and
/// <c>zett predict</c>: the <see cref="HypernetGraph"/> over its parameters on one
/// <see cref="IOpBackend"/> (the CPU or a CUDA device), in batches of at most
/// <see cref="MaxBatchSize"/> rows so that memory stays bounded
/// (<see cref="HypernetBatching.PredictAll"/> streams any number of rows through it). Not
/// thread-safe: one <see cref="Predict"/> at a time.
/// </summary>
public sealed class HypernetPredictor : IDisposable
{
    /// <summary>Bound on the activation bytes of one CPU batch (the default batch size follows
    /// from it, at most <see cref="MaxDefaultBatch"/> rows).</summary>
    public const long CpuWorkspaceBytes = 256L << 20;

    /// <summary>The same bound on a CUDA device: a quarter of the device memory free when the
    /// predictor is built, between 1 and 8 GiB (large batches keep the GEMMs in full waves of
    /// tiles and the launches per token few).</summary>
    public const long CudaWorkspaceBytes = 8L << 30;

    private const long MinCudaWorkspaceBytes = 1L << 30;

    /// <summary>The largest default batch: 512 rows on the CPU (the GEMMs are as fast at 512
    /// rows as at more, and progress stays fluid), 8192 on CUDA.</summary>
    public const int MaxDefaultBatch = 512;

    private const int MaxDefaultCudaBatch = 8192;

    private readonly IOpBackend _ops;
    private readonly bool _ownsBackend;
    private readonly HypernetParameters _parameters;
    private readonly HypernetGraph _graph;
    private bool _disposed;

    /// <summary>Builds a predictor on <paramref name="backend"/>.</summary>
    /// <param name="backend">Where to compute.</param>
    /// <param name="weights">The bound hypernetwork parameters.</param>
    /// <param name="sourceEmbeddings">E [V, D_in] (for untied models [E_in, E_out] per row);
    /// V must cover <c>original_vocab_size</c>.</param>
    /// <param name="precision">fp32, or bf16 GEMM weights.</param>
    /// <param name="maxBatchSize">Rows per batch; 0 chooses from the workspace bound.</param>
    /// <param name="consumeWeights">The caller will not use <paramref name="weights"/> again:
    /// each host tensor is released once the backend holds its own copy, so that a transfer
    /// never holds the hypernetwork twice.</param>
    /// <param name="ownsBackend">Dispose <paramref name="backend"/> with the predictor.</param>
    /// <param name="activationDType">The activations' dtype; null: BF16 for
    /// <see cref="HypernetPrecision.BFloat16"/> on CUDA, else F32 (F32 with bf16 weights on
    /// CUDA is the benchmark's ablation).</param>
    public HypernetPredictor(IOpBackend backend, HypernetWeights weights,
        HostTensor sourceEmbeddings, HypernetPrecision precision, int maxBatchSize = 0,
        bool consumeWeights = false, bool ownsBackend = false, DType? activationDType = null)
        : this(backend, weights, Wrap(weights, sourceEmbeddings), precision, maxBatchSize,
            consumeWeights, ownsBackend, disposeSource: true, activationDType)
    {
    }

    /// <summary>Builds a predictor on <paramref name="backend"/> over source embeddings held
    /// as an op-layer tensor (host or device, any float dtype, 64-bit sizes: E past 2^31
    /// elements); the graph copies the rows it needs, so the caller may dispose
    /// <paramref name="sourceEmbeddings"/> once this returns. Other parameters as in the
    /// other constructor.</summary>
    public HypernetPredictor(IOpBackend backend, HypernetWeights weights,
        Tensor sourceEmbeddings, HypernetPrecision precision, int maxBatchSize = 0,
        bool consumeWeights = false, bool ownsBackend = false, DType? activationDType = null)
        : this(backend, weights, sourceEmbeddings, precision, maxBatchSize, consumeWeights,
            ownsBackend, disposeSource: false, activationDType)
    {
    }

    /// <summary>The original vocabulary's rows of a host matrix as a tensor (a copy).</summary>
    private static Tensor Wrap(HypernetWeights weights, HostTensor sourceEmbeddings)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(sourceEmbeddings);
        HypernetConfig c = weights.Config;
        if (sourceEmbeddings.Rank != 2 || sourceEmbeddings.Shape[1] != c.SourceWidth
            || sourceEmbeddings.Shape[0] < c.OriginalVocabSize)
        {
            throw new ZettException($"source embeddings '{sourceEmbeddings.Name}' have shape "
                + $"{HostTensor.ShapeToString(sourceEmbeddings.Shape)}, expected "
                + $"[≥{c.OriginalVocabSize} (original_vocab_size), {c.SourceWidth}]"
                + (c.SeparateOutEmbeddings ? " (untied model: [E_in, E_out] per row)" : ""));
        }
        return Tensor.FromFloats(sourceEmbeddings.Data.AsSpan(0,
            checked(c.OriginalVocabSize * c.SourceWidth)), c.OriginalVocabSize, c.SourceWidth);
    }

    private HypernetPredictor(IOpBackend backend, HypernetWeights weights, Tensor sourceEmbeddings,
        HypernetPrecision precision, int maxBatchSize, bool consumeWeights, bool ownsBackend,
        bool disposeSource, DType? activationDType)
    {
        try
        {
            ArgumentNullException.ThrowIfNull(backend);
            ArgumentNullException.ThrowIfNull(weights);
            ArgumentNullException.ThrowIfNull(sourceEmbeddings);
            ArgumentOutOfRangeException.ThrowIfNegative(maxBatchSize);
            (_ops, _ownsBackend, _parameters, _graph) = Build(backend, weights, sourceEmbeddings,
                precision, consumeWeights, ownsBackend, activationDType
                    ?? (precision == HypernetPrecision.BFloat16
                        && backend.Device == TensorDevice.Cuda ? DType.BF16 : DType.F32));
        }
        finally
        {
            if (disposeSource)
            {
                sourceEmbeddings.Dispose();
            }
        }
        HypernetConfig c = weights.Config;
        Precision = precision;
        ActivationDType = _graph.ActivationDType;
        Config = c;
        bool cuda = backend.Device == TensorDevice.Cuda;
        MaxBatchSize = maxBatchSize > 0 ? maxBatchSize : DefaultBatchSize(c,
            cuda ? CudaBudget(backend) : CpuWorkspaceBytes,
            cuda ? MaxDefaultCudaBatch : MaxDefaultBatch, DTypes.SizeOf(ActivationDType));
        Name = backend is CudaBackend gpu ? $"cuda: {gpu.DeviceName}" : backend.Name;
    }

    private static (IOpBackend, bool, HypernetParameters, HypernetGraph) Build(IOpBackend backend,
        HypernetWeights weights, Tensor sourceEmbeddings, HypernetPrecision precision,
        bool consumeWeights, bool ownsBackend, DType activations)
    {
        HypernetConfig c = weights.Config;
        HypernetParameters parameters = HypernetParameters.FromWeights(weights, backend, DType.F32,
            precision == HypernetPrecision.BFloat16 ? DType.BF16 : DType.F32, consumeWeights,
            fuseAttention: true);
        try
        {
            // Only the original vocabulary's rows are read; the graph keeps its own copy.
            return (backend, ownsBackend, parameters, new HypernetGraph(c, parameters, sourceEmbeddings,
                activations));
        }
        catch
        {
            parameters.Dispose();
            throw;
        }
    }

    /// <summary>The dtype the graph's activations are stored in.</summary>
    public DType ActivationDType { get; }

    /// <summary>"cpu" or "cuda: &lt;device&gt;", for messages.</summary>
    public string Name { get; }

    /// <summary>The largest batch (rows) one <see cref="Predict"/> takes.</summary>
    public int MaxBatchSize { get; }

    /// <summary>The precision of the GEMM weights.</summary>
    public HypernetPrecision Precision { get; }

    /// <summary>The configuration of the hypernetwork.</summary>
    public HypernetConfig Config { get; }

    /// <summary>Predicts embeddings for <paramref name="rows"/> surface forms.</summary>
    /// <param name="surfaceForms">[rows, L] hn-tokenizer ids, pad-padded on the right.</param>
    /// <param name="rows">Number of rows, 0 to <see cref="MaxBatchSize"/>.</param>
    /// <param name="langIndex">Language index for multilingual hypernetworks, else -1.</param>
    public HypernetOutput Predict(ReadOnlySpan<int> surfaceForms, int rows, int langIndex)
    {
        if (rows == 0)
        {
            CheckBatch(surfaceForms, rows);
            return new HypernetOutput([], Config.SeparateOutEmbeddings ? [] : null,
                Config.PredictBias ? [] : null);
        }
        using HypernetSubmission s = Submit(surfaceForms, rows, langIndex);
        return s.Complete();
    }

    /// <summary>Queues the prediction of <see cref="Predict"/> for 1 to
    /// <see cref="MaxBatchSize"/> rows and returns without waiting for it (on CUDA the device
    /// computes, and then copies the results, while the caller goes on); at most two
    /// submissions may be outstanding. <see cref="HypernetBatching"/> keeps one batch queued
    /// ahead of the one it collects.</summary>
    public HypernetSubmission Submit(ReadOnlySpan<int> surfaceForms, int rows, int langIndex)
    {
        CheckBatch(surfaceForms, rows);
        if (rows == 0)
        {
            throw new ArgumentOutOfRangeException(nameof(rows), rows,
                $"a submitted batch holds 1..{MaxBatchSize} rows");
        }
        return _graph.Submit(surfaceForms, rows, langIndex);
    }

    private void CheckBatch(ReadOnlySpan<int> surfaceForms, int rows)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (rows < 0 || rows > MaxBatchSize)
        {
            throw new ArgumentOutOfRangeException(nameof(rows), rows,
                $"a batch holds 0..{MaxBatchSize} rows");
        }
        if (surfaceForms.Length != (long)rows * Config.SurfaceMaxLen)
        {
            throw new ArgumentException($"surface forms hold {surfaceForms.Length} ids, expected "
                + $"rows·L = {rows}·{Config.SurfaceMaxLen}", nameof(surfaceForms));
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        _graph.Dispose();
        _parameters.Dispose();
        if (_ownsBackend)
        {
            _ops.Dispose();
        }
    }

    private static long CudaBudget(IOpBackend backend) => backend is CudaBackend gpu
        ? Math.Clamp(gpu.FreeMemory / 4, MinCudaWorkspaceBytes, CudaWorkspaceBytes)
        : CudaWorkspaceBytes;

    /// <summary>Rows whose activations fit <paramref name="budgetBytes"/> when every row is
    /// full (L positions and the language position): per sequence token the inference pass
    /// holds the live tensors (u, the layer outputs) and one layer's temporaries (q, k, v,
    /// context, two residuals, two LayerNorm outputs at H; the feed-forward's two at I) or one
    /// projector block's (two at I, two at H), <paramref name="elementBytes"/> each (4 for
    /// fp32 activations, 2 for bf16).</summary>
    internal static int DefaultBatchSize(HypernetConfig c, long budgetBytes, int cap,
        int elementBytes = 4)
    {
        long h = c.HiddenSize, i = c.IntermediateSize;
        long perToken = elementBytes * (((c.NumLayers + 3) * h) + c.SourceWidth * 3
            + Math.Max((8 * h) + (2 * i), (2 * i) + (2 * h)));
        long perRow = perToken * c.SequenceLength;
        return (int)Math.Clamp(budgetBytes / perRow, 1, cap);
    }

    /// <summary>The device names <c>Create</c> accepts.</summary>
    public static IReadOnlyList<string> Devices { get; } = ["auto", "cpu", "cuda"];

    /// <summary>
    /// Builds a predictor on <paramref name="device"/>: <c>cpu</c>, <c>cuda</c> (an error when
    /// no CUDA device is usable), or <c>auto</c> (CUDA when <see cref="Cuda.IsAvailable"/>,
    /// else the CPU). The choice and its reason go to <paramref name="log"/>.
    /// CUDA_VISIBLE_DEVICES is honoured by the driver; <paramref name="gpu"/> is the ordinal
    /// after it.
    /// </summary>
    /// <param name="device">auto, cpu or cuda.</param>
    /// <param name="weights">The hypernetwork.</param>
    /// <param name="sourceEmbeddings">E [V, D_in] (untied: [E_in, E_out] per row).</param>
    /// <param name="precision">fp32 or bf16.</param>
    /// <param name="batchSize">Rows per batch; 0 lets the predictor choose.</param>
    /// <param name="log">Receives one line naming the device and why.</param>
    /// <param name="gpu">CUDA device ordinal.</param>
    /// <param name="consumeWeights">The caller will not use <paramref name="weights"/> again
    /// (see the constructor).</param>
    public static HypernetPredictor Create(string device, HypernetWeights weights,
        HostTensor sourceEmbeddings, HypernetPrecision precision, int batchSize,
        Action<string>? log, int gpu = 0, bool consumeWeights = false) =>
        Create(device, batchSize, gpu, log, ops => new HypernetPredictor(ops, weights,
            sourceEmbeddings, precision, batchSize, consumeWeights, ownsBackend: true));

    /// <summary>As the other overload, over source embeddings held as an op-layer tensor
    /// (64-bit sizes; the caller may dispose it once this returns).</summary>
    public static HypernetPredictor Create(string device, HypernetWeights weights,
        Tensor sourceEmbeddings, HypernetPrecision precision, int batchSize,
        Action<string>? log, int gpu = 0, bool consumeWeights = false) =>
        Create(device, batchSize, gpu, log, ops => new HypernetPredictor(ops, weights,
            sourceEmbeddings, precision, batchSize, consumeWeights, ownsBackend: true));

    /// <summary>The op backend for <c>--device</c> <paramref name="device"/> (auto, cpu or
    /// cuda) and <c>--gpu</c> <paramref name="gpu"/>; <paramref name="why"/> says which and
    /// why, for the log. Shared by every command that computes (transfer, predict, train).</summary>
    /// <exception cref="ZettException">An unknown device, a negative ordinal, or cuda without a
    /// usable device.</exception>
    public static IOpBackend OpenBackend(string device, int gpu, out string why)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (gpu < 0)
        {
            throw new ZettException($"--gpu must be a device ordinal ≥ 0, got {gpu}");
        }
        string visible = Environment.GetEnvironmentVariable("CUDA_VISIBLE_DEVICES") is { } v
            ? $" (CUDA_VISIBLE_DEVICES={v})" : "";
        switch (device)
        {
            case "cpu":
                why = "--device cpu";
                break;
            case "cuda":
                if (!Cuda.IsAvailable)
                {
                    throw new ZettException($"--device cuda: no usable CUDA device{visible}: "
                        + Cuda.UnavailableReason);
                }
                why = "--device cuda";
                break;
            case "auto":
                why = Cuda.IsAvailable ? $"auto: {Cuda.DeviceSummary}{visible}"
                    : $"auto: no usable CUDA device{visible}: {Cuda.UnavailableReason}";
                device = Cuda.IsAvailable ? "cuda" : "cpu";
                break;
            default:
                throw new ZettException($"--device {device}: expected one of "
                    + string.Join(", ", Devices));
        }
        return device == "cuda" ? new CudaBackend(gpu) : new CpuBackend();
    }

    private static HypernetPredictor Create(string device, int batchSize, int gpu,
        Action<string>? log, Func<IOpBackend, HypernetPredictor> build)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (batchSize < 0)
        {
            throw new ZettException($"--batch-size must be positive, got {batchSize}");
        }
        IOpBackend ops = OpenBackend(device, gpu, out string why);
        HypernetPredictor predictor;
        try
        {
            predictor = build(ops);
        }
        catch
        {
            ops.Dispose();
            throw;
        }
        log?.Invoke($"backend: {predictor.Name} ({why}), batch {predictor.MaxBatchSize}");
        return predictor;
    }
}
