using System.Runtime.InteropServices;
using ZeTT.Runtime.Formats;

namespace ZeTT.Runtime.Tensors;

/// <summary>
/// A dense, row-major fp32 matrix [rows, cols] in native memory, for matrices that a
/// <c>float[]</c> cannot hold: a 256k-vocabulary embedding with hidden size 8192 has 2^31
/// elements, past <see cref="Array.MaxLength"/>. Every size and offset is a <see cref="long"/>;
/// rows are handed out as spans (one row is at most <see cref="int.MaxValue"/> elements).
/// The memory starts zeroed and is freed by <see cref="Dispose"/>.
/// </summary>
public sealed unsafe class NativeMatrix : IFloatRows, IDisposable
{
    private float* _data;

    /// <summary>Allocates a zeroed [<paramref name="rows"/>, <paramref name="cols"/>]
    /// matrix.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A negative dimension.</exception>
    /// <exception cref="OutOfMemoryException">The allocation failed.</exception>
    public NativeMatrix(long rows, int cols, string name = "matrix")
    {
        ArgumentNullException.ThrowIfNull(name);
        Name = name;
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(cols);
        Rows = rows;
        Cols = cols;
        ElementCount = checked(rows * cols);
        // Zeroed allocations of this size come from fresh pages of the OS, so pages never
        // written stay unbacked: only the rows actually touched cost resident memory.
        _data = (float*)NativeMemory.AllocZeroed((nuint)Math.Max(1, ElementCount), sizeof(float));
    }

    /// <inheritdoc />
    public string Name { get; }

    /// <summary>Number of rows.</summary>
    public long Rows { get; }

    /// <summary>Number of columns (elements per row).</summary>
    public int Cols { get; }

    /// <summary>Rows × cols.</summary>
    public long ElementCount { get; }

    /// <summary>Row <paramref name="row"/>, valid until this matrix is disposed.</summary>
    /// <exception cref="ArgumentOutOfRangeException">No such row.</exception>
    public Span<float> Row(long row)
    {
        if ((ulong)row >= (ulong)Rows)
        {
            throw new ArgumentOutOfRangeException(nameof(row),
                $"row {row} is outside a matrix of {Rows} rows");
        }
        return new Span<float>(Base + (row * Cols), Cols);
    }

    /// <summary><paramref name="length"/> elements from element <paramref name="first"/> in
    /// row-major order (a block of whole rows, or part of one), valid until disposal.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range leaves the matrix.</exception>
    public Span<float> Slice(long first, int length)
    {
        if (first < 0 || length < 0 || first > ElementCount - length)
        {
            throw new ArgumentOutOfRangeException(nameof(first),
                $"range [{first}, {first + length}) is outside a matrix of {ElementCount} "
                + "elements");
        }
        return new Span<float>(Base + first, length);
    }

    /// <summary>Reads the 2-D float tensor <paramref name="name"/> of <paramref name="file"/>
    /// (any float dtype, widened to fp32) into a new matrix, row block by row block.</summary>
    /// <exception cref="SafetensorsException">The tensor is not a 2-D float tensor.</exception>
    public static NativeMatrix ReadFloat32(SafetensorsFile file, string name)
    {
        ArgumentNullException.ThrowIfNull(file);
        SafetensorsTensorInfo info = file.GetInfo(name);
        if (info.Shape.Length != 2 || info.Shape[1] > int.MaxValue)
        {
            throw new SafetensorsException(file.Path, name,
                $"expected a [rows, cols] tensor with cols below 2^31, found shape "
                + HostTensor.ShapeToString(info.Shape));
        }
        var matrix = new NativeMatrix(info.Shape[0], (int)info.Shape[1], name);
        try
        {
            // Blocks of whole rows of at most 2^24 elements, so that one span never nears 2^31.
            long block = Math.Max(1, (1 << 24) / Math.Max(1, matrix.Cols));
            for (long r = 0; r < matrix.Rows; r += block)
            {
                int n = (int)Math.Min(block, matrix.Rows - r);
                file.ReadFloat32(name, r * matrix.Cols, matrix.Slice(r * matrix.Cols, n * matrix.Cols));
            }
            return matrix;
        }
        catch
        {
            matrix.Dispose();
            throw;
        }
    }

    /// <inheritdoc />
    public void ReadRows(long first, int count, Span<float> destination)
    {
        FloatRows.CheckRange(this, first, count, destination.Length);
        Slice(first * Cols, count * Cols).CopyTo(destination);
    }

    private float* Base => _data != null ? _data : throw new ObjectDisposedException(nameof(NativeMatrix));

    /// <inheritdoc />
    public void Dispose()
    {
        if (_data == null)
        {
            return;
        }
        NativeMemory.Free(_data);
        _data = null;
    }
}
