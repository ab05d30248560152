namespace ZeTT.Ops;

/// <summary>
/// A typed, strided view of a <see cref="TensorStorage"/>: dtype, shape and strides (in
/// elements, outermost first, all <c>long</c>) and an element offset. Views (<see cref="View"/>,
/// <see cref="Slice"/>, <see cref="Select"/>) share the storage; the tensor that allocated it
/// (<see cref="OwnsStorage"/>) disposes it. Element access from C# exists for host tensors only
/// (tests, loading); model code hands tensors to an <see cref="IOpBackend"/> and never looks at
/// the device.
/// </summary>
public sealed unsafe class Tensor : IDisposable
{
    private Tensor(TensorStorage storage, DType dtype, long[] shape, long[] strides, long offset,
        bool ownsStorage, string? name)
    {
        Storage = storage;
        DType = dtype;
        Shape = shape;
        Strides = strides;
        Offset = offset;
        OwnsStorage = ownsStorage;
        Name = name ?? "tensor";
    }

    /// <summary>The bytes this tensor views.</summary>
    public TensorStorage Storage { get; }

    /// <summary>Element type.</summary>
    public DType DType { get; }

    /// <summary>Dimensions, outermost first.</summary>
    public long[] Shape { get; }

    /// <summary>Element strides per dimension (row-major contiguous: the last is 1).</summary>
    public long[] Strides { get; }

    /// <summary>Offset of element [0, …, 0] from the storage's start, in elements.</summary>
    public long Offset { get; }

    /// <summary>True when disposing this tensor disposes its storage.</summary>
    public bool OwnsStorage { get; }

    /// <summary>A name for error messages (the checkpoint parameter for weights).</summary>
    public string Name { get; }

    /// <summary>Where the bytes live.</summary>
    public TensorDevice Device => Storage.Device;

    /// <summary>Number of dimensions.</summary>
    public int Rank => Shape.Length;

    /// <summary>Number of elements.</summary>
    public long Count
    {
        get
        {
            long n = 1;
            foreach (long d in Shape)
            {
                n *= d;
            }
            return n;
        }
    }

    /// <summary>Bytes per element.</summary>
    public int ElementSize => DTypes.SizeOf(DType);

    /// <summary>Address of element [0, …, 0] (host or device).</summary>
    public nint Address => Storage.Address + (nint)(Offset * ElementSize);

    /// <summary>True when the elements are dense and row-major.</summary>
    public bool IsContiguous
    {
        get
        {
            long expected = 1;
            for (int i = Rank - 1; i >= 0; i--)
            {
                if (Shape[i] != 1 && Strides[i] != expected)
                {
                    return false;
                }
                expected *= Shape[i];
            }
            return true;
        }
    }

    /// <summary>Size of dimension <paramref name="dim"/> (negative counts from the end).</summary>
    public long Size(int dim) => Shape[dim < 0 ? Rank + dim : dim];

    /// <summary>Allocates a zeroed, contiguous host tensor.</summary>
    public static Tensor Host(DType dtype, params long[] shape) =>
        Host(dtype, shape, null);

    /// <summary>Allocates a zeroed, contiguous host tensor with a name.</summary>
    public static Tensor Host(DType dtype, long[] shape, string? name)
    {
        ArgumentNullException.ThrowIfNull(shape);
        long count = CheckedCount(shape, name);
        return new Tensor(new HostStorage(count * DTypes.SizeOf(dtype)), dtype, (long[])shape.Clone(),
            ContiguousStrides(shape), 0, true, name);
    }

    /// <summary>A contiguous tensor over storage created elsewhere (device memory from a
    /// backend, a memory map): <paramref name="ownsStorage"/> says whether disposing the tensor
    /// disposes the storage.</summary>
    public static Tensor Over(TensorStorage storage, DType dtype, long[] shape, bool ownsStorage,
        string? name = null)
    {
        ArgumentNullException.ThrowIfNull(storage);
        ArgumentNullException.ThrowIfNull(shape);
        long bytes = CheckedCount(shape, name) * DTypes.SizeOf(dtype);
        if (bytes > storage.ByteLength)
        {
            throw new ArgumentException($"tensor '{name ?? "tensor"}': {ShapeText(shape)} {dtype} "
                + $"needs {bytes} bytes but the storage holds {storage.ByteLength}", nameof(shape));
        }
        return new Tensor(storage, dtype, (long[])shape.Clone(), ContiguousStrides(shape), 0,
            ownsStorage, name);
    }

