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
        Stream(predictor, surfaceForms, rows, langIndex, progress, new ArrayTarget(eIn, eOut, bias, n));
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
            Stream(predictor, surfaceForms, rows, langIndex, progress, new MatrixTarget(result, n));
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

    /// <summary>Where a batch's rows go: spans of the result for rows r0 … r0 + count.</summary>
    private abstract class Target
    {
        public abstract Span<float> In(int r0, int count);

        public abstract Span<float> Out(int r0, int count);

        public abstract Span<float> Bias(int r0, int count);
    }

    private sealed class ArrayTarget(float[] eIn, float[]? eOut, float[]? bias, int n) : Target
    {
        public override Span<float> In(int r0, int count) => eIn.AsSpan(checked(r0 * n), count * n);

        public override Span<float> Out(int r0, int count) =>
            eOut is null ? [] : eOut.AsSpan(checked(r0 * n), count * n);

        public override Span<float> Bias(int r0, int count) =>
            bias is null ? [] : bias.AsSpan(r0, count);
    }

    private sealed class MatrixTarget(PredictedRows result, int n) : Target
    {
        public override Span<float> In(int r0, int count) =>
            result.EmbeddingsIn.Slice((long)r0 * n, count * n);

        public override Span<float> Out(int r0, int count) =>
            result.EmbeddingsOut is null ? [] : result.EmbeddingsOut.Slice((long)r0 * n, count * n);

        public override Span<float> Bias(int r0, int count) =>
            result.Bias is null ? [] : result.Bias.AsSpan(r0, count);
    }

    /// <summary>The batches in order, one queued ahead of the one being collected: batch i + 1
    /// is submitted before batch i's results are awaited, so on CUDA the device computes the
    /// next batch while the host takes the previous one's results.</summary>
    private static void Stream(HypernetPredictor predictor, ReadOnlySpan<int> surfaceForms, int rows,
        int langIndex, Action<int>? progress, Target target)
    {
        int l = predictor.Config.SurfaceMaxLen;
        int batch = Math.Max(1, predictor.MaxBatchSize);
        HypernetSubmission? ahead = null;
        int aheadRow = 0;
        try
        {
            for (int r0 = 0; r0 < rows || ahead is not null; r0 += batch)
            {
                HypernetSubmission? next = null;
                if (r0 < rows)
                {
                    int count = Math.Min(batch, rows - r0);
                    next = predictor.Submit(surfaceForms.Slice(checked(r0 * l), count * l), count,
                        langIndex);
                }
                (HypernetSubmission? previous, int previousRow) = (ahead, aheadRow);
                (ahead, aheadRow) = (next, r0);
                if (previous is not null)
                {
                    using (previous)
                    {
                        int done = previous.Rows;
                        previous.Complete(target.In(previousRow, done),
                            target.Out(previousRow, done), target.Bias(previousRow, done));
                    }
                    progress?.Invoke(previousRow + previous.Rows);
                }
            }
        }
        finally
        {
            ahead?.Dispose();
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
