using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Microsoft.Win32.SafeHandles;
using ZeTT.Runtime.Tensors;

namespace ZeTT.Runtime.Formats;

/// <summary>
/// Reads a <c>.safetensors</c> file: an 8-byte little-endian header length N, N bytes of JSON
/// (<c>{"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}</c>),
/// then the data section. The header is validated completely when the file is opened, before
/// any tensor is touched.
/// </summary>
public sealed class SafetensorsFile : IDisposable
{
    /// <summary>Headers larger than this are refused (real checkpoints stay far below).</summary>
    public const long MaxHeaderBytes = 100L * 1024 * 1024;

    private readonly SafeFileHandle _handle;
    private readonly Dictionary<string, SafetensorsTensorInfo> _byName;
    private readonly long _dataStart;

    private SafetensorsFile(string path, SafeFileHandle handle, long dataStart,
        List<SafetensorsTensorInfo> tensors, Dictionary<string, string> metadata)
    {
        Path = path;
        _handle = handle;
        _dataStart = dataStart;
        Tensors = tensors;
        Metadata = metadata;
        _byName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
    }

    /// <summary>The file's path as given to <see cref="Open"/>.</summary>
    public string Path { get; }

    /// <summary>Tensors in data-offset order.</summary>
    public IReadOnlyList<SafetensorsTensorInfo> Tensors { get; }

