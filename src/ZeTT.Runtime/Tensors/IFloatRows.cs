namespace ZeTT.Runtime.Tensors;

/// <summary>
/// A read-only [rows, cols] fp32 matrix read by rows, with 64-bit row indices: what the
/// transfer path hands between reading, computing and writing embeddings, so that a matrix
/// past 2^31 elements (a 256k vocabulary at hidden size 8192) never needs one host array. It is
/// implemented over a <see cref="HostTensor"/>, a <see cref="NativeMatrix"/> and a memory-mapped
/// safetensors tensor in its stored dtype (<see cref="Formats.SafetensorsRows"/>).
/// </summary>
public interface IFloatRows
{
    /// <summary>A name for messages (the tensor's name).</summary>
    string Name { get; }

    /// <summary>Number of rows.</summary>
    long Rows { get; }

    /// <summary>Elements per row.</summary>
    int Cols { get; }

    /// <summary>Copies <paramref name="count"/> whole rows from row <paramref name="first"/>
    /// into <paramref name="destination"/> (length ≥ count·cols), widened to fp32.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The rows leave the matrix or the
    /// destination is too short.</exception>
    void ReadRows(long first, int count, Span<float> destination);
}

/// <summary>Helpers over <see cref="IFloatRows"/>.</summary>
public static class FloatRows
{
    /// <summary>Rows per block when a whole matrix is streamed: about 2^22 elements (16 MB of
    /// fp32), at least one row.</summary>
    public static int BlockRows(int cols) => (int)Math.Max(1, (1 << 22) / Math.Max(1, cols));

    /// <summary>Throws unless rows [first, first + count) lie in <paramref name="m"/> and a
    /// destination of <paramref name="destination"/> elements holds them.</summary>
    public static void CheckRange(IFloatRows m, long first, int count, int destination)
    {
        ArgumentNullException.ThrowIfNull(m);
        if (first < 0 || count < 0 || first > m.Rows - count)
        {
            throw new ArgumentOutOfRangeException(nameof(first),
                $"rows [{first}, {first + count}) are outside '{m.Name}' of {m.Rows} rows");
        }
        if ((long)count * m.Cols > destination)
        {
            throw new ArgumentOutOfRangeException(nameof(destination),
                $"{count} rows of {m.Cols} need {(long)count * m.Cols} elements, the destination "
                + $"holds {destination}");
        }
    }

    /// <summary>Copies the whole matrix into <paramref name="destination"/>, rows in order,
    /// block by block (the destination may be a <see cref="NativeMatrix"/> of the same
    /// shape).</summary>
    public static void CopyTo(this IFloatRows source, NativeMatrix destination)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(destination);
        if (destination.Rows != source.Rows || destination.Cols != source.Cols)
        {
            throw new ArgumentException($"'{source.Name}' is [{source.Rows}, {source.Cols}], the "
                + $"destination [{destination.Rows}, {destination.Cols}]", nameof(destination));
        }
        int block = BlockRows(source.Cols);
        for (long r = 0; r < source.Rows; r += block)
        {
            int n = (int)Math.Min(block, source.Rows - r);
            source.ReadRows(r, n, destination.Slice(r * source.Cols, n * source.Cols));
        }
    }
}