    /// <summary>A host F32 tensor holding a copy of <paramref name="data"/>.</summary>
    public static Tensor FromFloats(ReadOnlySpan<float> data, params long[] shape)
    {
        Tensor t = Host(DType.F32, shape);
        if (t.Count != data.Length)
        {
            throw new ArgumentException($"shape {ShapeText(shape)} holds {t.Count} elements but "
                + $"{data.Length} were given", nameof(data));
        }
        data.CopyTo(new Span<float>((void*)t.Address, data.Length));
        return t;
    }

    /// <summary>A host F64 tensor holding a copy of <paramref name="data"/>.</summary>
    public static Tensor FromDoubles(ReadOnlySpan<double> data, params long[] shape)
    {
        Tensor t = Host(DType.F64, shape);
        if (t.Count != data.Length)
        {
            throw new ArgumentException($"shape {ShapeText(shape)} holds {t.Count} elements but "
                + $"{data.Length} were given", nameof(data));
        }
        data.CopyTo(new Span<double>((void*)t.Address, data.Length));
        return t;
    }

    /// <summary>A host I32 tensor holding a copy of <paramref name="data"/>.</summary>
    public static Tensor FromInts(ReadOnlySpan<int> data, params long[] shape)
    {
        Tensor t = Host(DType.I32, shape.Length == 0 ? [data.Length] : shape);
        if (t.Count != data.Length)
        {
            throw new ArgumentException($"shape {ShapeText(shape)} holds {t.Count} elements but "
                + $"{data.Length} were given", nameof(data));
        }
        data.CopyTo(new Span<int>((void*)t.Address, data.Length));
        return t;
    }

    /// <summary>The same elements with another shape (contiguous tensors only; one dimension
    /// may be -1).</summary>
    public Tensor View(params long[] shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        if (!IsContiguous)
        {
            throw new InvalidOperationException($"tensor '{Name}': View needs a contiguous tensor");
        }
        long[] s = (long[])shape.Clone();
        int infer = Array.IndexOf(s, -1L);
        if (infer >= 0)
        {
            long known = 1;
            for (int i = 0; i < s.Length; i++)
            {
                if (i != infer)
                {
                    known *= s[i];
                }
            }
            s[infer] = known == 0 ? 0 : Count / known;
        }
        if (CheckedCount(s, Name) != Count)
        {
            throw new ArgumentException($"tensor '{Name}': cannot view {ShapeText(Shape)} as "
                + ShapeText(shape), nameof(shape));
        }
        return new Tensor(Storage, DType, s, ContiguousStrides(s), Offset, false, Name);
    }

    /// <summary>The same view under another <paramref name="name"/> (for messages); it does
    /// not own the storage.</summary>
    public Tensor Named(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return new Tensor(Storage, DType, (long[])Shape.Clone(), (long[])Strides.Clone(), Offset,
            false, name);
    }

    /// <summary>Elements <paramref name="start"/> … <paramref name="start"/>+<paramref
    /// name="length"/>−1 of dimension <paramref name="dim"/> (a strided view).</summary>
    public Tensor Slice(int dim, long start, long length)
    {
        int d = dim < 0 ? Rank + dim : dim;
        if (start < 0 || length < 0 || start + length > Shape[d])
        {
            throw new ArgumentOutOfRangeException(nameof(start), $"tensor '{Name}': slice "
                + $"[{start}, {start + length}) of dimension {d} of size {Shape[d]}");
        }
        long[] shape = (long[])Shape.Clone();
        shape[d] = length;
        return new Tensor(Storage, DType, shape, (long[])Strides.Clone(), Offset + start * Strides[d],
            false, Name);
    }

    /// <summary>Index <paramref name="index"/> of dimension <paramref name="dim"/>, that
    /// dimension removed.</summary>
    public Tensor Select(int dim, long index)
    {
        int d = dim < 0 ? Rank + dim : dim;
        Tensor s = Slice(d, index, 1);
        long[] shape = [.. s.Shape[..d], .. s.Shape[(d + 1)..]];
        long[] strides = [.. s.Strides[..d], .. s.Strides[(d + 1)..]];
        return new Tensor(Storage, DType, shape, strides, s.Offset, false, Name);
    }

