using ZeTT.Runtime.Tensors;

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
        Check(predictor, surfaceForms, rows);
        HypernetConfig config = predictor.Config;
        int n = config.NEmbd;
        var eIn = new float[checked((long)rows * n)];
        float[]? eOut = config.SeparateOutEmbeddings ? new float[eIn.Length] : null;
        float[]? bias = config.PredictBias ? new float[rows] : null;
        Stream(predictor, surfaceForms, rows, langIndex, progress, (r0, count, part) =>
        {
            part.EmbeddingsIn.AsSpan(0, count * n).CopyTo(eIn.AsSpan(checked(r0 * n)));
            part.EmbeddingsOut?.AsSpan(0, count * n).CopyTo(eOut.AsSpan(checked(r0 * n)));
            part.Bias?.AsSpan(0, count).CopyTo(bias.AsSpan(r0));
        });
        return new HypernetOutput(eIn, eOut, bias);
    }

    /// <summary>As <see cref="PredictAll"/>, into native matrices with 64-bit sizes (any
    /// rows × n_embd, past 2^31 elements); the caller disposes the result.</summary>
    public static PredictedRows PredictRows(HypernetPredictor predictor,
        ReadOnlySpan<int> surfaceForms, int rows, int langIndex, Action<int>? progress = null)
    {
        Check(predictor, surfaceForms, rows);
        HypernetConfig config = predictor.Config;
        int n = config.NEmbd;
        var result = new PredictedRows(new NativeMatrix(rows, n, "embeddings_in"),
            config.SeparateOutEmbeddings ? new NativeMatrix(rows, n, "embeddings_out") : null,
            config.PredictBias ? new float[rows] : null);
        try
        {
            Stream(predictor, surfaceForms, rows, langIndex, progress, (r0, count, part) =>
            {
                part.EmbeddingsIn.AsSpan(0, count * n).CopyTo(result.EmbeddingsIn.Slice((long)r0 * n, count * n));
                part.EmbeddingsOut?.AsSpan(0, count * n).CopyTo(
                    result.EmbeddingsOut!.Slice((long)r0 * n, count * n));
                part.Bias?.AsSpan(0, count).CopyTo(result.Bias.AsSpan(r0));
            });
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    private static void Check(HypernetPredictor predictor, ReadOnlySpan<int> surfaceForms, int rows)
    {
        ArgumentNullException.ThrowIfNull(predictor);
        int l = predictor.Config.SurfaceMaxLen;
        if (rows < 0 || surfaceForms.Length != (long)rows * l)
        {
            throw new ArgumentException($"surface forms hold {surfaceForms.Length} ids, expected "
                + $"rows·L = {rows}·{l}", nameof(surfaceForms));
        }
    }

    private delegate void BatchSink(int firstRow, int count, HypernetOutput part);

    private static void Stream(HypernetPredictor predictor, ReadOnlySpan<int> surfaceForms, int rows,
        int langIndex, Action<int>? progress, BatchSink sink)
    {
        int l = predictor.Config.SurfaceMaxLen;
        int batch = Math.Max(1, predictor.MaxBatchSize);
        for (int r0 = 0; r0 < rows; r0 += batch)
        {
            int count = Math.Min(batch, rows - r0);
            HypernetOutput part = predictor.Predict(
                surfaceForms.Slice(checked(r0 * l), count * l), count, langIndex);
            sink(r0, count, part);
            progress?.Invoke(r0 + count);
        }
    }
}

/// <summary>Predicted embeddings in native memory (64-bit sizes); disposing frees them.</summary>
/// <param name="EmbeddingsIn">[N, n_embd] input embeddings.</param>
/// <param name="EmbeddingsOut">[N, n_embd] output embeddings (untied), or null.</param>
/// <param name="Bias">[N] output bias, or null.</param>
public sealed record PredictedRows(NativeMatrix EmbeddingsIn, NativeMatrix? EmbeddingsOut, float[]? Bias)
    : IDisposable
{
    /// <inheritdoc />
    public void Dispose()
    {
        EmbeddingsIn.Dispose();
        EmbeddingsOut?.Dispose();
    }
}
