using System.Buffers.Binary;
using System.Text;
using ZeTT.Ops;
using ZeTT.Runtime.IO;
using ZeTT.Runtime.Tensors;

namespace ZeTT.Runtime.Formats;

/// <summary>One tensor to write into a GGUF file: its name, ggml type, shape (row-major, as
/// PyTorch and safetensors give it: the last dimension is contiguous) and a callback that
/// streams exactly <see cref="ByteLength"/> bytes.</summary>
public sealed class GgufTensor
{
    /// <summary>Creates a tensor whose bytes are produced by <paramref name="writeData"/>.</summary>
    public GgufTensor(string name, GgmlType type, long[] shape, Action<Stream> writeData)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(writeData);
        if (shape.Length is 0 or > 4 || shape.Any(d => d <= 0))
        {
            throw new ArgumentException($"tensor '{name}': GGUF needs 1 to 4 positive dimensions, got "
                + HostTensor.ShapeToString(shape), nameof(shape));
        }
        Name = name;
        Type = type;
        Shape = shape;
        long rows = shape[..^1].Aggregate(1L, (a, b) => checked(a * b));
        ByteLength = checked(rows * GgmlTypes.RowBytes(type, shape[^1]));
        WriteData = writeData;
    }

    /// <summary>Tensor name (llama.cpp's, e.g. <c>blk.0.attn_q.weight</c>).</summary>
    public string Name { get; }

    /// <summary>Stored type.</summary>
    public GgmlType Type { get; }

    /// <summary>Row-major dimensions (the file stores them reversed, fastest first).</summary>
    public long[] Shape { get; }

    /// <summary>Bytes the callback must write.</summary>
    public long ByteLength { get; }

    /// <summary>Writes the tensor's bytes.</summary>
    public Action<Stream> WriteData { get; }

    /// <summary>
    /// A tensor of <paramref name="shape"/> whose fp32 rows (the last dimension) come from
    /// <paramref name="readRows"/>(firstRow, destination) in chunks and are stored as
    /// <paramref name="type"/>: F32/F16/BF16 rounded to nearest even, Q8_0 as llama.cpp
    /// quantizes (per block of 32: scale = max|x|/127 stored as fp16, q = round-half-away(x/scale)).
    /// Host memory stays at one chunk (≤ 4 MiB of fp32 or one row).
    /// </summary>
    public static GgufTensor FromFloatRows(string name, GgmlType type, long[] shape,
        Action<long, Span<float>> readRows)
    {
        ArgumentNullException.ThrowIfNull(readRows);
        ArgumentNullException.ThrowIfNull(shape);
        long cols = shape.Length == 0 ? 0 : shape[^1];
        long rows = shape.Length == 0 ? 0 : shape[..^1].Aggregate(1L, (a, b) => a * b);
        return new GgufTensor(name, type, shape, stream =>
        {
            if (cols > int.MaxValue / 8)
            {
                throw new ArgumentException($"tensor '{name}': rows of {cols} elements are too long");
            }
            int perChunk = (int)Math.Max(1, Math.Min(rows, (1 << 20) / cols));
            float[] values = new float[perChunk * cols];
            byte[] bytes = new byte[perChunk * GgmlTypes.RowBytes(type, cols)];
            for (long r = 0; r < rows; r += perChunk)
            {
                int n = (int)Math.Min(perChunk, rows - r);
                Span<float> chunk = values.AsSpan(0, (int)(n * cols));
                readRows(r, chunk);
                int written = Encode(type, chunk, bytes);
                stream.Write(bytes, 0, written);
            }
        });
    }

    /// <summary>Stores fp32 values as <paramref name="type"/>; returns the bytes written.</summary>
    public static int Encode(GgmlType type, ReadOnlySpan<float> source, Span<byte> destination)
    {
        int n = source.Length;
        switch (type)
        {
            case GgmlType.F32:
                DTypeConverter.FromFloat32(source, DType.F32, destination[..(4 * n)]);
                return 4 * n;
            case GgmlType.F16:
                DTypeConverter.FromFloat32(source, DType.F16, destination[..(2 * n)]);
                return 2 * n;
            case GgmlType.BF16:
                DTypeConverter.FromFloat32(source, DType.BF16, destination[..(2 * n)]);
                return 2 * n;
            case GgmlType.Q8_0:
                return QuantizeQ8(source, destination);
            default:
                throw new ArgumentOutOfRangeException(nameof(type), type, "unsupported ggml type");
        }
    }

    /// <summary>ggml's reference Q8_0 quantization (quantize_row_q8_0_ref): the scale is
    /// computed in fp32 and stored as fp16; values are scaled by the fp32 inverse and rounded
    /// half away from zero (C's roundf).</summary>
    private static int QuantizeQ8(ReadOnlySpan<float> source, Span<byte> destination)
    {
        if (source.Length % GgmlTypes.Q8BlockSize != 0)
        {
            throw new ArgumentException($"Q8_0 needs a multiple of {GgmlTypes.Q8BlockSize} values");
        }
        int blocks = source.Length / GgmlTypes.Q8BlockSize;
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<float> x = source.Slice(b * GgmlTypes.Q8BlockSize, GgmlTypes.Q8BlockSize);
            Span<byte> block = destination.Slice(b * GgmlTypes.Q8BlockBytes, GgmlTypes.Q8BlockBytes);
            float amax = 0;
            foreach (float v in x)
            {
                amax = Math.Max(amax, Math.Abs(v));
            }
            float d = amax / 127f;
            float id = d != 0 ? 1f / d : 0f;
            BinaryPrimitives.WriteHalfLittleEndian(block, (Half)d);
            for (int i = 0; i < GgmlTypes.Q8BlockSize; i++)
            {
                block[2 + i] = (byte)(sbyte)MathF.Round(x[i] * id, MidpointRounding.AwayFromZero);
            }
        }
        return blocks * GgmlTypes.Q8BlockBytes;
    }
}