    /// <summary>A view with explicit <paramref name="shape"/> and <paramref name="strides"/>
    /// (elements), starting <paramref name="offset"/> elements after this view's first
    /// element; the caller keeps it inside the storage (checked).</summary>
    public Tensor AsStrided(long[] shape, long[] strides, long offset = 0)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(strides);
        if (shape.Length != strides.Length)
        {
            throw new ArgumentException($"tensor '{Name}': {shape.Length} dimensions but "
                + $"{strides.Length} strides", nameof(strides));
        }
        long last = Offset + offset;
        for (int d = 0; d < shape.Length; d++)
        {
            if (shape[d] == 0)
            {
                last = Offset + offset;
                break;
            }
            last += (shape[d] - 1) * strides[d];
        }
        if (Offset + offset < 0 || (last + 1) * ElementSize > Storage.ByteLength)
        {
            throw new ArgumentOutOfRangeException(nameof(shape), $"tensor '{Name}': view "
                + $"{ShapeText(shape)} with strides {ShapeText(strides)} leaves the storage");
        }
        return new Tensor(Storage, DType, (long[])shape.Clone(), (long[])strides.Clone(),
            Offset + offset, false, Name);
    }

    /// <summary>A typed span over a contiguous host tensor.</summary>
    public Span<T> AsSpan<T>() where T : unmanaged
    {
        if (Device != TensorDevice.Host)
        {
            throw new InvalidOperationException($"tensor '{Name}' is on {Device}, not the host");
        }
        if (!IsContiguous)
        {
            throw new InvalidOperationException($"tensor '{Name}' is not contiguous");
        }
        if (sizeof(T) != ElementSize)
        {
            throw new InvalidOperationException($"tensor '{Name}' is {DType}, not {typeof(T).Name}");
        }
        return new Span<T>((void*)Address, checked((int)Count));
    }

    /// <summary>The elements of a host tensor widened to float64, row-major (any layout and
    /// float dtype).</summary>
    public double[] ToDoubles()
    {
        if (Device != TensorDevice.Host)
        {
            throw new InvalidOperationException($"tensor '{Name}' is on {Device}, not the host");
        }
        var result = new double[Count];
        long[] index = new long[Rank];
        for (long i = 0; i < result.LongLength; i++)
        {
            long off = 0;
            for (int d = 0; d < Rank; d++)
            {
                off += index[d] * Strides[d];
            }
            result[i] = ReadElement((byte*)Storage.Address + (Offset + off) * ElementSize);
            for (int d = Rank - 1; d >= 0; d--)
            {
                if (++index[d] < Shape[d])
                {
                    break;
                }
                index[d] = 0;
            }
        }
        return result;
    }

    /// <summary>The elements of a host tensor as float32, row-major.</summary>
    public float[] ToFloats() => Array.ConvertAll(ToDoubles(), x => (float)x);

    private double ReadElement(byte* p) => DType switch
    {
        DType.F64 => *(double*)p,
        DType.F32 => *(float*)p,
        DType.BF16 => BFloat16.ToFloat(*(ushort*)p),
        DType.F16 => (double)*(Half*)p,
        DType.I32 => *(int*)p,
        DType.I64 => *(long*)p,
        _ => throw new NotSupportedException($"tensor '{Name}': reading {DType} elements"),
    };

    /// <summary>Row-major strides of <paramref name="shape"/>.</summary>
    public static long[] ContiguousStrides(long[] shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        var strides = new long[shape.Length];
        long s = 1;
        for (int i = shape.Length - 1; i >= 0; i--)
        {
            strides[i] = s;
            s *= shape[i];
        }
        return strides;
    }

    /// <summary>Renders a shape as <c>[a, b, c]</c>.</summary>
    public static string ShapeText(IEnumerable<long> shape) => "[" + string.Join(", ", shape) + "]";

    private static long CheckedCount(long[] shape, string? name)
    {
        long n = 1;
        foreach (long d in shape)
        {
            if (d < 0)
            {
                throw new ArgumentException($"tensor '{name ?? "tensor"}': negative dimension in "
                    + ShapeText(shape), nameof(shape));
            }
            n = checked(n * d);
        }
        return n;
    }

    /// <summary>Disposes the storage when this tensor owns it.</summary>
    public void Dispose()
    {
        if (OwnsStorage)
        {
            Storage.Dispose();
        }
    }

    /// <inheritdoc />
    public override string ToString() => $"{Name} {DType} {ShapeText(Shape)} on {Device}";
}
