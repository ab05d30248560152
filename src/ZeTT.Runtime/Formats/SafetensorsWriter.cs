using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text.Json;
using ZeTT.Ops;
using ZeTT.Runtime.IO;
using ZeTT.Runtime.Tensors;

namespace ZeTT.Runtime.Formats;

/// <summary>One tensor to write: its header entry and a callback that streams exactly
/// <see cref="ByteLength"/> little-endian bytes.</summary>
public sealed class SafetensorsEntry
{
    /// <summary>Creates an entry whose bytes are produced by <paramref name="writeData"/>.</summary>
    public SafetensorsEntry(string name, DType dtype, long[] shape, Action<Stream> writeData)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(writeData);
        if (shape.Any(d => d < 0))
        {
            throw new ArgumentException($"tensor '{name}': negative dimension in "
                + HostTensor.ShapeToString(shape), nameof(shape));
        }
        Name = name;
        DType = dtype;
        Shape = shape;
        ByteLength = checked(shape.Aggregate(1L, (a, b) => a * b) * DTypes.SizeOf(dtype));
        WriteData = writeData;
    }

    /// <summary>Tensor name.</summary>
    public string Name { get; }

    /// <summary>Stored element type.</summary>
    public DType DType { get; }

    /// <summary>Dimensions.</summary>
    public long[] Shape { get; }

    /// <summary>Bytes the callback must write.</summary>
    public long ByteLength { get; }

    /// <summary>Writes the tensor's bytes to the stream.</summary>
    public Action<Stream> WriteData { get; }

    /// <summary>An entry for fp32 data, stored as F32, BF16, F16 or F64 (rounded to nearest
    /// even).</summary>
    public static SafetensorsEntry FromFloat32(string name, int[] shape, float[] data,
        DType storeAs = DType.F32)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(data);
        if (!DTypeConverter.IsStorableFloat(storeAs))
        {
            throw new ArgumentException($"cannot store fp32 data as {storeAs}", nameof(storeAs));
        }
        var entry = new SafetensorsEntry(name, storeAs, Array.ConvertAll(shape, d => (long)d),
            s => WriteFloats(s, data, storeAs));
        if (entry.ByteLength != (long)data.Length * DTypes.SizeOf(storeAs))
        {
            throw new ArgumentException($"tensor '{name}': shape {HostTensor.ShapeToString(shape)} "
                + $"does not hold {data.Length} elements", nameof(data));
        }
        return entry;
    }

    /// <summary>An entry for a host tensor.</summary>
    public static SafetensorsEntry FromTensor(HostTensor tensor, DType storeAs = DType.F32)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        return FromFloat32(tensor.Name, tensor.Shape, tensor.Data, storeAs);
    }

    /// <summary>An entry for a host tensor under another name.</summary>
    public static SafetensorsEntry FromTensor(string name, HostTensor tensor, DType storeAs)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        return FromFloat32(name, tensor.Shape, tensor.Data, storeAs);
    }

    /// <summary>An entry for a [rows, cols] fp32 matrix read row block by row block (64-bit
    /// sizes: a matrix past 2^31 elements is streamed, never held in one array), stored as F32,
    /// BF16, F16 or F64 (rounded to nearest even).</summary>
    public static SafetensorsEntry FromRows(string name, IFloatRows rows, DType storeAs)
    {
        ArgumentNullException.ThrowIfNull(rows);
        if (!DTypeConverter.IsStorableFloat(storeAs))
        {
            throw new ArgumentException($"cannot store fp32 data as {storeAs}", nameof(storeAs));
        }
        return new SafetensorsEntry(name, storeAs, [rows.Rows, rows.Cols], s =>
        {
            int cols = rows.Cols, size = DTypes.SizeOf(storeAs);
            int block = FloatRows.BlockRows(cols);
            float[] values = new float[(long)block * cols];
            byte[] buffer = new byte[(long)block * cols * size];
            for (long r = 0; r < rows.Rows; r += block)
            {
                int n = (int)Math.Min(block, rows.Rows - r);
                rows.ReadRows(r, n, values);
                DTypeConverter.FromFloat32(values.AsSpan(0, n * cols), storeAs,
                    buffer.AsSpan(0, n * cols * size));
                s.Write(buffer, 0, n * cols * size);
            }
        });
    }

    /// <summary>An entry for int32 data.</summary>
    public static SafetensorsEntry FromInt32(string name, int[] shape, int[] data)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(data);
        return new SafetensorsEntry(name, DType.I32, Array.ConvertAll(shape, d => (long)d), s =>
        {
            if (BitConverter.IsLittleEndian)
            {
                s.Write(MemoryMarshal.AsBytes(data.AsSpan()));
                return;
            }
            int[] swapped = new int[data.Length];
            BinaryPrimitives.ReverseEndianness(data, swapped);
            s.Write(MemoryMarshal.AsBytes(swapped.AsSpan()));
        });
    }

    /// <summary>An entry for raw little-endian bytes of any dtype.</summary>
    public static SafetensorsEntry FromBytes(string name, DType dtype, long[] shape,
        ReadOnlyMemory<byte> data)
    {
        var entry = new SafetensorsEntry(name, dtype, shape, s => s.Write(data.Span));
        if (entry.ByteLength != data.Length)
        {
            throw new ArgumentException($"tensor '{name}': {DTypes.ToSafetensorsName(dtype)} "
                + $"{HostTensor.ShapeToString(shape)} needs {entry.ByteLength} bytes, got "
                + data.Length, nameof(data));
        }
        return entry;
    }

    /// <summary>An entry that streams tensor <paramref name="name"/> of
    /// <paramref name="source"/> bit for bit (optionally renamed).</summary>
    public static SafetensorsEntry CopyOf(SafetensorsFile source, string name, string? newName = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        SafetensorsTensorInfo info = source.GetInfo(name);
        return new SafetensorsEntry(newName ?? name, info.DType, (long[])info.Shape.Clone(),
            s => source.CopyTo(name, s));
    }

    private static void WriteFloats(Stream s, float[] data, DType storeAs)
    {
        const int Chunk = 1 << 16;
        int size = DTypes.SizeOf(storeAs);
        byte[] buffer = new byte[Chunk * size];
        for (int start = 0; start < data.Length; start += Chunk)
        {
            int n = Math.Min(Chunk, data.Length - start);
            DTypeConverter.FromFloat32(data.AsSpan(start, n), storeAs, buffer.AsSpan(0, n * size));
            s.Write(buffer, 0, n * size);
        }
    }
}