/// <summary>
/// Writes GGUF v3 files (the format llama.cpp loads): header, metadata in the order given,
/// tensor infos, then each tensor's data at an offset aligned to <c>general.alignment</c>
/// (32 unless the metadata sets it), streamed tensor by tensor — never the whole model in
/// memory — into a temporary file in the same folder that is renamed into place only when
/// complete. Little-endian, as llama.cpp expects.
/// </summary>
public static class GgufWriter
{
    /// <summary>The file magic, "GGUF".</summary>
    public static ReadOnlySpan<byte> Magic => "GGUF"u8;

    /// <summary>The version written.</summary>
    public const uint Version = 3;

    /// <summary>Data alignment when <c>general.alignment</c> is not set.</summary>
    public const int DefaultAlignment = 32;

    /// <summary>Writes <paramref name="metadata"/> and <paramref name="tensors"/> to
    /// <paramref name="path"/>; <paramref name="onTensor"/> is called after each tensor (for
    /// progress).</summary>
    public static void Write(string path, IReadOnlyList<KeyValuePair<string, GgufValue>> metadata,
        IReadOnlyList<GgufTensor> tensors, Action<GgufTensor>? onTensor = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(metadata);
        ArgumentNullException.ThrowIfNull(tensors);
        int alignment = DefaultAlignment;
        var keys = new HashSet<string>(StringComparer.Ordinal);
        foreach (KeyValuePair<string, GgufValue> kv in metadata)
        {
            if (!keys.Add(kv.Key))
            {
                throw new ArgumentException($"duplicate GGUF key '{kv.Key}'", nameof(metadata));
            }
            if (kv.Key == "general.alignment")
            {
                alignment = (int)kv.Value.AsInt64();
            }
        }
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (GgufTensor t in tensors)
        {
            if (!names.Add(t.Name))
            {
                throw new ArgumentException($"duplicate tensor name '{t.Name}'", nameof(tensors));
            }
        }
        string full = Path.GetFullPath(path);
        if (Directory.Exists(full))
        {
            throw new ZettException($"{path}: is a directory, not a file to write");
        }
        string? parent = Path.GetDirectoryName(full);
        if (parent is not null && !Directory.Exists(parent))
        {
            throw new ZettException($"{path}: folder {parent} does not exist");
        }
        // The one output policy's temporary: renamed when complete, deleted on failure or on
        // SIGINT/SIGTERM, removed by the next run after a SIGKILL.
        using OutputTarget target = OutputTarget.Begin(full, OutputKind.File);
        using (var stream = new FileStream(target.TempPath, FileMode.Create, FileAccess.Write,
            FileShare.None, 1 << 20))
        {
            WriteTo(stream, metadata, tensors, alignment, onTensor);
        }
        target.Commit();
    }

