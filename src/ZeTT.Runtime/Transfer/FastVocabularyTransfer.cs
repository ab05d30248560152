using ZeTT.Runtime.Tensors;
using ZeTT.Runtime.Tokenizers;

namespace ZeTT.Runtime.Transfer;

/// <summary>New embeddings made by <see cref="FastVocabularyTransfer"/>, row-major.</summary>
/// <param name="EmbeddingsIn">[N, D] input embeddings.</param>
/// <param name="EmbeddingsOut">[N, D] output embeddings (untied models), or null.</param>
/// <param name="Bias">[N] output bias (models that have one), or null.</param>
/// <param name="Copied">Tokens found verbatim in the source vocabulary (rows copied).</param>
/// <param name="Averaged">Tokens whose row is the mean of their pieces' rows.</param>
/// <param name="Fallback">Tokens with no usable piece (row = mean of all source rows).</param>
public sealed record FvtEmbeddings(float[] EmbeddingsIn, float[]? EmbeddingsOut, float[]? Bias,
    int Copied, int Averaged, int Fallback);

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
    /// <param name="sourceIn">[V, D] source input embeddings.</param>
    /// <param name="sourceOut">[V, D] source output embeddings (untied), or null.</param>
    /// <param name="sourceBias">[V] source output bias, or null.</param>
    /// <param name="progress">Called with the number of tokens done.</param>
    public static FvtEmbeddings Compute(IReadOnlyList<string> targetTokens, HfTokenizer sourceByteLevel,
        HostTensor sourceIn, HostTensor? sourceOut, HostTensor? sourceBias, Action<int>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(targetTokens);
        ArgumentNullException.ThrowIfNull(sourceByteLevel);
        ArgumentNullException.ThrowIfNull(sourceIn);
        int v = sourceIn.Shape[0], d = sourceIn.Shape[1], n = targetTokens.Count;
        if (sourceOut is not null && (sourceOut.Shape[0] != v || sourceOut.Shape[1] != d))
        {
            throw new ArgumentException("source output embeddings must have the input's shape",
                nameof(sourceOut));
        }
        if (sourceBias is not null && (sourceBias.Rank != 1 || sourceBias.Shape[0] != v))
        {
            throw new ArgumentException("source bias must have one value per source row",
                nameof(sourceBias));
        }
        var eIn = new float[(long)n * d];
        float[]? eOut = sourceOut is null ? null : new float[(long)n * d];
        float[]? bias = sourceBias is null ? null : new float[n];
        float[] meanIn = ColumnMean(sourceIn.Data, v, d);
        float[]? meanOut = sourceOut is null ? null : ColumnMean(sourceOut.Data, v, d);
        float meanBias = sourceBias is null ? 0 : ColumnMean(sourceBias.Data, v, 1)[0];

        int copied = 0, averaged = 0, fallback = 0, done = 0;
        const int Block = 2048;
        Parallel.For(0, (n + Block - 1) / Block, () => (Pieces: new List<int>(32), Acc: new double[d]),
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
                        meanIn.CopyTo(eIn.AsSpan((int)((long)row * d), d));
                        meanOut?.CopyTo(eOut.AsSpan((int)((long)row * d), d));
                        if (bias is not null)
                        {
                            bias[row] = meanBias;
                        }
                        continue;
                    }
                    Mean(sourceIn.Data, d, pieces, local.Acc, eIn.AsSpan((int)((long)row * d), d));
                    if (sourceOut is not null)
                    {
                        Mean(sourceOut.Data, d, pieces, local.Acc, eOut.AsSpan((int)((long)row * d), d));
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

    private static void Mean(float[] source, int d, List<int> pieces, double[] acc, Span<float> dst)
    {
        if (pieces.Count == 1)
        {
            source.AsSpan((int)((long)pieces[0] * d), d).CopyTo(dst);
            return;
        }
        Array.Clear(acc);
        foreach (int p in pieces)
        {
            ReadOnlySpan<float> row = source.AsSpan((int)((long)p * d), d);
            for (int j = 0; j < d; j++)
            {
                acc[j] += row[j];
            }
        }
        for (int j = 0; j < d; j++)
        {
            dst[j] = (float)(acc[j] / pieces.Count);
        }
    }

    /// <summary>The mean over rows of a [rows, cols] matrix.</summary>
    private static float[] ColumnMean(float[] data, int rows, int cols)
    {
        var acc = new double[cols];
        for (int r = 0; r < rows; r++)
        {
            ReadOnlySpan<float> row = data.AsSpan((int)((long)r * cols), cols);
            for (int j = 0; j < cols; j++)
            {
                acc[j] += row[j];
            }
        }
        var mean = new float[cols];
        for (int j = 0; j < cols; j++)
        {
            mean[j] = rows > 0 ? (float)(acc[j] / rows) : 0f;
        }
        return mean;
    }
}
