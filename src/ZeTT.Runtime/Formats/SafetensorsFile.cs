using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Text.Json;
using System.Text.Unicode;
using Microsoft.Win32.SafeHandles;
using ZeTT.Ops;
using ZeTT.Runtime.IO;
using ZeTT.Runtime.Tensors;

namespace ZeTT.Runtime.Formats;

/// <summary>
/// Reads a <c>.safetensors</c> file: an 8-byte little-endian header length N, N bytes of UTF-8
/// JSON (<c>{"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}</c>,
/// optionally padded with spaces), then the data section.
/// <para>The file is memory-mapped; tensor bytes are handed out as zero-copy spans
/// (<see cref="GetSpan(string, long, int)"/>), valid until the file is disposed.</para>
/// <para>The header is validated completely when the file is opened, before any tensor is
/// touched, with the rules of the format's reference reader: length within the file and under
/// <see cref="MaxHeaderBytes"/>, valid UTF-8 starting with <c>{</c>, strict JSON with no
/// duplicate keys and no unknown entry keys, known dtypes, non-negative shapes whose byte size
/// (overflow-checked) equals the offset range, and tensors that tile the data section exactly:
/// sorted by offset, each starts where the previous one ended (no gaps, no overlaps) and the
/// last ends at the end of the file. The format requires no alignment of tensor offsets (a
/// compliant writer pads the header to 8 bytes, ours does), so none is demanded; views are
/// byte spans and typed reads tolerate any alignment. Every violation is a
/// <see cref="SafetensorsException"/> naming the file, the tensor and what was wrong.</para>
/// </summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    /// <summary>Headers larger than this are refused before they are read (the format's
    /// reference reader uses the same 100 MB cap; real checkpoints stay far below).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    /// <summary>Nesting the format needs: root object, tensor entry, shape array.</summary>
    private const int MaxJsonDepth = 3;

    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private readonly Dictionary<string, SafetensorsTensorInfo> _byName;
    private readonly long _dataStart;
    private byte* _base;

    private SafetensorsFile(string path, MemoryMappedFile map, MemoryMappedViewAccessor view,
        byte* basePointer, long fileLength, long dataStart, List<SafetensorsTensorInfo> tensors,
        Dictionary<string, string> metadata)
    {
        Path = path;
        _map = map;
        _view = view;
        _base = basePointer;
        FileLength = fileLength;
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

    /// <summary>Size of the file in bytes.</summary>
    public long FileLength { get; }

    /// <summary>Byte length of the JSON header (without the 8-byte length prefix).</summary>
    public long HeaderLength => _dataStart - 8;

    /// <summary>Opens, maps and validates <paramref name="path"/>.</summary>
    /// <exception cref="SafetensorsException">The file is missing, truncated or malformed.
    /// </exception>
    public static SafetensorsFile Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        switch (InputFile.KindOf(path))
        {
            case PathKind.RegularFile:
                break;
            case PathKind.Missing:
                throw new SafetensorsException(path, null, "file not found");
            case PathKind.Directory:
                throw new SafetensorsException(path, null, "is a directory, expected a file");
            case PathKind.SymlinkLoop:
                throw new SafetensorsException(path, null, "symbolic link loop");
            default:
                // A FIFO would block the open forever, a device has no end.
                throw new SafetensorsException(path, null, "not a regular file (a FIFO, socket or "
                    + "device)");
        }
        SafeFileHandle handle;
        try
        {
            handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read,
                FileOptions.RandomAccess);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SafetensorsException(path, null, $"cannot open: {e.Message}");
        }
        using (handle)
        {
            long fileLength = RandomAccess.GetLength(handle);
            if (fileLength < 8)
            {
                throw new SafetensorsException(path, null,
                    $"file is {fileLength} bytes, shorter than the 8-byte header length");
            }
            MemoryMappedFile map = MemoryMappedFile.CreateFromFile(handle, null, 0,
                MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: true);
            MemoryMappedViewAccessor? view = null;
            byte* pointer = null;
            try
            {
                view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
                view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
                pointer += view.PointerOffset;
                return Parse(path, map, view, pointer, fileLength);
            }
            catch
            {
                if (pointer != null)
                {
                    view!.SafeMemoryMappedViewHandle.ReleasePointer();
                }
                view?.Dispose();
                map.Dispose();
                throw;
            }
        }
    }

    private static SafetensorsFile Parse(string path, MemoryMappedFile map,
        MemoryMappedViewAccessor view, byte* pointer, long fileLength)
    {
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(pointer, 8));
        if (headerLength > MaxHeaderBytes)
        {
            throw new SafetensorsException(path, null,
                $"header length {headerLength} exceeds the {MaxHeaderBytes}-byte limit");
        }
        if ((long)headerLength > fileLength - 8)
        {
            throw new SafetensorsException(path, null,
                $"header length {headerLength} runs past the end of the {fileLength}-byte file");
        }
        var header = new ReadOnlySpan<byte>(pointer + 8, (int)headerLength);
        long dataStart = 8 + (long)headerLength;
        long dataLength = fileLength - dataStart;
        if (header.IsEmpty || header[0] != (byte)'{')
        {
            throw new SafetensorsException(path, null, "header does not start with '{'");
        }
        if (!Utf8.IsValid(header))
        {
            throw new SafetensorsException(path, null, "header is not valid UTF-8");
        }

        var tensors = new List<SafetensorsTensorInfo>();
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        var reader = new Utf8JsonReader(header, new JsonReaderOptions { MaxDepth = MaxJsonDepth });
        try
        {
            Expect(ref reader, path, JsonTokenType.StartObject, "header is not a JSON object");
            var seen = new HashSet<string>(StringComparer.Ordinal);
            while (true)
            {
                Read(ref reader, path);
                if (reader.TokenType == JsonTokenType.EndObject)
                {
                    break;
                }
                string name = reader.GetString()!;
                if (!seen.Add(name))
                {
                    throw new SafetensorsException(path, name, "duplicate key in the header");
                }
                if (name == "__metadata__")
                {
                    ReadMetadata(ref reader, path, metadata);
                    continue;
                }
                tensors.Add(ReadEntry(ref reader, path, name, dataLength));
            }
            if (reader.Read())
            {
                throw new SafetensorsException(path, null, "header has content after its JSON object");
            }
        }
        catch (JsonException e)
        {
            throw new SafetensorsException(path, null, $"header is not valid JSON: {e.Message}");
        }

        tensors.Sort((a, b) => a.DataOffset != b.DataOffset
            ? a.DataOffset.CompareTo(b.DataOffset)
            : a.ByteLength.CompareTo(b.ByteLength));
        long expected = 0;
        SafetensorsTensorInfo? previous = null;
        foreach (SafetensorsTensorInfo t in tensors)
        {
            if (t.DataOffset < expected)
            {
                throw new SafetensorsException(path, t.Name,
                    $"data [{t.DataOffset}, {t.DataOffset + t.ByteLength}) overlaps tensor "
                    + $"'{previous!.Name}' ending at {expected}");
            }
            if (t.DataOffset > expected)
            {
                throw new SafetensorsException(path, t.Name,
                    $"data starts at {t.DataOffset}, leaving a gap after offset {expected} "
                    + "(tensors must tile the data section)");
            }
            expected = t.DataOffset + t.ByteLength;
            previous = t;
        }
        if (expected != dataLength)
        {
            throw new SafetensorsException(path, null,
                $"the data section is {dataLength} bytes but the tensors cover {expected}");
        }
        return new SafetensorsFile(path, map, view, pointer, fileLength, dataStart, tensors, metadata);
    }

    private static void Read(ref Utf8JsonReader reader, string path)
    {
        if (!reader.Read())
        {
            throw new SafetensorsException(path, null, "header JSON ends early");
        }
    }

    private static void Expect(ref Utf8JsonReader reader, string path, JsonTokenType type, string what)
    {
        Read(ref reader, path);
        if (reader.TokenType != type)
        {
            throw new SafetensorsException(path, null, what);
        }
    }

    private static void ReadMetadata(ref Utf8JsonReader reader, string path,
        Dictionary<string, string> metadata)
    {
        Read(ref reader, path);
        if (reader.TokenType == JsonTokenType.Null)
        {
            return;
        }
        if (reader.TokenType != JsonTokenType.StartObject)
        {
            throw new SafetensorsException(path, null, "__metadata__ is not an object");
        }
        while (true)
        {
            Read(ref reader, path);
            if (reader.TokenType == JsonTokenType.EndObject)
            {
                return;
            }
            string key = reader.GetString()!;
            Read(ref reader, path);
            if (reader.TokenType != JsonTokenType.String)
            {
                throw new SafetensorsException(path, null,
                    $"__metadata__ value '{key}' is not a string");
            }
            if (!metadata.TryAdd(key, reader.GetString()!))
            {
                throw new SafetensorsException(path, null, $"duplicate __metadata__ key '{key}'");
            }
        }
    }

    private static SafetensorsTensorInfo ReadEntry(ref Utf8JsonReader reader, string path,
        string name, long dataLength)
    {
        const string Layout =
            "entry must be {\"dtype\": string, \"shape\": [int...], \"data_offsets\": [begin, end]}";
        Read(ref reader, path);
        if (reader.TokenType != JsonTokenType.StartObject)
        {
            throw new SafetensorsException(path, name, Layout);
        }
        DType? dtype = null;
        List<long>? shape = null;
        List<long>? offsets = null;
        while (true)
        {
            Read(ref reader, path);
            if (reader.TokenType == JsonTokenType.EndObject)
            {
                break;
            }
            string key = reader.GetString()!;
            Read(ref reader, path);
            switch (key)
            {
                case "dtype" when dtype is null:
                    if (reader.TokenType != JsonTokenType.String)
                    {
                        throw new SafetensorsException(path, name, Layout);
                    }
                    string dtypeName = reader.GetString()!;
                    dtype = DTypes.TryParseSafetensorsName(dtypeName, out DType parsed)
                        ? parsed
                        : throw new SafetensorsException(path, name, $"unknown dtype \"{dtypeName}\"");
                    break;
                case "shape" when shape is null:
                    shape = ReadIntegers(ref reader, path, name, "shape");
                    break;
                case "data_offsets" when offsets is null:
                    offsets = ReadIntegers(ref reader, path, name, "data_offsets");
                    break;
                case "dtype" or "shape" or "data_offsets":
                    throw new SafetensorsException(path, name, $"duplicate key \"{key}\"");
                default:
                    throw new SafetensorsException(path, name, $"unknown key \"{key}\"; {Layout}");
            }
        }
        if (dtype is null || shape is null || offsets is null || offsets.Count != 2)
        {
            throw new SafetensorsException(path, name, Layout);
        }
        long count = 1;
        foreach (long dim in shape)
        {
            count = dim == 0 ? 0 : count <= long.MaxValue / dim
                ? count * dim
                : throw new SafetensorsException(path, name,
                    $"shape {HostTensor.ShapeToString(shape)} has more elements than fit in 64 bits");
        }
        int size = DTypes.SizeOf(dtype.Value);
        if (count > long.MaxValue / size)
        {
            throw new SafetensorsException(path, name,
                $"shape {HostTensor.ShapeToString(shape)}'s byte size overflows 64 bits");
        }
        long bytes = count * size;
        long begin = offsets[0], end = offsets[1];
        if (end < begin || end - begin != bytes)
        {
            throw new SafetensorsException(path, name,
                $"data_offsets [{begin}, {end}] do not match {DTypes.ToSafetensorsName(dtype.Value)} "
                + $"{HostTensor.ShapeToString(shape)}, which needs {bytes} bytes");
        }
        if (end > dataLength)
        {
            throw new SafetensorsException(path, name,
                $"data_offsets end {end} is past the {dataLength}-byte data section "
                + "(file truncated?)");
        }
        return new SafetensorsTensorInfo(name, dtype.Value, [.. shape], begin, bytes);
    }

    private static List<long> ReadIntegers(ref Utf8JsonReader reader, string path, string name,
        string key)
    {
        if (reader.TokenType != JsonTokenType.StartArray)
        {
            throw new SafetensorsException(path, name, $"\"{key}\" is not an array");
        }
        var values = new List<long>();
        while (true)
        {
            Read(ref reader, path);
            if (reader.TokenType == JsonTokenType.EndArray)
            {
                return values;
            }
            if (reader.TokenType != JsonTokenType.Number || !reader.TryGetInt64(out long v) || v < 0)
            {
                throw new SafetensorsException(path, name,
                    $"\"{key}\" holds a value that is not a non-negative 64-bit integer");
            }
            if (values.Count == 64)
            {
                throw new SafetensorsException(path, name, $"\"{key}\" has more than 64 entries");
            }
            values.Add(v);
        }
    }

    /// <summary>True when the file holds a tensor called <paramref name="name"/>.</summary>
    public bool Contains(string name) => _byName.ContainsKey(name);

    /// <summary>The header entry of <paramref name="name"/>.</summary>
    /// <exception cref="SafetensorsException">No such tensor.</exception>
    public SafetensorsTensorInfo GetInfo(string name) =>
        _byName.TryGetValue(name, out SafetensorsTensorInfo? info)
            ? info
            : throw new SafetensorsException(Path, name, "no such tensor in the file");

    /// <summary>A zero-copy view of <paramref name="length"/> bytes of a tensor starting
    /// <paramref name="byteOffset"/> bytes into it. Spans cannot exceed 2 GB: walk larger tensors
    /// in chunks. The span is valid until this file is disposed.</summary>
    public ReadOnlySpan<byte> GetSpan(string name, long byteOffset, int length)
    {
        SafetensorsTensorInfo info = GetInfo(name);
        if (byteOffset < 0 || length < 0 || byteOffset > info.ByteLength - length)
        {
            throw new ArgumentOutOfRangeException(nameof(byteOffset),
                $"range [{byteOffset}, {byteOffset + length}) is outside tensor '{name}' of "
                + $"{info.ByteLength} bytes");
        }
        return new ReadOnlySpan<byte>(Base + _dataStart + info.DataOffset + byteOffset, length);
    }

    /// <summary>A zero-copy view of a whole tensor (at most 2 GB; use the chunked overload
    /// beyond). Valid until this file is disposed.</summary>
    public ReadOnlySpan<byte> GetSpan(string name)
    {
        SafetensorsTensorInfo info = GetInfo(name);
        if (info.ByteLength > int.MaxValue)
        {
            throw new SafetensorsException(Path, name,
                $"{info.ByteLength} bytes exceed one span; read it in chunks");
        }
        return GetSpan(name, 0, (int)info.ByteLength);
    }

    private byte* Base => _base != null ? _base : throw new ObjectDisposedException(Path);

    /// <summary>A tensor as an op-layer <see cref="Tensor"/> over the memory map, in its stored
    /// dtype, without copying; valid until this file is disposed.</summary>
    public Tensor GetTensor(string name)
    {
        SafetensorsTensorInfo info = GetInfo(name);
        var storage = new MappedStorage((nint)(Base + _dataStart + info.DataOffset),
            info.ByteLength, this);
        return Tensor.Over(storage, info.DType, info.Shape, ownsStorage: false, name);
    }

    /// <summary>Copies the raw little-endian bytes of a tensor, starting
    /// <paramref name="byteOffset"/> bytes into it, into <paramref name="destination"/>.</summary>
    public void ReadBytes(string name, long byteOffset, Span<byte> destination) =>
        GetSpan(name, byteOffset, destination.Length).CopyTo(destination);

    /// <summary>Streams a tensor's raw bytes to <paramref name="stream"/> in chunks.</summary>
    public void CopyTo(string name, Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        SafetensorsTensorInfo info = GetInfo(name);
        const int Chunk = 1 << 24;
        for (long start = 0; start < info.ByteLength; start += Chunk)
        {
            stream.Write(GetSpan(name, start, (int)Math.Min(Chunk, info.ByteLength - start)));
        }
    }

    /// <summary>Reads a floating-point tensor (F64, F32, F16, BF16, F8_E4M3 or F8_E5M2) as
    /// fp32.</summary>
    public HostTensor ReadFloat32(string name)
    {
        SafetensorsTensorInfo info = GetInfo(name);
        if (!DTypeConverter.IsConvertibleFloat(info.DType))
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
        ReadFloat32(name, 0, result);
        return new HostTensor(name, shape, result);
    }

    /// <summary>Converts <paramref name="destination"/>.Length elements of a float tensor,
    /// starting at element <paramref name="firstElement"/>, to fp32.</summary>
    public void ReadFloat32(string name, long firstElement, Span<float> destination)
    {
        SafetensorsTensorInfo info = GetInfo(name);
        int size = DTypes.SizeOf(info.DType);
        const int ChunkElements = 1 << 24;
        for (int done = 0; done < destination.Length; done += ChunkElements)
        {
            int n = Math.Min(ChunkElements, destination.Length - done);
            ReadOnlySpan<byte> bytes = GetSpan(name, (firstElement + done) * size, n * size);
            DTypeConverter.ToFloat32(info.DType, bytes, destination.Slice(done, n));
        }
    }

    /// <summary>Reads a floating-point tensor as bf16 bit patterns (rounded to nearest even
    /// from wider types).</summary>
    public ushort[] ReadBFloat16(string name, out int[] shape)
    {
        SafetensorsTensorInfo info = GetInfo(name);
        if (!DTypeConverter.IsConvertibleFloat(info.DType))
        {
            throw new SafetensorsException(Path, name,
                $"expected a floating-point tensor, found {DTypes.ToSafetensorsName(info.DType)}");
        }
        shape = ToIntShape(info);
        if (info.ElementCount > Array.MaxLength)
        {
            throw new SafetensorsException(Path, name,
                $"{info.ElementCount} elements exceed one host array");
        }
        ushort[] result = new ushort[info.ElementCount];
        int size = DTypes.SizeOf(info.DType);
        const int ChunkElements = 1 << 24;
        for (int done = 0; done < result.Length; done += ChunkElements)
        {
            int n = Math.Min(ChunkElements, result.Length - done);
            DTypeConverter.ToBFloat16(info.DType, GetSpan(name, (long)done * size, n * size),
                result.AsSpan(done, n));
        }
        return result;
    }

    /// <summary>Reads an integer tensor (I32, or I64 whose values fit in 32 bits).</summary>
    public int[] ReadInt32(string name, out int[] shape)
    {
        SafetensorsTensorInfo info = GetInfo(name);
        shape = ToIntShape(info);
        if (info.DType is not (DType.I32 or DType.I64))
        {
            throw new SafetensorsException(Path, name,
                $"expected an I32 or I64 tensor, found {DTypes.ToSafetensorsName(info.DType)}");
        }
        if (info.ElementCount > Array.MaxLength)
        {
            throw new SafetensorsException(Path, name,
                $"{info.ElementCount} elements exceed one host array");
        }
        int[] values = new int[info.ElementCount];
        int size = DTypes.SizeOf(info.DType);
        const int ChunkElements = 1 << 20;
        for (int done = 0; done < values.Length; done += ChunkElements)
        {
            int n = Math.Min(ChunkElements, values.Length - done);
            ReadOnlySpan<byte> bytes = GetSpan(name, (long)done * size, n * size);
            for (int i = 0; i < n; i++)
            {
                if (info.DType == DType.I32)
                {
                    values[done + i] = BinaryPrimitives.ReadInt32LittleEndian(bytes[(4 * i)..]);
                    continue;
                }
                long v = BinaryPrimitives.ReadInt64LittleEndian(bytes[(8 * i)..]);
                values[done + i] = v is >= int.MinValue and <= int.MaxValue
                    ? (int)v
                    : throw new SafetensorsException(Path, name,
                        $"value {v} at {done + i} does not fit in int32");
            }
        }
        return values;
    }

    private int[] ToIntShape(SafetensorsTensorInfo info)
    {
        int[] shape = new int[info.Shape.Length];
        for (int i = 0; i < shape.Length; i++)
        {
            shape[i] = info.Shape[i] <= int.MaxValue
                ? (int)info.Shape[i]
                : throw new SafetensorsException(Path, info.Name,
                    $"dimension {info.Shape[i]} exceeds int32");
        }
        return shape;
    }

    /// <summary>Converts little-endian elements of a float dtype to fp32.</summary>
    public static void ConvertToFloat32(DType dtype, ReadOnlySpan<byte> source, Span<float> destination) =>
        DTypeConverter.ToFloat32(dtype, source, destination);

    /// <inheritdoc />
    public void Dispose()
    {
        if (_base == null)
        {
            return;
        }
        _base = null;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map.Dispose();
    }

    /// <summary>The path and tensor count, for diagnostics.</summary>
    public override string ToString() => $"{Path} ({Tensors.Count} tensors)";
}
