namespace ZeTT.Runtime.Tensors;

/// <summary>
/// A dense, row-major fp32 tensor in host memory. This is the currency between the formats
/// layer (which widens any float dtype on load) and the compute backends.
/// </summary>
public sealed class HostTensor : IFloatRows
{
    /// <summary>Creates a tensor over <paramref name="data"/>, whose length must equal the
    /// product of <paramref name="shape"/>.</summary>
    public HostTensor(string name, int[] shape, float[] data)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(data);
        long count = 1;
        foreach (int d in shape)
        {
            if (d < 0)
            {
                throw new ArgumentException($"tensor '{name}': negative dimension in shape "
                    + $"{ShapeToString(shape)}", nameof(shape));
            }
            count *= d;
        }
        if (count != data.LongLength)
        {
            throw new ArgumentException($"tensor '{name}': shape {ShapeToString(shape)} holds "
                + $"{count} elements but {data.LongLength} were given", nameof(data));
        }
        Name = name;
        Shape = shape;
        _data = data;
    }

    /// <summary>The tensor's name (parameter name in its checkpoint).</summary>
    public string Name { get; }

    /// <summary>Dimensions, outermost first.</summary>
    public int[] Shape { get; }

    private float[] _data;

    /// <summary>Elements in row-major order.</summary>
    /// <exception cref="InvalidOperationException">The data was released
    /// (<see cref="Release"/>).</exception>
    public float[] Data => Released
        ? throw new InvalidOperationException($"tensor '{Name}': its data was released after a "
            + "backend took a packed copy of it")
        : _data;

    /// <summary>True once <see cref="Release"/> dropped the data.</summary>
    public bool Released { get; private set; }

    /// <summary>Drops the data so that the memory can be reclaimed (shape and name stay):
    /// for an owner that has made its own copy, e.g. a backend packing GEMM weights.</summary>
    public void Release()
    {
        Released = true;
        _data = [];
    }

    /// <summary>Number of dimensions.</summary>
    public int Rank => Shape.Length;

    /// <summary>Rows as an <see cref="IFloatRows"/>: the first dimension (1 for a scalar).</summary>
    long IFloatRows.Rows => Shape.Length == 0 ? 1 : Shape[0];

    /// <summary>Elements per row as an <see cref="IFloatRows"/>: the product of the other
    /// dimensions.</summary>
    int IFloatRows.Cols
    {
        get
        {
            int cols = 1;
            for (int i = 1; i < Shape.Length; i++)
            {
                cols *= Shape[i];
            }
            return cols;
        }
    }

    /// <inheritdoc />
    public void ReadRows(long first, int count, Span<float> destination)
    {
        IFloatRows m = this;
        FloatRows.CheckRange(m, first, count, destination.Length);
        Data.AsSpan((int)(first * m.Cols), count * m.Cols).CopyTo(destination);
    }

    /// <summary>Throws, naming <paramref name="file"/>, the tensor and the row, when a value is
    /// NaN or infinite: such a value would be copied into every output computed from it.
    /// Returns the tensor.</summary>
    public HostTensor RequireFinite(string file)
    {
        ReadOnlySpan<float> data = Data;
        // The sum is finite whenever every value is (a finite sum that overflows is caught by
        // the exact scan below, which then finds nothing): one vectorised pass over clean data.
        if (float.IsFinite(System.Numerics.Tensors.TensorPrimitives.Sum(data)))
        {
            return this;
        }
        int at = 0;
        while (at < data.Length && float.IsFinite(data[at]))
        {
            at++;
        }
        if (at == data.Length)
        {
            return this;
        }
        long width = Shape.Length >= 2 ? data.Length / Math.Max(1, Shape[0]) : 1;
        string where = Shape.Length >= 2 ? $"row {at / width}, column {at % width}" : $"element {at}";
        throw new ZettException($"{file}: tensor '{Name}': {where} is {data[at]} (values must be "
            + "finite)");
    }

    /// <summary>Renders a shape as <c>[a, b, c]</c> for error messages.</summary>
    public static string ShapeToString(IEnumerable<int> shape) => "[" + string.Join(", ", shape) + "]";

    /// <summary>Renders a shape as <c>[a, b, c]</c> for error messages.</summary>
    public static string ShapeToString(IEnumerable<long> shape) =>
        "[" + string.Join(", ", shape) + "]";

    /// <inheritdoc />
    public override string ToString() => $"{Name} F32 {ShapeToString(Shape)}";
}