    /// <summary>The <c>__metadata__</c> string map (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Opens and validates <paramref name="path"/>.</summary>
    /// <exception cref="SafetensorsException">The file is missing, truncated or malformed.
    /// </exception>
    public static SafetensorsFile Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path))
        {
            throw new SafetensorsException(path, null, "file not found");
        }
        SafeFileHandle handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read,
            FileShare.Read, FileOptions.RandomAccess);
        try
        {
            return Parse(path, handle);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    private static SafetensorsFile Parse(string path, SafeFileHandle handle)
    {
        long fileLength = RandomAccess.GetLength(handle);
        if (fileLength < 8)
        {
            throw new SafetensorsException(path, null,
                $"file is {fileLength} bytes, shorter than the 8-byte header length");
        }
        Span<byte> lengthBytes = stackalloc byte[8];
        RandomAccess.Read(handle, lengthBytes, 0);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
        if (headerLength > (ulong)MaxHeaderBytes)
        {
            throw new SafetensorsException(path, null,
                $"header length {headerLength} exceeds the {MaxHeaderBytes}-byte limit");
        }
        if ((long)headerLength > fileLength - 8)
        {
            throw new SafetensorsException(path, null,
                $"header length {headerLength} runs past the end of the {fileLength}-byte file");
        }
        byte[] header = new byte[(int)headerLength];
        RandomAccess.Read(handle, header, 8);
        long dataStart = 8 + (long)headerLength;
        long dataLength = fileLength - dataStart;

        var tensors = new List<SafetensorsTensorInfo>();
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(header, new JsonDocumentOptions { MaxDepth = 8 });
        }
        catch (JsonException e)
        {
            throw new SafetensorsException(path, null, $"header is not valid JSON: {e.Message}");
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw new SafetensorsException(path, null, "header is not a JSON object");
            }
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (JsonProperty prop in doc.RootElement.EnumerateObject())
            {
                if (!seen.Add(prop.Name))
                {
                    throw new SafetensorsException(path, prop.Name, "duplicate tensor name");
                }
                if (prop.Name == "__metadata__")
                {
                    ReadMetadata(path, prop.Value, metadata);
                    continue;
                }
                tensors.Add(ReadEntry(path, prop.Name, prop.Value, dataLength));
            }
        }
        tensors.Sort((a, b) => a.DataOffset.CompareTo(b.DataOffset));
        for (int i = 1; i < tensors.Count; i++)
        {
            SafetensorsTensorInfo prev = tensors[i - 1];
            if (prev.DataOffset + prev.ByteLength > tensors[i].DataOffset)
            {
                throw new SafetensorsException(path, tensors[i].Name,
                    $"data overlaps tensor '{prev.Name}'");
            }
        }
        return new SafetensorsFile(path, handle, dataStart, tensors, metadata);
    }

    private static void ReadMetadata(string path, JsonElement value,
        Dictionary<string, string> metadata)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw new SafetensorsException(path, null, "__metadata__ is not an object");
        }
        foreach (JsonProperty m in value.EnumerateObject())
        {
            if (m.Value.ValueKind != JsonValueKind.String)
            {
                throw new SafetensorsException(path, null,
                    $"__metadata__ value '{m.Name}' is not a string");
            }
            metadata[m.Name] = m.Value.GetString()!;
        }
    }

    private static SafetensorsTensorInfo ReadEntry(string path, string name, JsonElement value,
        long dataLength)
    {
        if (value.ValueKind != JsonValueKind.Object
            || !value.TryGetProperty("dtype", out JsonElement dtypeEl)
            || dtypeEl.ValueKind != JsonValueKind.String
            || !value.TryGetProperty("shape", out JsonElement shapeEl)
            || shapeEl.ValueKind != JsonValueKind.Array
            || !value.TryGetProperty("data_offsets", out JsonElement offEl)
            || offEl.ValueKind != JsonValueKind.Array
            || offEl.GetArrayLength() != 2)
        {
            throw new SafetensorsException(path, name,
                "entry needs \"dtype\" (string), \"shape\" (array), \"data_offsets\" ([begin, end])");
        }
        string dtypeName = dtypeEl.GetString()!;
        if (!DTypes.TryParseSafetensorsName(dtypeName, out DType dtype))
        {
            throw new SafetensorsException(path, name, $"unknown dtype \"{dtypeName}\"");
        }
        var shape = new long[shapeEl.GetArrayLength()];
        long count = 1;
        int i = 0;
        foreach (JsonElement d in shapeEl.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long dim) || dim < 0)
            {
                throw new SafetensorsException(path, name,
                    $"shape entry {d.GetRawText()} is not a non-negative integer");
            }
            shape[i++] = dim;
            try
            {
                count = checked(count * dim);
            }
            catch (OverflowException)
            {
                throw new SafetensorsException(path, name, "shape's element count overflows");
            }
        }
        long[] offsets = new long[2];
        i = 0;
        foreach (JsonElement o in offEl.EnumerateArray())
        {
            if (o.ValueKind != JsonValueKind.Number || !o.TryGetInt64(out offsets[i]) || offsets[i] < 0)
            {
                throw new SafetensorsException(path, name,
                    $"data offset {o.GetRawText()} is not a non-negative integer");
            }
            i++;
        }
        long bytes;
        try
        {
            bytes = checked(count * DTypes.SizeOf(dtype));
        }
        catch (OverflowException)
        {
            throw new SafetensorsException(path, name, "shape's byte size overflows");
        }
        if (offsets[1] < offsets[0] || offsets[1] - offsets[0] != bytes)
        {
            throw new SafetensorsException(path, name,
                $"data_offsets [{offsets[0]}, {offsets[1]}] hold {offsets[1] - offsets[0]} bytes "
                + $"but {dtypeName} {HostTensor.ShapeToString(shape)} needs {bytes}");
        }
        if (offsets[1] > dataLength)
        {
            throw new SafetensorsException(path, name,
                $"data_offsets end {offsets[1]} is past the {dataLength}-byte data section "
                + "(file truncated?)");
        }
        return new SafetensorsTensorInfo(name, dtype, shape, offsets[0], bytes);
    }

    /// <summary>True when the file holds a tensor called <paramref name="name"/>.</summary>
    public bool Contains(string name) => _byName.ContainsKey(name);

    /// <summary>The header entry of <paramref name="name"/>.</summary>
    /// <exception cref="SafetensorsException">No such tensor.</exception>
    public SafetensorsTensorInfo GetInfo(string name) =>
        _byName.TryGetValue(name, out SafetensorsTensorInfo? info)
            ? info
            : throw new SafetensorsException(Path, name, "no such tensor in the file");

    /// <summary>Copies the raw little-endian bytes of a tensor, starting
    /// <paramref name="byteOffset"/> bytes into it, into <paramref name="destination"/>.</summary>
    public void ReadBytes(string name, long byteOffset, Span<byte> destination)
    {
        SafetensorsTensorInfo info = GetInfo(name);
        if (byteOffset < 0 || byteOffset + destination.Length > info.ByteLength)
        {
            throw new ArgumentOutOfRangeException(nameof(byteOffset),
                $"range [{byteOffset}, {byteOffset + destination.Length}) is outside tensor "
                + $"'{name}' of {info.ByteLength} bytes");
        }
        long position = _dataStart + info.DataOffset + byteOffset;
        while (!destination.IsEmpty)
        {
            int n = RandomAccess.Read(_handle, destination, position);
            if (n <= 0)
            {
                throw new SafetensorsException(Path, name, "file ended while reading tensor data");
            }
            destination = destination[n..];
            position += n;
        }
    }

    /// <summary>Reads a floating-point tensor (F64, F32, F16 or BF16), widened or narrowed to
    /// fp32.</summary>
    public HostTensor ReadFloat32(string name)
    {
        SafetensorsTensorInfo info = GetInfo(name);
        if (!DTypes.IsFloat(info.DType))
        {
            throw new SafetensorsException(Path, name,
                $"expected a floating-point tensor, found {DTypes.ToSafetensorsName(info.DType)}");
        }
        int[] shape = ToIntShape(info);
        if (info.ElementCount > Array.MaxLength)
        {
            throw new SafetensorsException(Path, name,
                $"{info.ElementCount} elements exceed one host array");
        }
        float[] result = new float[info.ElementCount];
        const int ChunkElements = 1 << 20;
        int elementSize = DTypes.SizeOf(info.DType);
        byte[] buffer = new byte[(long)Math.Min(ChunkElements, Math.Max(1, result.Length)) * elementSize];
        for (long start = 0; start < result.Length; start += ChunkElements)
        {
            int n = (int)Math.Min(ChunkElements, result.Length - start);
            Span<byte> chunk = buffer.AsSpan(0, n * elementSize);
            ReadBytes(name, start * elementSize, chunk);
            ConvertToFloat32(info.DType, chunk, result.AsSpan((int)start, n));
        }
        return new HostTensor(name, shape, result);
    }

    /// <summary>Reads an integer tensor (I32, or I64 whose values fit in 32 bits).</summary>
    public int[] ReadInt32(string name, out int[] shape)
    {
        SafetensorsTensorInfo info = GetInfo(name);
        shape = ToIntShape(info);
        if (info.DType == DType.I32)
        {
            int[] values = new int[info.ElementCount];
            ReadBytes(name, 0, MemoryMarshal.AsBytes(values.AsSpan()));
            if (!BitConverter.IsLittleEndian)
            {
                BinaryPrimitives.ReverseEndianness(values, values);
            }
            return values;
        }
        if (info.DType == DType.I64)
        {
            long[] wide = new long[info.ElementCount];
            ReadBytes(name, 0, MemoryMarshal.AsBytes(wide.AsSpan()));
            int[] values = new int[wide.Length];
            for (int i = 0; i < wide.Length; i++)
            {
                long v = BitConverter.IsLittleEndian ? wide[i] : BinaryPrimitives.ReverseEndianness(wide[i]);
                if (v is < int.MinValue or > int.MaxValue)
                {
                    throw new SafetensorsException(Path, name, $"value {v} at {i} does not fit in int32");
                }
                values[i] = (int)v;
            }
            return values;
        }
        throw new SafetensorsException(Path, name,
            $"expected an I32 or I64 tensor, found {DTypes.ToSafetensorsName(info.DType)}");
    }

    private int[] ToIntShape(SafetensorsTensorInfo info)
    {
        int[] shape = new int[info.Shape.Length];
        for (int i = 0; i < shape.Length; i++)
        {
            if (info.Shape[i] > int.MaxValue)
            {
                throw new SafetensorsException(Path, info.Name,
                    $"dimension {info.Shape[i]} exceeds int32");
            }
            shape[i] = (int)info.Shape[i];
        }
        return shape;
    }

    /// <summary>Converts little-endian elements of a float dtype to fp32.</summary>
    public static void ConvertToFloat32(DType dtype, ReadOnlySpan<byte> source, Span<float> destination)
    {
        switch (dtype)
        {
            case DType.F32:
                for (int i = 0; i < destination.Length; i++)
                {
                    destination[i] = BinaryPrimitives.ReadSingleLittleEndian(source[(4 * i)..]);
                }
                break;
            case DType.BF16:
                for (int i = 0; i < destination.Length; i++)
                {
                    destination[i] = BFloat16.ToFloat(
                        BinaryPrimitives.ReadUInt16LittleEndian(source[(2 * i)..]));
                }
                break;
            case DType.F16:
                for (int i = 0; i < destination.Length; i++)
                {
                    destination[i] = (float)BinaryPrimitives.ReadHalfLittleEndian(source[(2 * i)..]);
                }
                break;
            case DType.F64:
                for (int i = 0; i < destination.Length; i++)
                {
                    destination[i] = (float)BinaryPrimitives.ReadDoubleLittleEndian(source[(8 * i)..]);
                }
                break;
            default:
                throw new ArgumentException($"{dtype} is not a float dtype", nameof(dtype));
        }
    }

    /// <inheritdoc />
    public void Dispose() => _handle.Dispose();

    /// <summary>Renders the header for diagnostics.</summary>
    public override string ToString() =>
        new StringBuilder().Append(Path).Append(" (").Append(Tensors.Count).Append(" tensors)")
            .ToString();
}
