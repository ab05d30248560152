using System.Collections.Concurrent;

namespace ZeTT.Runtime.Tokenizers;

/// <summary>
/// The hypernetwork's input (ZETT.md §2): for every target token, the ids that the hn
/// tokenizer's model alone (no normalizer, no pre-tokenizer) gives its byte-level string,
/// truncated to <see cref="MaxLen"/> and right-padded with the hn tokenizer's pad id (its eos id
/// if it has no pad token). A target token that is one of the hn tokenizer's special tokens is
/// just that token's id. Row-major int32 <c>[Rows, MaxLen]</c>.
/// </summary>
public sealed class SurfaceFormMatrix
{
    private SurfaceFormMatrix(int[] ids, int rows, int maxLen, int truncatedCount, int padId)
    {
        Ids = ids;
        Rows = rows;
        MaxLen = maxLen;
        TruncatedCount = truncatedCount;
        PadId = padId;
    }

    /// <summary>The matrix, row-major <c>[Rows, MaxLen]</c>.</summary>
    public int[] Ids { get; }

    /// <summary>Number of target tokens.</summary>
    public int Rows { get; }

    /// <summary>Surface-form length (the hypernetwork's <c>hn_surface_maxlen</c>).</summary>
    public int MaxLen { get; }

    /// <summary>How many tokens had more than <see cref="MaxLen"/> ids and were cut.</summary>
    public int TruncatedCount { get; }

    /// <summary>The padding id used.</summary>
    public int PadId { get; }

    /// <summary>One row.</summary>
    public ReadOnlySpan<int> Row(int row) => Ids.AsSpan(row * MaxLen, MaxLen);

    /// <summary>Surface forms of every token of <paramref name="targetByteLevel"/> (ids 0 to
    /// <c>VocabSize − 1</c>), which must already be byte level (see
    /// <see cref="ByteLevelConverter"/>).</summary>
    public static SurfaceFormMatrix Build(HfTokenizer targetByteLevel, HfTokenizer hnByteLevel,
        int maxLen)
    {
        ArgumentNullException.ThrowIfNull(targetByteLevel);
        var tokens = new string[targetByteLevel.VocabSize];
        for (int id = 0; id < tokens.Length; id++)
        {
            tokens[id] = targetByteLevel.TryIdToToken(id) ?? throw new ZettException(
                $"{targetByteLevel.Source}: no token has id {id} (of {tokens.Length})");
        }
        return BuildForTokens(tokens, hnByteLevel, maxLen);
    }

    /// <summary>Surface forms of byte-level strings.</summary>
    public static SurfaceFormMatrix BuildForTokens(IReadOnlyList<string> byteLevelTokens,
        HfTokenizer hnByteLevel, int maxLen)
    {
        ArgumentNullException.ThrowIfNull(byteLevelTokens);
        ArgumentNullException.ThrowIfNull(hnByteLevel);
        if (maxLen < 1)
        {
            throw new ZettException($"surface-form length must be at least 1, got {maxLen}");
        }
        int padId = hnByteLevel.PadTokenId ?? hnByteLevel.EosTokenId ?? throw new ZettException(
            $"{hnByteLevel.Source}: the hn tokenizer has neither a pad nor an eos token");
        var special = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach ((string token, int id) in hnByteLevel.AllSpecialTokens)
        {
            special.TryAdd(token, id);
        }

        int rows = byteLevelTokens.Count;
        var ids = new int[checked(rows * maxLen)];
        Array.Fill(ids, padId);
        int truncated = 0;
        OrderablePartitioner<Tuple<int, int>> ranges =
            Partitioner.Create(0, rows, Math.Max(1024, rows / (4 * Environment.ProcessorCount) + 1));
        try
        {
            Fill(ranges);
        }
        catch (AggregateException e) when (e.InnerExceptions.Count > 0
            && e.InnerExceptions[0] is ZettException z)
        {
            throw new ZettException(z.Message, e);
        }
        return new SurfaceFormMatrix(ids, rows, maxLen, truncated, padId);

        void Fill(OrderablePartitioner<Tuple<int, int>> ranges) => Parallel.ForEach(ranges, () => (Buffer: new List<int>(64), Truncated: 0),
            (range, _, local) =>
            {
                for (int row = range.Item1; row < range.Item2; row++)
                {
                    string token = byteLevelTokens[row];
                    Span<int> dst = ids.AsSpan(row * maxLen, maxLen);
                    if (special.TryGetValue(token, out int specialId))
                    {
                        dst[0] = specialId;
                        continue;
                    }
                    if (!ByteLevelAlphabet.IsByteLevel(token))
                    {
                        throw new ZettException(
                            $"target token {row} '{token}' is not a byte-level string (convert the " +
                            "target tokenizer to byte level first)");
                    }
                    local.Buffer.Clear();
                    hnByteLevel.TokenizeRawModel(token, local.Buffer);
                    int n = local.Buffer.Count;
                    if (n > maxLen)
                    {
                        n = maxLen;
                        local.Truncated++;
                    }
                    for (int k = 0; k < n; k++)
                    {
                        dst[k] = local.Buffer[k];
                    }
                }
                return local;
            },
            local => Interlocked.Add(ref truncated, local.Truncated));
    }
}
