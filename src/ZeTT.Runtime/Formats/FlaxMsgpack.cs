using System.IO.MemoryMappedFiles;
using System.Text;
using ZeTT.Ops;
using ZeTT.Runtime.Tensors;

namespace ZeTT.Runtime.Formats;

/// <summary>
/// Reads the arrays of a Flax checkpoint written by <c>flax.serialization.msgpack_serialize</c>
/// (<c>flax_model.msgpack</c>): nested msgpack maps of string keys whose leaves are numpy arrays
/// stored as msgpack extension values of type 1, each holding a msgpack array
/// <c>(shape, dtype name, raw C-order bytes)</c>; arrays above 1 GB are split into a map
/// <c>{"__msgpack_chunked_array__": true, "shape": {"0": …}, "chunks": {"0": array, …}}</c>.
/// <para>A purpose-built reader rather than a general msgpack library: the file is
/// memory-mapped with 64-bit offsets (Mistral-7B's hypernetwork exceeds 2 GB in fp32), array
/// bytes are never copied before conversion, and hostile input (truncation, lengths past the
/// end, deep nesting, bad shapes) is a <see cref="ZettException"/> naming the file and the
/// key path.</para>
/// </summary>
public static unsafe class FlaxMsgpack
{
    private const int MaxDepth = 32;
    private const byte NdArrayExtType = 1;
    private const byte ScalarExtType = 3;

