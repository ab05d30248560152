namespace ZeTT.Runtime.Hypernetwork;

/// <summary>
/// Padding skipping, shared by the CPU and CUDA backends: which positions of a surface form are
/// computed, and (for the CUDA backend and its CPU twin forward) the packed token layout of a
/// batch.
/// </summary>
internal static class HypernetPacking
{
    /// <summary>Surface-form positions a row needs: up to its last non-padding id. Padding after
    /// it is masked as a key and its own outputs are never read, so it is skipped; padding
    /// between real ids stays (computed and masked, as in the reference). A row of padding
    /// only keeps position 0 when the language position is there to attend to; without it every
    /// key is masked and the row attends uniformly over all L positions, so all are kept.
    /// hn_concat_last_hidden_state reads every position, so nothing is skipped there; neither
    /// is anything when <paramref name="skipPadding"/> is false (the unpacked layout).</summary>
    public static int Positions(ReadOnlySpan<int> row, HypernetConfig config, bool skipPadding)
    {
        int l = config.SurfaceMaxLen;
        if (!skipPadding || config.ConcatLastHiddenState)
        {
            return l;
        }
        int last = row.LastIndexOfAnyExcept(config.PadTokenId);
        return last >= 0 ? last + 1 : config.SequenceLength > l ? 1 : l;
    }

    /// <summary>Ints <see cref="Pack"/> may write for <paramref name="rows"/> rows (all rows
    /// full).</summary>
    public static long Capacity(HypernetConfig config, int rows) =>
        ((long)rows * config.SurfaceMaxLen) + (3L * rows * config.SequenceLength) + rows + 1;

    /// <summary>
    /// Packs a batch [rows, L] into <paramref name="dest"/>, contiguous, in this order:
    /// surface ids [Ts] (the computed positions of every row, row after row); then, for the
    /// T sequence tokens (each row's computed positions followed by its language position when
    /// the model has one): source [T] (index of the token's surface id, or -1 for the language
    /// position), position [T] (its index p in the row; L for the language position), ids [T]
    /// (its surface id; the pad id for the language position, which the source -1 marks as
    /// always attended); then row starts [rows + 1] (row r's tokens are rowStart[r] ..
    /// rowStart[r+1]).
    /// </summary>
    public static PackedSizes Pack(ReadOnlySpan<int> ids, int rows, HypernetConfig config,
        bool skipPadding, Span<int> dest)
    {
        int l = config.SurfaceMaxLen, extra = config.SequenceLength - l;
        int surface = 0;
        for (int r = 0; r < rows; r++)
        {
            surface += Positions(ids.Slice(r * l, l), config, skipPadding);
        }
        int tokens = surface + (rows * extra);
        Span<int> surfaceIds = dest[..surface];
        Span<int> source = dest.Slice(surface, tokens);
        Span<int> position = dest.Slice(surface + tokens, tokens);
        Span<int> seqIds = dest.Slice(surface + (2 * tokens), tokens);
        Span<int> rowStart = dest.Slice(surface + (3 * tokens), rows + 1);
        int s = 0, t = 0;
        for (int r = 0; r < rows; r++)
        {
            ReadOnlySpan<int> row = ids.Slice(r * l, l);
            int n = Positions(row, config, skipPadding);
            rowStart[r] = t;
            for (int p = 0; p < n; p++, s++, t++)
            {
                surfaceIds[s] = row[p];
                source[t] = s;
                position[t] = p;
                seqIds[t] = row[p];
            }
            if (extra > 0)
            {
                source[t] = -1;
                position[t] = l;
                seqIds[t] = config.PadTokenId;
                t++;
            }
        }
        rowStart[rows] = t;
        return new PackedSizes(surface, tokens, rows);
    }
}

/// <summary>Sizes of a packed batch: <see cref="SurfaceTokens"/> surface ids, <see cref="Tokens"/>
/// sequence tokens, <see cref="Rows"/> rows; the segment offsets of
/// <see cref="HypernetPacking.Pack"/>'s output follow from them.</summary>
internal readonly record struct PackedSizes(int SurfaceTokens, int Tokens, int Rows)
{
    public int SourceOffset => SurfaceTokens;
    public int PositionOffset => SurfaceTokens + Tokens;
    public int IdsOffset => SurfaceTokens + (2 * Tokens);
    public int RowStartOffset => SurfaceTokens + (3 * Tokens);
    public int Total => RowStartOffset + Rows + 1;
}
