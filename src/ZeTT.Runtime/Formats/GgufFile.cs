using System.Buffers.Binary;
using System.Text;

namespace ZeTT.Runtime.Formats;

/// <summary>One tensor of a GGUF file.</summary>
/// <param name="Name">Its name.</param>
/// <param name="Type">The ggml type number (see <see cref="GgmlType"/>; other numbers are kept
/// as read).</param>
/// <param name="Shape">Row-major dimensions (the file's order reversed).</param>
/// <param name="Offset">Byte offset from the start of the data section.</param>
public sealed record GgufTensorInfo(string Name, uint Type, long[] Shape, long Offset)
{
    /// <summary>Number of elements.</summary>
    public long Elements => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// Reads a GGUF file (versions 2 and 3): metadata and tensor infos, validated against the file's
/// length before anything is used (string and array lengths, tensor extents, alignment), and
/// tensors of the types zett writes read back as fp32. Errors are a <see cref="ZettException"/>
/// naming the file and what was wrong. Used by <c>zett inspect</c> and the tests; models are
/// not loaded whole.
/// </summary>
public sealed class GgufFile
{
    private readonly Dictionary<string, GgufValue> _byKey;

    private GgufFile(string path, uint version, List<KeyValuePair<string, GgufValue>> metadata,
        List<GgufTensorInfo> tensors, long dataStart, long length)
    {
        Path = path;
        Version = version;
        Metadata = metadata;
        Tensors = tensors;
        DataStart = dataStart;
        FileLength = length;
        _byKey = metadata.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
    }

    /// <summary>The file.</summary>
    public string Path { get; }

    /// <summary>Format version.</summary>
    public uint Version { get; }

    /// <summary>Metadata in file order.</summary>
    public IReadOnlyList<KeyValuePair<string, GgufValue>> Metadata { get; }

    /// <summary>Tensor infos in file order.</summary>
    public IReadOnlyList<GgufTensorInfo> Tensors { get; }

    /// <summary>Offset of the data section.</summary>
    public long DataStart { get; }

    /// <summary>File size in bytes.</summary>
    public long FileLength { get; }

    /// <summary>The value of <paramref name="key"/>, or null.</summary>
    public GgufValue? Get(string key) => _byKey.GetValueOrDefault(key);

    /// <summary>The value of <paramref name="key"/>; a missing key is an error naming it.</summary>
    public GgufValue Require(string key) => Get(key)
        ?? throw new ZettException($"{Path}: no metadata key '{key}'");

