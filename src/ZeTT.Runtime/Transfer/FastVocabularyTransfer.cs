using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Tensors;
using ZeTT.Runtime.Tokenizers;

namespace ZeTT.Runtime.Transfer;

/// <summary>New embeddings made by <see cref="FastVocabularyTransfer"/>, row-major in native
/// memory (64-bit sizes); disposing frees them.</summary>
/// <param name="EmbeddingsIn">[N, D] input embeddings.</param>
/// <param name="EmbeddingsOut">[N, D] output embeddings (untied models), or null.</param>
/// <param name="Bias">[N] output bias (models that have one), or null.</param>
/// <param name="Copied">Tokens found verbatim in the source vocabulary (rows copied).</param>
/// <param name="Averaged">Tokens whose row is the mean of their pieces' rows.</param>
/// <param name="Fallback">Tokens with no usable piece (row = mean of all source rows).</param>
public sealed record FvtEmbeddings(NativeMatrix EmbeddingsIn, NativeMatrix? EmbeddingsOut, float[]? Bias,
    int Copied, int Averaged, int Fallback) : IDisposable
{
    /// <inheritdoc />
    public void Dispose()
    {
        EmbeddingsIn.Dispose();
        EmbeddingsOut?.Dispose();
    }
}

/// <summary>
/// Fast vocabulary transfer, the standard baseline of tokenizer transfer. For every target
/// token (a byte-level string):
/// <list type="bullet">
/// <item>if the source tokenizer converted to byte level has the same string with an id below
/// the source vocabulary size, the source row is copied exactly;</item>
/// <item>otherwise the string is split by the source tokenizer's model alone (no normalizer, no
/// pre-tokenizer, no truncation) and the row is the mean of the pieces' source rows; pieces
/// with ids at or above the source vocabulary size (symbols the conversion appended) are
/// ignored;</item>
/// <item>a token with no usable piece (or that is not a byte-level string) gets the mean of all
/// source rows.</item>
/// </list>
/// Output embeddings and the output bias, where the model has them, are made the same way from
/// the source output rows and bias. Means are accumulated in double.
/// </summary>
public static class FastVocabularyTransfer
{
    /// <summary>Computes the new rows for <paramref name="targetTokens"/>.</summary>
    /// <param name="targetTokens">Byte-level target tokens, by new id.</param>
    /// <param name="sourceByteLevel">The model's tokenizer converted to byte level.</param>
    /// <param name="sourceIn">[V, D] source input embeddings (e.g. read from the memory map).</param>
    /// <param name="sourceOut">[V, D] source output embeddings (untied), or null.</param>
    /// <param name="sourceBias">[V] source output bias, or null.</param>
    /// <param name="progress">Called with the number of tokens done.</param>
    /// <exception cref="ZettException">A source row holds a NaN or infinite value.</exception>
    public static FvtEmbeddings Compute(IReadOnlyList<string> targetTokens, HfTokenizer sourceByteLevel,
        IFloatRows sourceIn, IFloatRows? sourceOut, HostTensor? sourceBias, Action<int>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(targetTokens);
        ArgumentNullException.ThrowIfNull(sourceByteLevel);
        ArgumentNullException.ThrowIfNull(sourceIn);
        if (sourceIn.Rows > int.MaxValue)
        {
            throw new ArgumentException($"'{sourceIn.Name}' has {sourceIn.Rows} rows; token ids "
                + "are below 2^31", nameof(sourceIn));
        }
        int v = (int)sourceIn.Rows, d = sourceIn.Cols, n = targetTokens.Count;
        if (sourceOut is not null && (sourceOut.Rows != v || sourceOut.Cols != d))
        {
            throw new ArgumentException("source output embeddings must have the input's shape",
                nameof(sourceOut));
        }
        if (sourceBias is not null && (sourceBias.Rank != 1 || sourceBias.Shape[0] != v))
        {
            throw new ArgumentException("source bias must have one value per source row",
                nameof(sourceBias));
        }
        float[] meanIn = ColumnMean(sourceIn);
        float[]? meanOut = sourceOut is null ? null : ColumnMean(sourceOut);
        float meanBias = sourceBias is null ? 0 : (float)sourceBias.Data.Average(x => (double)x);
        var eIn = new NativeMatrix(n, d, sourceIn.Name);
        NativeMatrix? eOut = null;
        try
        {
            eOut = sourceOut is null ? null : new NativeMatrix(n, d, sourceOut.Name);
            float[]? bias = sourceBias is null ? null : new float[n];
            int copied = 0, averaged = 0, fallback = 0, done = 0;
            const int Block = 2048;
            Parallel.For(0, (n + Block - 1) / Block,
                () => (Pieces: new List<int>(32), Acc: new double[d], Row: new float[d]),
                (b, _, local) =>
                {
                    int end = Math.Min(n, (b + 1) * Block);
                    int c = 0, f = 0;
                    for (int row = b * Block; row < end; row++)
                    {
                        string token = targetTokens[row];
                        List<int> pieces = local.Pieces;
                        pieces.Clear();
                        if (sourceByteLevel.TokenToId(token) is int id && id < v)
                        {
                            pieces.Add(id);
                            c++;
                        }
                        else if (ByteLevelAlphabet.IsByteLevel(token))
                        {
                            sourceByteLevel.TokenizeRawModel(token, pieces);
                            pieces.RemoveAll(p => p < 0 || p >= v);
                        }
                        if (pieces.Count == 0)
                        {
                            f++;
                            meanIn.CopyTo(eIn.Row(row));
                            meanOut?.CopyTo(eOut!.Row(row));
                            if (bias is not null)
                            {
                                bias[row] = meanBias;
                            }
                            continue;
                        }
                        Mean(sourceIn, pieces, local.Acc, local.Row, eIn.Row(row));
                        if (sourceOut is not null)
                        {
                            Mean(sourceOut, pieces, local.Acc, local.Row, eOut!.Row(row));
                        }
                        if (bias is not null)
                        {
                            double s = 0;
                            foreach (int p in pieces)
                            {
                                s += sourceBias!.Data[p];
                            }
                            bias[row] = (float)(s / pieces.Count);
                        }
                    }
                    int a = end - b * Block - c - f;
                    Interlocked.Add(ref copied, c);
                    Interlocked.Add(ref averaged, a);
                    Interlocked.Add(ref fallback, f);
                    progress?.Invoke(Interlocked.Add(ref done, end - b * Block));
                    return local;
                }, _ => { });
            return new FvtEmbeddings(eIn, eOut, bias, copied, averaged, fallback);
        }
        catch
        {
            eIn.Dispose();
            eOut?.Dispose();
            throw;
        }
    }