/// <summary>
/// Writes <c>.safetensors</c> files: tensors in the order given (deterministic output), a
/// <c>format: pt</c> metadata entry unless the caller sets one, the header padded with spaces
/// to a multiple of 8 bytes, data streamed entry by entry (never the whole file in memory),
/// written to a temporary file in the same folder and renamed into place only when complete.
/// </summary>
public static class SafetensorsWriter
{
    /// <summary>Name of the index file of a sharded checkpoint.</summary>
    public const string IndexFileName = "model.safetensors.index.json";

    /// <summary>Writes <paramref name="entries"/> to <paramref name="path"/>.</summary>
    public static void Write(string path, IReadOnlyList<SafetensorsEntry> entries,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(entries);
        byte[] header = BuildHeader(entries, metadata);
        string full = System.IO.Path.GetFullPath(path);
        if (Directory.Exists(full))
        {
            throw new SafetensorsException(path, null, "is a directory, not a file to write");
        }
        string? parent = System.IO.Path.GetDirectoryName(full);
        if (parent is not null && !Directory.Exists(parent))
        {
            throw new SafetensorsException(path, null, $"folder {parent} does not exist");
        }
        using OutputTarget target = OutputTarget.Begin(full, OutputKind.File);
        using (var stream = new FileStream(target.TempPath, FileMode.CreateNew, FileAccess.Write,
            FileShare.None, 1 << 20))
        {
            Span<byte> len = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)header.Length);
            stream.Write(len);
            stream.Write(header);
            foreach (SafetensorsEntry e in entries)
            {
                long before = stream.Position;
                e.WriteData(stream);
                long written = stream.Position - before;
                if (written != e.ByteLength)
                {
                    throw new InvalidOperationException(
                        $"tensor '{e.Name}': wrote {written} bytes, expected {e.ByteLength}");
                }
            }
        }
        target.Commit();
    }

    /// <summary>
    /// Writes <paramref name="entries"/> into <paramref name="directory"/> as one
    /// <c>model.safetensors</c> when they fit in <paramref name="maxShardBytes"/>, otherwise as
    /// <c>model-0000i-of-0000n.safetensors</c> shards of at most that many data bytes each (a
    /// tensor larger than the limit gets a shard of its own, as Hugging Face does) plus
    /// <see cref="IndexFileName"/>. Tensors keep the given order. Returns the file names
    /// written, index last.
    /// </summary>
    public static IReadOnlyList<string> WriteSharded(string directory,
        IReadOnlyList<SafetensorsEntry> entries, long maxShardBytes,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(directory);
        ArgumentNullException.ThrowIfNull(entries);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxShardBytes);
        var shards = new List<List<SafetensorsEntry>>();
        long current = 0;
        foreach (SafetensorsEntry e in entries)
        {
            if (shards.Count == 0 || (current + e.ByteLength > maxShardBytes && current > 0))
            {
                shards.Add([]);
                current = 0;
            }
            shards[^1].Add(e);
            current += e.ByteLength;
        }
        Directory.CreateDirectory(directory);
        if (shards.Count <= 1)
        {
            Write(System.IO.Path.Combine(directory, "model.safetensors"), shards.FirstOrDefault() ?? [],
                metadata);
            return ["model.safetensors"];
        }
        var names = new List<string>();
        var weightMap = new List<KeyValuePair<string, string>>();
        for (int i = 0; i < shards.Count; i++)
        {
            string file = ShardFileName(i, shards.Count);
            Write(System.IO.Path.Combine(directory, file), shards[i], metadata);
            names.Add(file);
            weightMap.AddRange(shards[i].Select(e => new KeyValuePair<string, string>(e.Name, file)));
        }
        WriteIndex(System.IO.Path.Combine(directory, IndexFileName), weightMap,
            entries.Sum(e => e.ByteLength));
        names.Add(IndexFileName);
        return names;
    }

    /// <summary>The Hugging Face shard name <c>model-00001-of-00003.safetensors</c> of shard
    /// <paramref name="index"/> (zero-based).</summary>
    public static string ShardFileName(int index, int count) =>
        $"model-{index + 1:D5}-of-{count:D5}.safetensors";

    /// <summary>Writes a <c>model.safetensors.index.json</c> (<c>metadata.total_size</c> and a
    /// <c>weight_map</c> sorted by tensor name, as Hugging Face writes it), atomically.</summary>
    public static void WriteIndex(string path, IEnumerable<KeyValuePair<string, string>> weightMap,
        long totalSize)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(weightMap);
        using OutputTarget target = OutputTarget.Begin(path, OutputKind.File);
        using (var stream = new FileStream(target.TempPath, FileMode.CreateNew, FileAccess.Write))
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteStartObject("metadata");
            json.WriteNumber("total_size", totalSize);
            json.WriteEndObject();
            json.WriteStartObject("weight_map");
            foreach (KeyValuePair<string, string> kv in weightMap.OrderBy(k => k.Key, StringComparer.Ordinal))
            {
                json.WriteString(kv.Key, kv.Value);
            }
            json.WriteEndObject();
            json.WriteEndObject();
        }
        target.Commit();
    }

    private static byte[] BuildHeader(IReadOnlyList<SafetensorsEntry> entries,
        IReadOnlyDictionary<string, string>? metadata)
    {
        var meta = new SortedDictionary<string, string>(StringComparer.Ordinal) { ["format"] = "pt" };
        foreach (KeyValuePair<string, string> kv in metadata ?? new Dictionary<string, string>())
        {
            meta[kv.Key] = kv.Value;
        }
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteStartObject("__metadata__");
            foreach (KeyValuePair<string, string> kv in meta)
            {
                json.WriteString(kv.Key, kv.Value);
            }
            json.WriteEndObject();
            var names = new HashSet<string>(StringComparer.Ordinal);
            long offset = 0;
            foreach (SafetensorsEntry e in entries)
            {
                if (!names.Add(e.Name) || e.Name == "__metadata__")
                {
                    throw new ArgumentException($"duplicate or reserved tensor name '{e.Name}'",
                        nameof(entries));
                }
                json.WriteStartObject(e.Name);
                json.WriteString("dtype", DTypes.ToSafetensorsName(e.DType));
                json.WriteStartArray("shape");
                foreach (long d in e.Shape)
                {
                    json.WriteNumberValue(d);
                }
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                offset += e.ByteLength;
                json.WriteNumberValue(offset);
                json.WriteEndArray();
                json.WriteEndObject();
            }
            json.WriteEndObject();
        }
        int padded = (int)((buffer.Length + 7) / 8 * 8);
        byte[] header = new byte[padded];
        buffer.GetBuffer().AsSpan(0, (int)buffer.Length).CopyTo(header);
        header.AsSpan((int)buffer.Length).Fill((byte)' ');
        return header;
    }
}