    /// <summary>Opens and validates <paramref name="path"/>.</summary>
    public static GgufFile Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path))
        {
            throw new ZettException($"{path}: file not found");
        }
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        var r = new Reader(stream, path);
        if (!r.Bytes(4).AsSpan().SequenceEqual(GgufWriter.Magic))
        {
            throw new ZettException($"{path}: not a GGUF file (no GGUF magic)");
        }
        uint version = r.U32();
        if (version is not (2 or 3))
        {
            throw new ZettException($"{path}: GGUF version {version} (zett reads 2 and 3)");
        }
        long tensorCount = r.Count("tensor count", 8);
        long kvCount = r.Count("metadata count", 8);
        var metadata = new List<KeyValuePair<string, GgufValue>>();
        var keys = new HashSet<string>(StringComparer.Ordinal);
        for (long i = 0; i < kvCount; i++)
        {
            string key = r.String("metadata key");
            if (!keys.Add(key))
            {
                throw new ZettException($"{path}: duplicate metadata key '{key}'");
            }
            metadata.Add(new(key, r.Value(key, depth: 0)));
        }
        var tensors = new List<GgufTensorInfo>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (long i = 0; i < tensorCount; i++)
        {
            string name = r.String("tensor name");
            if (!names.Add(name))
            {
                throw new ZettException($"{path}: duplicate tensor '{name}'");
            }
            uint dims = r.U32();
            if (dims is 0 or > 4)
            {
                throw new ZettException($"{path}: tensor '{name}' has {dims} dimensions (1 to 4)");
            }
            long[] shape = new long[dims];
            for (int d = (int)dims - 1; d >= 0; d--)
            {
                shape[d] = r.Count($"tensor '{name}' dimension", 1);
            }
            uint type = r.U32();
            long offset = r.Count($"tensor '{name}' offset", 1);
            tensors.Add(new GgufTensorInfo(name, type, shape, offset));
        }
        long alignment = GgufWriter.DefaultAlignment;
        if (metadata.FirstOrDefault(kv => kv.Key == "general.alignment").Value is { } a)
        {
            alignment = a.Type == GgufValueType.UInt32 ? a.AsInt64()
                : throw new ZettException($"{path}: general.alignment is {a.Type}, not u32");
            if (alignment <= 0 || (alignment & (alignment - 1)) != 0)
            {
                throw new ZettException($"{path}: general.alignment {alignment} is not a power of two");
            }
        }
        long dataStart = (stream.Position + alignment - 1) / alignment * alignment;
        var file = new GgufFile(path, version, metadata, tensors, dataStart, stream.Length);
        foreach (GgufTensorInfo t in tensors)
        {
            if (t.Offset % alignment != 0)
            {
                throw new ZettException($"{path}: tensor '{t.Name}' offset {t.Offset} is not aligned "
                    + $"to {alignment}");
            }
            if (GgmlTypes.IsKnown(t.Type))
            {
                long bytes;
                try
                {
                    bytes = checked(t.Shape[..^1].Aggregate(1L, (x, y) => checked(x * y))
                        * GgmlTypes.RowBytes((GgmlType)t.Type, t.Shape[^1]));
                }
                catch (Exception e) when (e is OverflowException or ArgumentException)
                {
                    throw new ZettException($"{path}: tensor '{t.Name}': {e.Message}");
                }
                if (dataStart + t.Offset + bytes > stream.Length || dataStart + t.Offset < dataStart)
                {
                    throw new ZettException($"{path}: tensor '{t.Name}' ({bytes} bytes at data offset "
                        + $"{t.Offset}) runs past the end of the file ({stream.Length} bytes)");
                }
            }
        }
        return file;
    }

    /// <summary>Reads a tensor of type F32, F16, BF16 or Q8_0 as fp32 (row-major).</summary>
    public float[] ReadFloat32(string name)
    {
        GgufTensorInfo t = Tensors.FirstOrDefault(x => x.Name == name)
            ?? throw new ZettException($"{Path}: no tensor '{name}'");
        if (!GgmlTypes.IsKnown(t.Type))
        {
            throw new ZettException($"{Path}: tensor '{name}' has ggml type {t.Type}, which zett does "
                + "not read");
        }
        var type = (GgmlType)t.Type;
        long rows = t.Shape[..^1].Aggregate(1L, (a, b) => a * b);
        long bytes = rows * GgmlTypes.RowBytes(type, t.Shape[^1]);
        if (t.Elements > Array.MaxLength)
        {
            throw new ZettException($"{Path}: tensor '{name}' is too large to read into memory");
        }
        byte[] raw = new byte[bytes];
        using (var stream = new FileStream(Path, FileMode.Open, FileAccess.Read, FileShare.Read))
        {
            stream.Position = DataStart + t.Offset;
            stream.ReadExactly(raw);
        }
        float[] result = new float[t.Elements];
        Decode(type, raw, result);
        return result;
    }

    /// <summary>Decodes stored bytes of <paramref name="type"/> to fp32.</summary>
    public static void Decode(GgmlType type, ReadOnlySpan<byte> raw, Span<float> result)
    {
        switch (type)
        {
            case GgmlType.F32:
                DTypeConverter.ToFloat32(ZeTT.Ops.DType.F32, raw, result);
                break;
            case GgmlType.F16:
                DTypeConverter.ToFloat32(ZeTT.Ops.DType.F16, raw, result);
                break;
            case GgmlType.BF16:
                DTypeConverter.ToFloat32(ZeTT.Ops.DType.BF16, raw, result);
                break;
            case GgmlType.Q8_0:
                for (int b = 0; b < result.Length / GgmlTypes.Q8BlockSize; b++)
                {
                    ReadOnlySpan<byte> block = raw.Slice(b * GgmlTypes.Q8BlockBytes, GgmlTypes.Q8BlockBytes);
                    float d = (float)BinaryPrimitives.ReadHalfLittleEndian(block);
                    for (int i = 0; i < GgmlTypes.Q8BlockSize; i++)
                    {
                        result[b * GgmlTypes.Q8BlockSize + i] = d * (sbyte)block[2 + i];
                    }
                }
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(type), type, "unsupported ggml type");
        }
    }

    private sealed class Reader(FileStream stream, string path)
    {
        private const int MaxDepth = 4;
        private readonly byte[] _scratch = new byte[8];

        public byte[] Bytes(long n)
        {
            if (n > stream.Length - stream.Position)
            {
                throw new ZettException($"{path}: truncated at byte {stream.Position} (needs {n} more, "
                    + $"file has {stream.Length})");
            }
            byte[] b = new byte[n];
            stream.ReadExactly(b);
            return b;
        }

        private ReadOnlySpan<byte> Fixed(int n)
        {
            if (n > stream.Length - stream.Position)
            {
                throw new ZettException($"{path}: truncated at byte {stream.Position}");
            }
            stream.ReadExactly(_scratch, 0, n);
            return _scratch.AsSpan(0, n);
        }

        public uint U32() => BinaryPrimitives.ReadUInt32LittleEndian(Fixed(4));

        /// <summary>A u64 count that must fit the rest of the file at <paramref name="minBytes"/>
        /// bytes per item (so hostile counts fail before any allocation).</summary>
        public long Count(string what, long minBytes)
        {
            ulong v = BinaryPrimitives.ReadUInt64LittleEndian(Fixed(8));
            if (v > (ulong)long.MaxValue || (minBytes > 0 && (long)v > stream.Length / minBytes + 1))
            {
                throw new ZettException($"{path}: {what} {v} is impossible for a file of "
                    + $"{stream.Length} bytes");
            }
            return (long)v;
        }

        public string String(string what)
        {
            long n = Count(what + " length", 1);
            try
            {
                return new UTF8Encoding(false, true).GetString(Bytes(n));
            }
            catch (DecoderFallbackException)
            {
                throw new ZettException($"{path}: {what} at byte {stream.Position - n} is not UTF-8");
            }
        }

        public GgufValue Value(string key, int depth)
        {
            var type = (GgufValueType)U32();
            if (type != GgufValueType.Array)
            {
                return GgufValue.Read(type, Scalar(key, type), type);
            }
            if (depth >= MaxDepth)
            {
                throw new ZettException($"{path}: '{key}': arrays nested deeper than {MaxDepth}");
            }
            var element = (GgufValueType)U32();
            long count = Count($"'{key}' array length", element == GgufValueType.Array ? 12 : 1);
            Array items = element switch
            {
                GgufValueType.String => ReadArray<string>(count, () => String($"'{key}' element")),
                GgufValueType.Int32 => ReadArray(count, () => (int)Scalar(key, element)),
                GgufValueType.Float32 => ReadArray(count, () => (float)Scalar(key, element)),
                GgufValueType.UInt32 => ReadArray(count, () => (uint)Scalar(key, element)),
                GgufValueType.Array => ReadArray(count, () => Value(key, depth + 1)),
                _ => ReadArray(count, () => Scalar(key, element)),
            };
            return GgufValue.Read(GgufValueType.Array, items, element);
        }

        private static T[] ReadArray<T>(long count, Func<T> read)
        {
            var list = new List<T>((int)Math.Min(count, 1 << 16));
            for (long i = 0; i < count; i++)
            {
                list.Add(read());
            }
            return [.. list];
        }

        private object Scalar(string key, GgufValueType type) => type switch
        {
            GgufValueType.UInt8 => Fixed(1)[0],
            GgufValueType.Int8 => (sbyte)Fixed(1)[0],
            GgufValueType.UInt16 => BinaryPrimitives.ReadUInt16LittleEndian(Fixed(2)),
            GgufValueType.Int16 => BinaryPrimitives.ReadInt16LittleEndian(Fixed(2)),
            GgufValueType.UInt32 => BinaryPrimitives.ReadUInt32LittleEndian(Fixed(4)),
            GgufValueType.Int32 => BinaryPrimitives.ReadInt32LittleEndian(Fixed(4)),
            GgufValueType.Float32 => BinaryPrimitives.ReadSingleLittleEndian(Fixed(4)),
            GgufValueType.Bool => Fixed(1)[0] switch
            {
                0 => false,
                1 => true,
                byte b => throw new ZettException($"{path}: '{key}': bool byte {b}"),
            },
            GgufValueType.String => String($"'{key}' value"),
            GgufValueType.UInt64 => BinaryPrimitives.ReadUInt64LittleEndian(Fixed(8)),
            GgufValueType.Int64 => BinaryPrimitives.ReadInt64LittleEndian(Fixed(8)),
            GgufValueType.Float64 => BinaryPrimitives.ReadDoubleLittleEndian(Fixed(8)),
            _ => throw new ZettException($"{path}: '{key}': unknown value type {(uint)type}"),
        };
    }
}
