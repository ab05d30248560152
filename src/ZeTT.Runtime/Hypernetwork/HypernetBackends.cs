using ZeTT.Kernels;
using ZeTT.Runtime.Tensors;

namespace ZeTT.Runtime.Hypernetwork;

/// <summary>Chooses and builds the backend a command runs the hypernetwork on.</summary>
public static class HypernetBackends
{
    /// <summary>The device names <see cref="Create"/> accepts.</summary>
    public static IReadOnlyList<string> Devices { get; } = ["auto", "cpu", "cuda"];

    /// <summary>
    /// Builds a backend on <paramref name="device"/>: <c>cpu</c>, <c>cuda</c> (an error when no
    /// CUDA device is usable), or <c>auto</c> (CUDA when <see cref="Cuda.IsAvailable"/>, else the
    /// CPU). The choice and its reason go to <paramref name="log"/>. CUDA_VISIBLE_DEVICES is
    /// honoured by the driver; <paramref name="gpu"/> is the ordinal after it.
    /// </summary>
    /// <param name="device">auto, cpu or cuda.</param>
    /// <param name="weights">The hypernetwork.</param>
    /// <param name="sourceEmbeddings">E [V, D_in] (untied: [E_in, E_out] per row).</param>
    /// <param name="precision">fp32 or bf16.</param>
    /// <param name="batchSize">Rows per batch; 0 lets the backend choose.</param>
    /// <param name="log">Receives one line naming the backend and why.</param>
    /// <param name="gpu">CUDA device ordinal.</param>
    /// <param name="consumeWeights">The caller will not use <paramref name="weights"/> again:
    /// their GEMM matrices are released once the backend has its own copy (packed on the CPU,
    /// uploaded on CUDA), so that a transfer never holds the hypernetwork twice.</param>
    public static IHypernetBackend Create(string device, HypernetWeights weights,
        HostTensor sourceEmbeddings, HypernetPrecision precision, int batchSize,
        Action<string>? log, int gpu = 0, bool consumeWeights = false)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(weights);
        if (batchSize < 0)
        {
            throw new ZettException($"--batch-size must be positive, got {batchSize}");
        }
        if (gpu < 0)
        {
            throw new ZettException($"--gpu must be a device ordinal ≥ 0, got {gpu}");
        }
        string visible = Environment.GetEnvironmentVariable("CUDA_VISIBLE_DEVICES") is { } v
            ? $" (CUDA_VISIBLE_DEVICES={v})" : "";
        switch (device)
        {
            case "cpu":
                log?.Invoke("backend: cpu (--device cpu)");
                return Cpu(weights, sourceEmbeddings, precision, batchSize, consumeWeights);
            case "cuda":
                if (!Cuda.IsAvailable)
                {
                    throw new ZettException($"--device cuda: no usable CUDA device{visible}: "
                        + Cuda.UnavailableReason);
                }
                return Gpu(weights, sourceEmbeddings, precision, batchSize, gpu, log, "--device cuda",
                    consumeWeights);
            case "auto":
                if (Cuda.IsAvailable)
                {
                    return Gpu(weights, sourceEmbeddings, precision, batchSize, gpu, log,
                        $"auto: {Cuda.DeviceSummary}{visible}", consumeWeights);
                }
                log?.Invoke($"backend: cpu (auto: no usable CUDA device{visible}: "
                    + $"{Cuda.UnavailableReason})");
                return Cpu(weights, sourceEmbeddings, precision, batchSize, consumeWeights);
            default:
                throw new ZettException($"--device {device}: expected one of "
                    + string.Join(", ", Devices));
        }
    }

    private static CpuHypernetBackend Cpu(HypernetWeights weights, HostTensor source,
        HypernetPrecision precision, int batchSize, bool consume) =>
        new(weights, source, precision, batchSize, releaseUnpacked: consume);

    private static CudaHypernetBackend Gpu(HypernetWeights weights, HostTensor source,
        HypernetPrecision precision, int batchSize, int gpu, Action<string>? log, string why,
        bool consume)
    {
        var backend = new CudaHypernetBackend(weights, source, precision, batchSize, gpu, log);
        log?.Invoke($"backend: {backend.Name} ({why}), batch {backend.MaxBatchSize}");
        if (consume)
        {
            // Uploaded: the host copies of the GEMM weights are no longer needed.
            foreach (LinearParams linear in weights.Linears())
            {
                linear.Weight.Release();
            }
        }
        return backend;
    }
}
