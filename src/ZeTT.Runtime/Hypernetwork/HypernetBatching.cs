namespace ZeTT.Runtime.Hypernetwork;

/// <summary>Streams any number of surface forms through a predictor in batches of at most its
/// <see cref="HypernetPredictor.MaxBatchSize"/> rows, so memory stays bounded by the
/// predictor's workspace plus the outputs.</summary>
public static class HypernetBatching
{
    /// <summary>
    /// Predicts embeddings for every row of <paramref name="surfaceForms"/> ([rows, L],
    /// row-major) and returns them concatenated in row order. <paramref name="progress"/>, when
    /// given, is called with the number of rows done after each batch.
    /// </summary>
    public static HypernetOutput PredictAll(HypernetPredictor predictor,
        ReadOnlySpan<int> surfaceForms, int rows, int langIndex, Action<int>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(predictor);
        HypernetConfig config = predictor.Config;
        int l = config.SurfaceMaxLen, n = config.NEmbd;
        if (rows < 0 || surfaceForms.Length != (long)rows * l)
        {
            throw new ArgumentException($"surface forms hold {surfaceForms.Length} ids, expected "
                + $"rows·L = {rows}·{l}", nameof(surfaceForms));
        }
        var eIn = new float[(long)rows * n];
        float[]? eOut = config.SeparateOutEmbeddings ? new float[(long)rows * n] : null;
        float[]? bias = config.PredictBias ? new float[rows] : null;
        int batch = Math.Max(1, predictor.MaxBatchSize);
        for (int r0 = 0; r0 < rows; r0 += batch)
        {
            int count = Math.Min(batch, rows - r0);
            HypernetOutput part = predictor.Predict(
                surfaceForms.Slice(checked(r0 * l), count * l), count, langIndex);
            part.EmbeddingsIn.AsSpan(0, count * n).CopyTo(eIn.AsSpan(checked(r0 * n)));
            if (eOut is not null)
            {
                part.EmbeddingsOut!.AsSpan(0, count * n).CopyTo(eOut.AsSpan(checked(r0 * n)));
            }
            if (bias is not null)
            {
                part.Bias!.AsSpan(0, count).CopyTo(bias.AsSpan(r0));
            }
            progress?.Invoke(r0 + count);
        }
        return new HypernetOutput(eIn, eOut, bias);
    }
}
