using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text.Json;
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

    /// <summary>An entry for an fp32 host tensor, stored as F32, BF16 or F16.</summary>
    public static SafetensorsEntry FromFloat32(string name, int[] shape, float[] data,
        DType storeAs = DType.F32)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(data);
        if (storeAs is not (DType.F32 or DType.BF16 or DType.F16))
        {
            throw new ArgumentException($"cannot store fp32 data as {storeAs}", nameof(storeAs));
        }
        return new SafetensorsEntry(name, storeAs, Array.ConvertAll(shape, d => (long)d),
            s => WriteFloats(s, data, storeAs));
    }

    /// <summary>An entry for a host tensor.</summary>
    public static SafetensorsEntry FromTensor(HostTensor tensor, DType storeAs = DType.F32)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        return FromFloat32(tensor.Name, tensor.Shape, tensor.Data, storeAs);
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

    private static void WriteFloats(Stream s, float[] data, DType storeAs)
    {
        const int Chunk = 1 << 16;
        byte[] buffer = new byte[Chunk * DTypes.SizeOf(storeAs)];
        for (int start = 0; start < data.Length; start += Chunk)
        {
            int n = Math.Min(Chunk, data.Length - start);
            ReadOnlySpan<float> src = data.AsSpan(start, n);
            int size = DTypes.SizeOf(storeAs);
            for (int i = 0; i < n; i++)
            {
                Span<byte> dst = buffer.AsSpan(i * size);
                switch (storeAs)
                {
                    case DType.F32: BinaryPrimitives.WriteSingleLittleEndian(dst, src[i]); break;
                    case DType.BF16:
                        BinaryPrimitives.WriteUInt16LittleEndian(dst, BFloat16.FromFloat(src[i]));
                        break;
                    default: BinaryPrimitives.WriteHalfLittleEndian(dst, (Half)src[i]); break;
                }
            }
            s.Write(buffer, 0, n * size);
        }
    }
}

/// <summary>
/// Writes <c>.safetensors</c> files: tensors in the order given, header padded with spaces to a
/// multiple of 8 bytes, data streamed entry by entry (never the whole file in memory), written
/// to a temporary file in the same folder and renamed into place only when complete.
/// </summary>
public static class SafetensorsWriter
{
    /// <summary>Writes <paramref name="entries"/> to <paramref name="path"/>.</summary>
    public static void Write(string path, IReadOnlyList<SafetensorsEntry> entries,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(entries);
        byte[] header = BuildHeader(entries, metadata);
        string full = System.IO.Path.GetFullPath(path);
        string temp = full + ".tmp-" + Environment.ProcessId;
        try
        {
            using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write,
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
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }

    private static byte[] BuildHeader(IReadOnlyList<SafetensorsEntry> entries,
        IReadOnlyDictionary<string, string>? metadata)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject("__metadata__");
                foreach (KeyValuePair<string, string> kv in metadata.OrderBy(k => k.Key, StringComparer.Ordinal))
                {
                    json.WriteString(kv.Key, kv.Value);
                }
                json.WriteEndObject();
            }
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
