using System.Buffers.Binary;
using System.Text;
using ZeTT.Ops;
using ZeTT.Runtime.Formats;

namespace ZeTT.Runtime.Tests.Formats;

public sealed class SafetensorsFormatTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zett-stf-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<DType> AllDTypes() => new(Enum.GetValues<DType>());

    [Theory]
    [MemberData(nameof(AllDTypes))]
    public void Every_dtype_round_trips_bit_for_bit(DType dtype)
    {
        var rng = new Random((int)dtype + 1);
        long[] shape = [3, 5];
        byte[] data = new byte[15 * DTypes.SizeOf(dtype)];
        rng.NextBytes(data);
        byte[] scalar = new byte[DTypes.SizeOf(dtype)];
        rng.NextBytes(scalar);
        string path = Path.Combine(_dir, "all.safetensors");
        SafetensorsWriter.Write(path, [
            SafetensorsEntry.FromBytes("t", dtype, shape, data),
            SafetensorsEntry.FromBytes("scalar", dtype, [], scalar),
            SafetensorsEntry.FromBytes("empty", dtype, [0, 4], Array.Empty<byte>()),
        ]);
        using SafetensorsFile file = SafetensorsFile.Open(path);
        SafetensorsTensorInfo info = file.GetInfo("t");
        Assert.Equal(dtype, info.DType);
        Assert.Equal(shape, info.Shape);
        Assert.Equal(data, file.GetSpan("t").ToArray());
        Assert.Equal(scalar, file.GetSpan("scalar").ToArray());
        Assert.Empty(file.GetSpan("empty").ToArray());
        Assert.Equal(0, file.GetInfo("empty").ElementCount);
        Assert.Equal("pt", file.Metadata["format"]);
    }

    [Theory]
    [InlineData(DType.F64)]
    [InlineData(DType.F32)]
    [InlineData(DType.F16)]
    [InlineData(DType.BF16)]
    [InlineData(DType.F8E4M3)]
    [InlineData(DType.F8E5M2)]
    public void Float_conversion_matches_a_scalar_reference_on_awkward_lengths(DType dtype)
    {
        var rng = new Random(7);
        foreach (int n in new[] { 0, 1, 15, 16, 17, 33, 1000 })
        {
            byte[] bytes = new byte[n * DTypes.SizeOf(dtype)];
            rng.NextBytes(bytes);
            float[] fast = new float[n];
            DTypeConverter.ToFloat32(dtype, bytes, fast);
            for (int i = 0; i < n; i++)
            {
                float expected = ScalarReference(dtype, bytes.AsSpan(i * DTypes.SizeOf(dtype)));
                Assert.True(expected.Equals(fast[i]) || (float.IsNaN(expected) && float.IsNaN(fast[i])),
                    $"{dtype} n={n} element {i}: {fast[i]} vs {expected}");
            }
        }
    }

    private static float ScalarReference(DType dtype, ReadOnlySpan<byte> b)
    {
        switch (dtype)
        {
            case DType.F64: return (float)BinaryPrimitives.ReadDoubleLittleEndian(b);
            case DType.F32: return BinaryPrimitives.ReadSingleLittleEndian(b);
            case DType.F16: return (float)BinaryPrimitives.ReadHalfLittleEndian(b);
            case DType.BF16: return BFloat16.ToFloat(BinaryPrimitives.ReadUInt16LittleEndian(b));
            case DType.F8E5M2: return (float)BitConverter.UInt16BitsToHalf((ushort)(b[0] << 8));
            default:
                // E4M3FN from its definition: bias 7, subnormals at exponent 0, S.1111.111 = NaN.
                int e = (b[0] >> 3) & 15, m = b[0] & 7;
                double v = e == 15 && m == 7 ? double.NaN
                    : e == 0 ? m * Math.Pow(2, -9) : (8 + m) * Math.Pow(2, e - 10);
                return (float)((b[0] & 0x80) != 0 ? -v : v);
        }
    }

    [Fact]
    public void E4M3_known_values()
    {
        Assert.Equal(448f, DTypeConverter.E4M3ToFloat(0x7E));
        Assert.Equal(1f, DTypeConverter.E4M3ToFloat(0x38));
        Assert.Equal(-2f, DTypeConverter.E4M3ToFloat(0xC0));
        Assert.Equal(MathF.Pow(2, -9), DTypeConverter.E4M3ToFloat(0x01));
        Assert.True(float.IsNaN(DTypeConverter.E4M3ToFloat(0x7F)));
    }

    [Fact]
    public void Vectorised_bf16_rounding_equals_the_scalar_rounding()
    {
        var rng = new Random(3);
        float[] values = new float[1037];
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = BitConverter.Int32BitsToSingle(rng.Next());
        }
        values[0] = float.NaN;
        values[1] = float.PositiveInfinity;
        values[2] = BitConverter.UInt32BitsToSingle(0x3F80_8000); // exact tie: rounds to even
        values[3] = BitConverter.UInt32BitsToSingle(0x3F81_8000); // tie: rounds up to even
        ushort[] fast = new ushort[values.Length];
        DTypeConverter.NarrowToBFloat16(values, fast);
        for (int i = 0; i < values.Length; i++)
        {
            Assert.Equal(BFloat16.FromFloat(values[i]), fast[i]);
        }
        float[] back = new float[values.Length];
        DTypeConverter.WidenBFloat16(fast, back);
        for (int i = 0; i < values.Length; i++)
        {
            Assert.Equal(BFloat16.ToFloat(fast[i]), back[i]);
        }
    }

    [Theory]
    [InlineData(DType.F64)]
    [InlineData(DType.F32)]
    [InlineData(DType.F16)]
    [InlineData(DType.BF16)]
    public void Float32_storage_round_trips_and_reads_as_bf16(DType storeAs)
    {
        float[] data = Enumerable.Range(0, 37).Select(i => (i - 18) * 0.731f).ToArray();
        string path = Path.Combine(_dir, "f.safetensors");
        SafetensorsWriter.Write(path, [SafetensorsEntry.FromFloat32("w", [37], data, storeAs)]);
        using SafetensorsFile file = SafetensorsFile.Open(path);
        float[] read = file.ReadFloat32("w").Data;
        ushort[] bf = file.ReadBFloat16("w", out int[] shape);
        Assert.Equal([37], shape);
        for (int i = 0; i < data.Length; i++)
        {
            float expected = storeAs switch
            {
                DType.BF16 => BFloat16.Round(data[i]),
                DType.F16 => (float)(Half)data[i],
                _ => data[i],
            };
            Assert.Equal(expected, read[i]);
            Assert.Equal(BFloat16.FromFloat(read[i]), bf[i]);
        }
    }

    [Fact]
    public void Sharded_write_and_read_through_the_index()
    {
        var entries = Enumerable.Range(0, 5)
            .Select(i => SafetensorsEntry.FromFloat32($"layer.{i}.w", [4, 4],
                Enumerable.Range(0, 16).Select(k => (float)(i * 100 + k)).ToArray()))
            .ToList();
        IReadOnlyList<string> written = SafetensorsWriter.WriteSharded(_dir, entries, maxShardBytes: 130);
        Assert.Equal(["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
            "model-00003-of-00003.safetensors", "model.safetensors.index.json"], written);
        using SafetensorsCollection c = SafetensorsCollection.Open(_dir);
        Assert.True(c.IsSharded);
        Assert.Equal(3, c.Files.Count);
        Assert.Equal(5 * 64L, c.TotalBytes);
        Assert.Equal("320", c.IndexMetadata["total_size"]);
        Assert.Equal(403f, c.ReadFloat32("layer.4.w").Data[3]);
        Assert.EndsWith("model-00003-of-00003.safetensors", c.FileOf("layer.4.w").Path, StringComparison.Ordinal);
    }

    [Fact]
    public void Small_checkpoints_are_one_file_without_index()
    {
        IReadOnlyList<string> written = SafetensorsWriter.WriteSharded(_dir,
            [SafetensorsEntry.FromFloat32("a", [2], [1f, 2f])], maxShardBytes: 1 << 20);
        Assert.Equal(["model.safetensors"], written);
        using SafetensorsCollection c = SafetensorsCollection.Open(_dir);
        Assert.False(c.IsSharded);
        Assert.Equal([1f, 2f], c.ReadFloat32("a").Data);
    }

    [Theory]
    [InlineData("missing-shard")]
    [InlineData("tensor-not-in-shard")]
    [InlineData("unlisted-tensor")]
    [InlineData("path-escape")]
    [InlineData("bad-json")]
    [InlineData("no-weight-map")]
    [InlineData("corrupt-shard")]
    public void Bad_index_is_one_typed_error(string kind)
    {
        SafetensorsWriter.WriteSharded(_dir, [
            SafetensorsEntry.FromFloat32("a", [4], [1, 2, 3, 4]),
            SafetensorsEntry.FromFloat32("b", [4], [1, 2, 3, 4]),
        ], maxShardBytes: 16);
        string index = Path.Combine(_dir, SafetensorsWriter.IndexFileName);
        string shard1 = Path.Combine(_dir, "model-00001-of-00002.safetensors");
        string text = File.ReadAllText(index);
        switch (kind)
        {
            case "missing-shard": File.Delete(shard1); break;
            case "tensor-not-in-shard":
                File.WriteAllText(index, text.Replace("\"b\": \"model-00002", "\"b\": \"model-00001",
                    StringComparison.Ordinal));
                break;
            case "unlisted-tensor":
                SafetensorsWriter.Write(Path.Combine(_dir, "model-00002-of-00002.safetensors"), [
                    SafetensorsEntry.FromFloat32("b", [4], [1, 2, 3, 4]),
                    SafetensorsEntry.FromFloat32("stray", [1], [5]),
                ]);
                break;
            case "path-escape":
                File.WriteAllText(index, text.Replace("\"model-00001", "\"../model-00001",
                    StringComparison.Ordinal));
                break;
            case "bad-json": File.WriteAllText(index, "{\"weight_map\": {"); break;
            case "no-weight-map": File.WriteAllText(index, "{\"metadata\": {}}"); break;
            default:
                byte[] b = File.ReadAllBytes(shard1);
                File.WriteAllBytes(shard1, b[..^2]);
                break;
        }
        var e = Assert.Throws<SafetensorsException>(() => SafetensorsCollection.Open(_dir));
        Assert.False(string.IsNullOrEmpty(e.What));
        Assert.Contains(_dir, e.Message, StringComparison.Ordinal);
    }

    // ---- hostile corpus: every case must be a SafetensorsException, nothing else ----

    private static byte[] File2(string header, byte[] data, ulong? declaredLength = null)
    {
        byte[] h = Encoding.UTF8.GetBytes(header);
        byte[] file = new byte[8 + h.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(file, declaredLength ?? (ulong)h.Length);
        h.CopyTo(file, 8);
        data.CopyTo(file, 8 + h.Length);
        return file;
    }

    private static byte[] Valid()
    {
        const string H = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
            + "\"b\":{\"dtype\":\"I8\",\"shape\":[2,2],\"data_offsets\":[8,12]}}";
        return File2(H, new byte[12]);
    }

    public static TheoryData<string, byte[]> HostileCorpus()
    {
        var data = new TheoryData<string, byte[]>();
        byte[] valid = Valid();
        int headerEnd = 8 + (int)BinaryPrimitives.ReadUInt64LittleEndian(valid);
        // Truncation at and around every region boundary: length prefix, header, each tensor.
        foreach (int cut in new[] { 0, 1, 7, 8, 9, headerEnd - 1, headerEnd, headerEnd + 4,
            headerEnd + 7, headerEnd + 8, headerEnd + 11 })
        {
            data.Add($"truncated at {cut}", valid[..cut]);
        }
        data.Add("trailing bytes", [.. valid, 0]);
        data.Add("header length 2^63", File2("{}", [], 1UL << 63));
        data.Add("header length 2^64-1", File2("{}", [], ulong.MaxValue));
        data.Add("header length past end", File2("{}", [], 1000));
        data.Add("header length over cap", File2("{}", [], 200_000_000));
        void Add(string name, string header, int dataBytes) =>
            data.Add(name, File2(header, new byte[dataBytes]));
        Add("offsets past end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8);
        Add("overlap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
            + "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12);
        Add("gap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
            + "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12);
        Add("shape/size mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8);
        Add("reversed offsets", "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8);
        Add("negative dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8);
        Add("fractional dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8);
        Add("huge dims overflow", "{\"a\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],"
            + "\"data_offsets\":[0,8]}}", 8);
        Add("byte size overflow", "{\"a\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952],"
            + "\"data_offsets\":[0,8]}}", 8);
        Add("offset beyond int64", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],"
            + "\"data_offsets\":[0,99999999999999999999]}}", 8);
        Add("unknown dtype", "{\"a\":{\"dtype\":\"F128\",\"shape\":[1],\"data_offsets\":[0,16]}}", 16);
        Add("missing offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4);
        Add("three offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,4]}}", 4);
        Add("unknown key", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4);
        Add("duplicate tensor", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
            + "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2);
        Add("duplicate inner key", "{\"a\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],"
            + "\"data_offsets\":[0,1]}}", 1);
        Add("duplicate metadata key", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0);
        Add("metadata not strings", "{\"__metadata__\":{\"k\":1}}", 0);
        Add("metadata not object", "{\"__metadata__\":[1]}", 0);
        Add("entry not object", "{\"a\":[1,2]}", 0);
        Add("not an object", "[1,2,3]", 0);
        Add("empty header", "", 0);
        Add("unterminated JSON", "{\"a\":{\"dtype\":\"F32\"", 0);
        Add("trailing garbage", "{} x", 0);
        Add("comment", "{/*c*/}", 0);
        Add("trailing comma", "{\"__metadata__\":{},}", 0);
        Add("deep JSON", "{\"a\":" + new string('[', 100_000) + new string(']', 100_000) + "}", 0);
        Add("deep shape", "{\"a\":{\"dtype\":\"U8\",\"shape\":[[1]],\"data_offsets\":[0,1]}}", 1);
        Add("huge JSON", "{\"__metadata__\":{\"k\":\"" + new string('x', 2_000_000) + "\",\"k\":\"\"}}", 0);
        Add("long shape", "{\"a\":{\"dtype\":\"U8\",\"shape\":[" + string.Join(",", Enumerable.Repeat("1", 100))
            + "],\"data_offsets\":[0,1]}}", 1);
        byte[] nonUtf8 = File2("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", new byte[1]);
        nonUtf8[11] = 0xFF;
        data.Add("non-UTF8 name", nonUtf8);
        data.Add("empty file", []);
        return data;
    }

    [Theory]
    [MemberData(nameof(HostileCorpus))]
    public void Hostile_file_yields_the_typed_error(string name, byte[] bytes)
    {
        string path = Path.Combine(_dir, "hostile.safetensors");
        File.WriteAllBytes(path, bytes);
        SafetensorsException e;
        try
        {
            using SafetensorsFile f = SafetensorsFile.Open(path);
            Assert.Fail($"{name}: opened without error");
            return;
        }
        catch (SafetensorsException caught)
        {
            e = caught;
        }
        Assert.Equal(path, e.File);
        Assert.StartsWith(path + ": ", e.Message, StringComparison.Ordinal);
        Assert.False(string.IsNullOrWhiteSpace(e.What), name);
    }

    [Fact]
    public void The_valid_base_of_the_corpus_opens()
    {
        string path = Path.Combine(_dir, "valid.safetensors");
        File.WriteAllBytes(path, Valid());
        using SafetensorsFile f = SafetensorsFile.Open(path);
        Assert.Equal(["a", "b"], f.Tensors.Select(t => t.Name));
    }

    [Fact]
    public void Errors_name_the_tensor()
    {
        string path = Path.Combine(_dir, "t.safetensors");
        File.WriteAllBytes(path, File2(
            "{\"ok\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
            + "\"weird\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[1,2]}}", new byte[2]));
        var e = Assert.Throws<SafetensorsException>(() => SafetensorsFile.Open(path));
        Assert.Equal("weird", e.Tensor);
        Assert.Contains("unknown dtype \"Q4\"", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Unaligned_offsets_from_other_writers_are_read_correctly()
    {
        // A header of odd length puts the F32 data at an odd file offset: legal in the format.
        string path = Path.Combine(_dir, "odd.safetensors");
        byte[] payload = new byte[9];
        payload[0] = 7;
        BinaryPrimitives.WriteSingleLittleEndian(payload.AsSpan(1), 1.5f);
        BinaryPrimitives.WriteSingleLittleEndian(payload.AsSpan(5), -2f);
        File.WriteAllBytes(path, File2("{\"u\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
            + "\"f\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[1,9]}}", payload));
        using SafetensorsFile f = SafetensorsFile.Open(path);
        Assert.Equal([1.5f, -2f], f.ReadFloat32("f").Data);
    }

    [Fact]
    public void Spans_after_dispose_are_refused()
    {
        string path = Path.Combine(_dir, "d.safetensors");
        SafetensorsWriter.Write(path, [SafetensorsEntry.FromFloat32("x", [1], [1f])]);
        SafetensorsFile f = SafetensorsFile.Open(path);
        f.Dispose();
        Assert.Throws<ObjectDisposedException>(() => f.GetSpan("x").Length);
    }

    [Fact]
    public void Copy_entries_stream_bit_for_bit()
    {
        string a = Path.Combine(_dir, "src.safetensors"), b = Path.Combine(_dir, "dst.safetensors");
        byte[] raw = Enumerable.Range(0, 64).Select(i => (byte)(i * 7)).ToArray();
        SafetensorsWriter.Write(a, [SafetensorsEntry.FromBytes("w", DType.BF16, [4, 8], raw)]);
        using (SafetensorsFile src = SafetensorsFile.Open(a))
        {
            SafetensorsWriter.Write(b, [SafetensorsEntry.CopyOf(src, "w", "renamed")]);
        }
        using SafetensorsFile dst = SafetensorsFile.Open(b);
        Assert.Equal(raw, dst.GetSpan("renamed").ToArray());
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp-*"));
    }

    [Fact]
    public void Random_mutations_only_ever_yield_the_typed_error()
    {
        // A deterministic, in-process miniature of the SharpFuzz target (tests/fuzz/ZeTT.Fuzz):
        // byte flips, truncations and length-field edits of a valid file must either open (and
        // then read cleanly) or throw SafetensorsException; any other exception fails the test.
        byte[] valid = Valid();
        var rng = new Random(1234);
        string path = Path.Combine(_dir, "mut.safetensors");
        int rejected = 0;
        for (int iteration = 0; iteration < 600; iteration++)
        {
            byte[] bytes = (byte[])valid.Clone();
            switch (iteration % 3)
            {
                case 0:
                    for (int k = rng.Next(1, 4); k > 0; k--)
                    {
                        bytes[rng.Next(bytes.Length)] = (byte)rng.Next(256);
                    }
                    break;
                case 1: bytes = bytes[..rng.Next(bytes.Length)]; break;
                default: bytes[rng.Next(8)] ^= (byte)(1 << rng.Next(8)); break;
            }
            File.WriteAllBytes(path, bytes);
            try
            {
                using SafetensorsFile f = SafetensorsFile.Open(path);
                foreach (SafetensorsTensorInfo t in f.Tensors.Where(t => DTypeConverter.IsConvertibleFloat(t.DType)))
                {
                    f.ReadFloat32(t.Name);
                }
            }
            catch (SafetensorsException)
            {
                rejected++;
            }
        }
        Assert.InRange(rejected, 200, 600);
    }
}