    /// <summary>Reads every array leaf as fp32, keyed by its path joined with dots
    /// (<c>model.encoder.layer.0.attention.self.query.kernel</c>). Float dtypes are converted
    /// (float64/float32/float16/bfloat16); other leaves (integer arrays, scalars) are skipped
    /// unless <paramref name="keep"/> rejects them first.</summary>
    /// <param name="path">The <c>.msgpack</c> file.</param>
    /// <param name="keep">Filter on the dotted key path; leaves it rejects are not decoded.</param>
    public static Dictionary<string, HostTensor> ReadTensors(string path, Func<string, bool>? keep = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path))
        {
            throw new ZettException($"{path}: file not found");
        }
        long length = new FileInfo(path).Length;
        if (length == 0)
        {
            throw new ZettException($"{path}: empty file");
        }
        using MemoryMappedFile map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0,
            MemoryMappedFileAccess.Read);
        using MemoryMappedViewAccessor view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        byte* pointer = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
        try
        {
            var cursor = new Cursor(path, pointer + view.PointerOffset, length);
            var result = new Dictionary<string, HostTensor>(StringComparer.Ordinal);
            if (cursor.PeekMapCount() is null)
            {
                throw new ZettException($"{path}: the top level is not a msgpack map");
            }
            ReadNode(ref cursor, "", 0, result, keep ?? (_ => true));
            if (cursor.Position != length)
            {
                throw new ZettException($"{path}: {length - cursor.Position} trailing bytes after the "
                    + "msgpack value");
            }
            return result;
        }
        finally
        {
            view.SafeMemoryMappedViewHandle.ReleasePointer();
        }
    }

    private static void ReadNode(ref Cursor c, string key, int depth, Dictionary<string, HostTensor> result,
        Func<string, bool> keep)
    {
        if (depth > MaxDepth)
        {
            throw c.Error(key, $"nested deeper than {MaxDepth} levels");
        }
        long? count = c.PeekMapCount();
        if (count is null)
        {
            long start = c.Position;
            if (c.TryReadExt(out byte type, out long offset, out long len))
            {
                if (type == NdArrayExtType && keep(key))
                {
                    AddArray(ref c, key, offset, len, result);
                }
                else if (type is not (NdArrayExtType or ScalarExtType))
                {
                    throw c.Error(key, $"unknown msgpack extension type {type}");
                }
                return;
            }
            c.Position = start;
            c.Skip(key, depth);
            return;
        }
        c.ReadMapHeader(key);
        var chunk = new ChunkedArray();
        for (long i = 0; i < count; i++)
        {
            string child = c.ReadString(key);
            string childKey = key.Length == 0 ? child : key + "." + child;
            if (child == "__msgpack_chunked_array__" || chunk.Seen)
            {
                chunk.Seen = true;
                chunk.Read(ref c, key, child);
                continue;
            }
            ReadNode(ref c, childKey, depth + 1, result, keep);
        }
        if (chunk.Seen && keep(key))
        {
            result[key] = chunk.Assemble(ref c, key);
        }
    }

    private static void AddArray(ref Cursor c, string key, long offset, long len,
        Dictionary<string, HostTensor> result)
    {
        NdArray a = ReadNdArray(ref c, key, offset, len);
        if (a.DType is null)
        {
            return;
        }
        float[] data = new float[a.Count];
        a.Convert(ref c, data, key);
        result[key] = new HostTensor(key, a.Shape, data);
    }

    /// <summary>One ndarray extension payload: its shape, dtype and where its bytes are.</summary>
    private readonly record struct NdArray(int[] Shape, DType? DType, long DataOffset, long DataLength,
        int Count)
    {
        public void Convert(ref Cursor c, Span<float> destination, string key)
        {
            int size = DTypes.SizeOf(DType!.Value);
            const int Chunk = 1 << 24;
            for (int done = 0; done < destination.Length; done += Chunk)
            {
                int n = Math.Min(Chunk, destination.Length - done);
                DTypeConverter.ToFloat32(DType!.Value, c.Span(DataOffset + ((long)done * size), n * size, key),
                    destination.Slice(done, n));
            }
        }
    }

    private static NdArray ReadNdArray(ref Cursor outer, string key, long offset, long len)
    {
        var c = new Cursor(outer.File, outer.Base + offset, len);
        if (c.ReadArrayHeader(key) != 3)
        {
            throw c.Error(key, "ndarray payload is not (shape, dtype, data)");
        }
        long rank = c.ReadArrayHeader(key);
        if (rank > 32)
        {
            throw c.Error(key, $"ndarray has {rank} dimensions");
        }
        int[] shape = new int[rank];
        long count = 1;
        for (int i = 0; i < rank; i++)
        {
            long d = c.ReadInteger(key);
            if (d is < 0 or > int.MaxValue)
            {
                throw c.Error(key, $"dimension {d} is not a non-negative int32");
            }
            shape[i] = (int)d;
            count = count * d > Array.MaxLength
                ? throw c.Error(key, $"{HostTensor.ShapeToString(shape)} holds more elements than one array")
                : count * d;
        }
        string dtypeName = c.ReadString(key);
        (long dataOffset, long dataLength) = c.ReadBin(key);
        DType? dtype = dtypeName switch
        {
            "float32" => DType.F32,
            "float16" => DType.F16,
            "bfloat16" => DType.BF16,
            "float64" => DType.F64,
            "int8" or "int16" or "int32" or "int64" or "uint8" or "uint16" or "uint32" or "uint64"
                or "bool" => null,
            _ => throw c.Error(key, $"unknown ndarray dtype '{dtypeName}'"),
        };
        int itemSize = dtype is { } dt ? DTypes.SizeOf(dt) : ItemSize(dtypeName);
        if (dataLength != count * itemSize)
        {
            throw c.Error(key, $"{dtypeName} {HostTensor.ShapeToString(shape)} needs {count * itemSize} "
                + $"bytes but the array holds {dataLength}");
        }
        if (c.Position != len)
        {
            throw c.Error(key, "ndarray payload has trailing bytes");
        }
        return new NdArray(shape, dtype, offset + dataOffset, dataLength, (int)count);
    }

    private static int ItemSize(string dtypeName) => dtypeName switch
    {
        "int8" or "uint8" or "bool" => 1,
        "int16" or "uint16" => 2,
        "int32" or "uint32" => 4,
        _ => 8,
    };

    /// <summary>The pieces of a chunked array, gathered while walking its map.</summary>
    private sealed class ChunkedArray
    {
        public bool Seen;
        private int[]? _shape;
        private readonly List<NdArray> _chunks = [];

        public void Read(ref Cursor c, string key, string field)
        {
            switch (field)
            {
                case "__msgpack_chunked_array__":
                    c.Skip(key, 0);
                    break;
                case "shape":
                    long rank = c.ReadMapHeader(key);
                    if (rank > 32)
                    {
                        throw c.Error(key, $"chunked array has {rank} dimensions");
                    }
                    var dims = new SortedDictionary<int, int>();
                    for (long i = 0; i < rank; i++)
                    {
                        string k = c.ReadString(key);
                        long d = c.ReadInteger(key);
                        if (!int.TryParse(k, out int index) || index < 0 || index >= rank || d is < 0 or > int.MaxValue
                            || !dims.TryAdd(index, (int)d))
                        {
                            throw c.Error(key, "chunked array has a malformed shape");
                        }
                    }
                    _shape = [.. dims.Values];
                    break;
                case "chunks":
                    long n = c.ReadMapHeader(key);
                    var ordered = new SortedDictionary<int, NdArray>();
                    for (long i = 0; i < n; i++)
                    {
                        string k = c.ReadString(key);
                        if (!c.TryReadExt(out byte type, out long offset, out long len) || type != NdArrayExtType
                            || !int.TryParse(k, out int index) || index < 0 || index >= n)
                        {
                            throw c.Error(key, "chunked array has a malformed chunk");
                        }
                        if (!ordered.TryAdd(index, ReadNdArray(ref c, key, offset, len)))
                        {
                            throw c.Error(key, $"chunk {index} appears twice");
                        }
                    }
                    _chunks.AddRange(ordered.Values);
                    break;
                default:
                    throw c.Error(key, $"unexpected key '{field}' in a chunked array");
            }
        }

        public HostTensor Assemble(ref Cursor c, string key)
        {
            if (_shape is null || _chunks.Count == 0 || _chunks.Any(ch => ch.DType != _chunks[0].DType)
                || _chunks[0].DType is null)
            {
                throw c.Error(key, "chunked array lacks its shape, its chunks, or a float dtype");
            }
            long count = _shape.Aggregate(1L, (a, b) => a * b);
            if (count > Array.MaxLength || _chunks.Sum(ch => (long)ch.Count) != count)
            {
                throw c.Error(key, $"chunks do not add up to shape {HostTensor.ShapeToString(_shape)}");
            }
            float[] data = new float[count];
            int done = 0;
            foreach (NdArray ch in _chunks)
            {
                ch.Convert(ref c, data.AsSpan(done, ch.Count), key);
                done += ch.Count;
            }
            return new HostTensor(key, _shape, data);
        }
    }

    /// <summary>A bounds-checked position in the mapped bytes.</summary>
    private struct Cursor(string file, byte* basePointer, long length)
    {
        public readonly string File = file;
        public readonly byte* Base = basePointer;
        public readonly long Length = length;
        public long Position;

        public readonly ZettException Error(string key, string what) =>
            new($"{File}: {(key.Length == 0 ? "" : $"'{key}': ")}{what} (at byte {Position})");

        private void Need(long n, string key)
        {
            if (n < 0 || n > Length - Position)
            {
                throw Error(key, $"needs {n} bytes but the data ends (file truncated?)");
            }
        }

        public readonly ReadOnlySpan<byte> Span(long offset, int length, string key) =>
            offset >= 0 && length >= 0 && offset <= Length - length
                ? new ReadOnlySpan<byte>(Base + offset, length)
                : throw Error(key, "array data past the end");

        private byte Byte(string key)
        {
            Need(1, key);
            return Base[Position++];
        }

        private ulong BigEndian(int bytes, string key)
        {
            Need(bytes, key);
            ulong v = 0;
            for (int i = 0; i < bytes; i++)
            {
                v = (v << 8) | Base[Position + i];
            }
            Position += bytes;
            return v;
        }

        public long? PeekMapCount()
        {
            if (Position >= Length)
            {
                return null;
            }
            byte b = Base[Position];
            long save = Position;
            long? count = b switch
            {
                >= 0x80 and <= 0x8f => b & 0x0f,
                0xde => Position + 3 <= Length ? (long)ReadBigEndianAt(1, 2) : null,
                0xdf => Position + 5 <= Length ? (long)ReadBigEndianAt(1, 4) : null,
                _ => null,
            };
            Position = save;
            return count;
        }

        private readonly ulong ReadBigEndianAt(int skip, int bytes)
        {
            ulong v = 0;
            for (int i = 0; i < bytes; i++)
            {
                v = (v << 8) | Base[Position + skip + i];
            }
            return v;
        }

        public long ReadMapHeader(string key)
        {
            byte b = Byte(key);
            long n = b switch
            {
                >= 0x80 and <= 0x8f => b & 0x0f,
                0xde => (long)BigEndian(2, key),
                0xdf => (long)BigEndian(4, key),
                _ => throw Error(key, $"expected a map, found msgpack code 0x{b:x2}"),
            };
            // Every entry takes at least two bytes: a count beyond that is a lie.
            return n <= (Length - Position) / 2 ? n : throw Error(key, $"map of {n} entries overruns the data");
        }

        public long ReadArrayHeader(string key)
        {
            byte b = Byte(key);
            long n = b switch
            {
                >= 0x90 and <= 0x9f => b & 0x0f,
                0xdc => (long)BigEndian(2, key),
                0xdd => (long)BigEndian(4, key),
                _ => throw Error(key, $"expected an array, found msgpack code 0x{b:x2}"),
            };
            return n <= Length - Position ? n : throw Error(key, $"array of {n} items overruns the data");
        }

        public string ReadString(string key)
        {
            byte b = Byte(key);
            long n = b switch
            {
                >= 0xa0 and <= 0xbf => b & 0x1f,
                0xd9 => (long)BigEndian(1, key),
                0xda => (long)BigEndian(2, key),
                0xdb => (long)BigEndian(4, key),
                0xc4 => (long)BigEndian(1, key),
                0xc5 => (long)BigEndian(2, key),
                0xc6 => (long)BigEndian(4, key),
                _ => throw Error(key, $"expected a string, found msgpack code 0x{b:x2}"),
            };
            Need(n, key);
            if (n > 1 << 20)
            {
                throw Error(key, $"string of {n} bytes");
            }
            string s;
            try
            {
                s = new UTF8Encoding(false, true).GetString(new ReadOnlySpan<byte>(Base + Position, (int)n));
            }
            catch (DecoderFallbackException)
            {
                throw Error(key, "string is not valid UTF-8");
            }
            Position += n;
            return s;
        }

        public long ReadInteger(string key)
        {
            byte b = Byte(key);
            return b switch
            {
                <= 0x7f => b,
                >= 0xe0 => (sbyte)b,
                0xcc => (long)BigEndian(1, key),
                0xcd => (long)BigEndian(2, key),
                0xce => (long)BigEndian(4, key),
                0xcf => BigEndian(8, key) is var u && u <= long.MaxValue ? (long)u
                    : throw Error(key, "integer exceeds int64"),
                0xd0 => (sbyte)BigEndian(1, key),
                0xd1 => (short)BigEndian(2, key),
                0xd2 => (int)BigEndian(4, key),
                0xd3 => (long)BigEndian(8, key),
                _ => throw Error(key, $"expected an integer, found msgpack code 0x{b:x2}"),
            };
        }

        public (long Offset, long Length) ReadBin(string key)
        {
            byte b = Byte(key);
            long n = b switch
            {
                0xc4 => (long)BigEndian(1, key),
                0xc5 => (long)BigEndian(2, key),
                0xc6 => (long)BigEndian(4, key),
                _ => throw Error(key, $"expected binary data, found msgpack code 0x{b:x2}"),
            };
            Need(n, key);
            long offset = Position;
            Position += n;
            return (offset, n);
        }

        public bool TryReadExt(out byte type, out long offset, out long length)
        {
            type = 0;
            offset = length = 0;
            if (Position >= Length)
            {
                return false;
            }
            byte b = Base[Position];
            long n;
            switch (b)
            {
                case 0xd4: n = 1; Position++; break;
                case 0xd5: n = 2; Position++; break;
                case 0xd6: n = 4; Position++; break;
                case 0xd7: n = 8; Position++; break;
                case 0xd8: n = 16; Position++; break;
                case 0xc7: Position++; n = (long)BigEndian(1, ""); break;
                case 0xc8: Position++; n = (long)BigEndian(2, ""); break;
                case 0xc9: Position++; n = (long)BigEndian(4, ""); break;
                default: return false;
            }
            type = Byte("");
            Need(n, "");
            offset = Position;
            length = n;
            Position += n;
            return true;
        }

        /// <summary>Skips one value of any kind.</summary>
        public void Skip(string key, int depth)
        {
            if (depth > MaxDepth)
            {
                throw Error(key, $"nested deeper than {MaxDepth} levels");
            }
            if (TryReadExt(out _, out _, out _))
            {
                return;
            }
            Need(1, key);
            byte b = Base[Position];
            switch (b)
            {
                case <= 0x7f or >= 0xe0 or 0xc0 or 0xc2 or 0xc3:
                    Position++;
                    return;
                case >= 0x80 and <= 0x8f or 0xde or 0xdf:
                    long m = ReadMapHeader(key);
                    for (long i = 0; i < 2 * m; i++)
                    {
                        Skip(key, depth + 1);
                    }
                    return;
                case >= 0x90 and <= 0x9f or 0xdc or 0xdd:
                    long a = ReadArrayHeader(key);
                    for (long i = 0; i < a; i++)
                    {
                        Skip(key, depth + 1);
                    }
                    return;
                case >= 0xa0 and <= 0xbf or 0xd9 or 0xda or 0xdb:
                    ReadString(key);
                    return;
                case 0xc4 or 0xc5 or 0xc6:
                    ReadBin(key);
                    return;
                case 0xca: Position++; Need(4, key); Position += 4; return;
                case 0xcb: Position++; Need(8, key); Position += 8; return;
                case >= 0xcc and <= 0xd3:
                    ReadInteger(key);
                    return;
                default:
                    throw Error(key, $"invalid msgpack code 0x{b:x2}");
            }
        }
    }
}