    private static void Mean(IFloatRows source, List<int> pieces, double[] acc, float[] row,
        Span<float> dst)
    {
        if (pieces.Count == 1)
        {
            source.ReadRows(pieces[0], 1, dst);
            return;
        }
        Array.Clear(acc);
        foreach (int p in pieces)
        {
            source.ReadRows(p, 1, row);
            for (int j = 0; j < row.Length; j++)
            {
                acc[j] += row[j];
            }
        }
        for (int j = 0; j < dst.Length; j++)
        {
            dst[j] = (float)(acc[j] / pieces.Count);
        }
    }

    /// <summary>The mean over rows of a [rows, cols] matrix, accumulated in double block by
    /// block in parallel and the blocks summed in order (deterministic). Every row is checked
    /// to be finite: a NaN or infinity would be copied into every prediction made from it.</summary>
    /// <exception cref="ZettException">A row holds a NaN or infinite value (the first such
    /// row is named).</exception>
    internal static float[] ColumnMean(IFloatRows m)
    {
        int cols = m.Cols, block = FloatRows.BlockRows(cols);
        int blocks = (int)((m.Rows + block - 1) / block);
        var partial = new double[blocks][];
        long firstBad = long.MaxValue;
        // One block buffer per core: page faults on the memory map block workers, and an
        // unbounded pool would grow a buffer per injected thread.
        var cores = new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount };
        Parallel.For(0, blocks, cores, () => new float[(long)block * cols], (b, _, buffer) =>
        {
            long r0 = (long)b * block;
            int count = (int)Math.Min(block, m.Rows - r0);
            m.ReadRows(r0, count, buffer);
            var acc = new double[cols];
            for (int r = 0; r < count; r++)
            {
                ReadOnlySpan<float> row = buffer.AsSpan(r * cols, cols);
                if (!float.IsFinite(System.Numerics.Tensors.TensorPrimitives.Sum(row)) && !AllFinite(row))
                {
                    InterlockedMin(ref firstBad, r0 + r);
                    break;
                }
                for (int j = 0; j < cols; j++)
                {
                    acc[j] += row[j];
                }
            }
            partial[b] = acc;
            return buffer;
        }, _ => { });
        if (firstBad != long.MaxValue)
        {
            string file = m is SafetensorsRows s ? s.FilePath : m.Name;
            throw new ZettException($"{file}: tensor '{m.Name}': row {firstBad} holds a NaN or "
                + "infinite value (values must be finite)");
        }
        var total = new double[cols];
        foreach (double[] acc in partial)
        {
            for (int j = 0; j < cols; j++)
            {
                total[j] += acc[j];
            }
        }
        var mean = new float[cols];
        for (int j = 0; j < cols; j++)
        {
            mean[j] = m.Rows > 0 ? (float)(total[j] / m.Rows) : 0f;
        }
        return mean;
    }

    private static bool AllFinite(ReadOnlySpan<float> values)
    {
        foreach (float x in values)
        {
            if (!float.IsFinite(x))
            {
                return false;
            }
        }
        return true;
    }

    private static void InterlockedMin(ref long target, long value)
    {
        long seen = Volatile.Read(ref target);
        while (value < seen)
        {
            long was = Interlocked.CompareExchange(ref target, value, seen);
            if (was == seen)
            {
                return;
            }
            seen = was;
        }
    }
}