    private static void WriteTo(FileStream stream, IReadOnlyList<KeyValuePair<string, GgufValue>> metadata,
        IReadOnlyList<GgufTensor> tensors, int alignment, Action<GgufTensor>? onTensor)
    {
        using var header = new MemoryStream();
        using (var w = new BinaryWriter(header, Encoding.UTF8, leaveOpen: true))
        {
            w.Write(Magic);
            w.Write(Version);
            w.Write((ulong)tensors.Count);
            w.Write((ulong)metadata.Count);
            foreach (KeyValuePair<string, GgufValue> kv in metadata)
            {
                WriteString(w, kv.Key);
                WriteValue(w, kv.Value);
            }
            long offset = 0;
            foreach (GgufTensor t in tensors)
            {
                WriteString(w, t.Name);
                w.Write((uint)t.Shape.Length);
                for (int d = t.Shape.Length - 1; d >= 0; d--)
                {
                    w.Write((ulong)t.Shape[d]);
                }
                w.Write((uint)t.Type);
                w.Write((ulong)offset);
                offset = Align(offset + t.ByteLength, alignment);
            }
        }
        header.WriteTo(stream);
        Pad(stream, alignment);
        long dataStart = stream.Position;
        foreach (GgufTensor t in tensors)
        {
            long before = stream.Position;
            t.WriteData(stream);
            long written = stream.Position - before;
            if (written != t.ByteLength)
            {
                throw new InvalidOperationException(
                    $"tensor '{t.Name}': wrote {written} bytes, expected {t.ByteLength}");
            }
            Pad(stream, alignment, dataStart);
            onTensor?.Invoke(t);
        }
    }

    private static long Align(long x, int alignment) => (x + alignment - 1) / alignment * alignment;

    private static void Pad(Stream stream, int alignment, long origin = 0)
    {
        long rel = stream.Position - origin;
        int pad = (int)(Align(rel, alignment) - rel);
        Span<byte> zeros = stackalloc byte[pad];
        zeros.Clear();
        stream.Write(zeros);
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static void WriteValue(BinaryWriter w, GgufValue v)
    {
        w.Write((uint)v.Type);
        if (v.Type != GgufValueType.Array)
        {
            WriteScalar(w, v.Type, v.Value);
            return;
        }
        var items = (Array)v.Value;
        w.Write((uint)v.ElementType);
        w.Write((ulong)items.Length);
        switch (items)
        {
            case string[] strings:
                foreach (string s in strings)
                {
                    WriteString(w, s);
                }
                break;
            case int[] ints:
                foreach (int i in ints)
                {
                    w.Write(i);
                }
                break;
            case float[] floats:
                foreach (float f in floats)
                {
                    w.Write(f);
                }
                break;
            default:
                foreach (object o in items)
                {
                    WriteScalar(w, v.ElementType, o);
                }
                break;
        }
    }

    private static void WriteScalar(BinaryWriter w, GgufValueType type, object value)
    {
        switch (type)
        {
            case GgufValueType.UInt8: w.Write((byte)value); break;
            case GgufValueType.Int8: w.Write((sbyte)value); break;
            case GgufValueType.UInt16: w.Write((ushort)value); break;
            case GgufValueType.Int16: w.Write((short)value); break;
            case GgufValueType.UInt32: w.Write((uint)value); break;
            case GgufValueType.Int32: w.Write((int)value); break;
            case GgufValueType.Float32: w.Write((float)value); break;
            case GgufValueType.Bool: w.Write((bool)value ? (byte)1 : (byte)0); break;
            case GgufValueType.String: WriteString(w, (string)value); break;
            case GgufValueType.UInt64: w.Write((ulong)value); break;
            case GgufValueType.Int64: w.Write((long)value); break;
            case GgufValueType.Float64: w.Write((double)value); break;
            default: throw new ArgumentOutOfRangeException(nameof(type), type, "not a scalar GGUF type");
        }
    }
}
