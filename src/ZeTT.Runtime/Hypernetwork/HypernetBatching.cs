namespace ZeTT.Runtime.Hypernetwork;

/// <summary>Streams any number of surface forms through a backend in batches of at most its
/// <see cref="IHypernetBackend.MaxBatchSize"/> rows, so memory stays bounded by the backend's
/// workspace plus the outputs.</summary>
public static class HypernetBatching
{
    /// <summary>
    /// Predicts embeddings for every row of <paramref name="surfaceForms"/> ([rows, L],
    /// row-major) and returns them concatenated in row order. <paramref name="progress"/>, when
    /// given, is called with the number of rows done after each batch.
    /// </summary>
    public static HypernetOutput PredictAll(IHypernetBackend backend, ReadOnlySpan<int> surfaceForms,
        int rows, int langIndex, HypernetConfig config, Action<int>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(config);
        int l = config.SurfaceMaxLen, n = config.NEmbd;
        if (rows < 0 || surfaceForms.Length != (long)rows * l)
        {
            throw new ArgumentException($"surface forms hold {surfaceForms.Length} ids, expected "
                + $"rows·L = {rows}·{l}", nameof(surfaceForms));
        }
        if (backend is IStreamingHypernetBackend streaming)
        {
            return streaming.PredictAll(surfaceForms, rows, langIndex, progress);
        }
        var eIn = new float[(long)rows * n];
        float[]? eOut = config.SeparateOutEmbeddings ? new float[(long)rows * n] : null;
        float[]? bias = config.PredictBias ? new float[rows] : null;
        int batch = Math.Max(1, backend.MaxBatchSize);
        for (int r0 = 0; r0 < rows; r0 += batch)
        {
            int count = Math.Min(batch, rows - r0);
            HypernetOutput part = backend.Predict(surfaceForms.Slice(r0 * l, count * l), count,
                langIndex);
            part.EmbeddingsIn.AsSpan(0, count * n).CopyTo(eIn.AsSpan(r0 * n));
            if (eOut is not null)
            {
                (part.EmbeddingsOut ?? throw new InvalidOperationException(
                    $"backend {backend.Name} returned no output embeddings for an untied model"))
                    .AsSpan(0, count * n).CopyTo(eOut.AsSpan(r0 * n));
            }
            if (bias is not null)
            {
                (part.Bias ?? throw new InvalidOperationException(
                    $"backend {backend.Name} returned no bias although the config predicts one"))
                    .AsSpan(0, count).CopyTo(bias.AsSpan(r0));
            }
            progress?.Invoke(r0 + count);
        }
        return new HypernetOutput(eIn, eOut, bias);
    }
}
