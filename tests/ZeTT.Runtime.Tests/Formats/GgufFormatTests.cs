using System.Buffers.Binary;
using ZeTT.Runtime.Formats;

namespace ZeTT.Runtime.Tests.Formats;

/// <summary>The GGUF v3 writer and reader: every value kind and tensor type round-trips, data
/// offsets are aligned, output is deterministic and atomic, Q8_0 is ggml's reference
/// quantization, the reader refuses every truncation, and it reads the GGUF files llama.cpp's own
/// converter wrote (shared/data/gguf-vocab).</summary>
public sealed class GgufFormatTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zett-gguf-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static float[] Values(int n, int seed)
    {
        var rng = new Random(seed);
        return [.. Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 4 - 2))];
    }

    private static GgufTensor FromArray(string name, GgmlType type, long[] shape, float[] data) =>
        GgufTensor.FromFloatRows(name, type, shape, (row, dst) =>
            data.AsSpan((int)(row * shape[^1]), dst.Length).CopyTo(dst));

    private static List<KeyValuePair<string, GgufValue>> Metadata() =>
    [
        new("general.architecture", GgufValue.String("llama")),
        new("a.u32", GgufValue.UInt32(4_000_000_000)),
        new("a.i32", GgufValue.Int32(-7)),
        new("a.f32", GgufValue.Float32(1e-5f)),
        new("a.bool", GgufValue.Bool(true)),
        new("a.u64", GgufValue.UInt64(1UL << 40)),
        new("a.text", GgufValue.String("grüße\n\"quoted\" ▁Ġ")),
        new("a.strings", GgufValue.Strings(["", "Ġ t", "<0x0A>", "日本"])),
        new("a.ints", GgufValue.Int32s([1, -2, 3])),
        new("a.floats", GgufValue.Float32s([0.5f, -1e30f])),
    ];

    [Fact]
    public void Metadata_and_every_tensor_type_round_trip()
    {
        float[] vector = Values(3, 1), matrix = Values(5 * 64, 2), cube = Values(2 * 3 * 32, 3);
        string path = Path.Combine(_dir, "m.gguf");
        GgufWriter.Write(path, Metadata(),
        [
            FromArray("v", GgmlType.F32, [3], vector),
            FromArray("m16", GgmlType.F16, [5, 64], matrix),
            FromArray("mbf", GgmlType.BF16, [5, 64], matrix),
            FromArray("q8", GgmlType.Q8_0, [2, 3, 32], cube),
        ]);

        GgufFile g = GgufFile.Open(path);
        Assert.Equal(3u, g.Version);
        Assert.Equal(Metadata().Select(kv => kv.Key), g.Metadata.Select(kv => kv.Key));
        Assert.Equal(4_000_000_000u, g.Require("a.u32").Value);
        Assert.Equal(-7, g.Require("a.i32").Value);
        Assert.Equal(1e-5f, g.Require("a.f32").Value);
        Assert.Equal(true, g.Require("a.bool").Value);
        Assert.Equal(1UL << 40, g.Require("a.u64").Value);
        Assert.Equal("grüße\n\"quoted\" ▁Ġ", g.Require("a.text").AsString());
        Assert.Equal(new[] { "", "Ġ t", "<0x0A>", "日本" }, (string[])g.Require("a.strings").Value);
        Assert.Equal(new[] { 1, -2, 3 }, (int[])g.Require("a.ints").Value);
        Assert.Equal(new[] { 0.5f, -1e30f }, (float[])g.Require("a.floats").Value);

        Assert.Equal(new long[] { 2, 3, 32 }, g.Tensors.Single(t => t.Name == "q8").Shape);
        Assert.All(g.Tensors, t => Assert.Equal(0, t.Offset % GgufWriter.DefaultAlignment));
        Assert.Equal(0, g.DataStart % GgufWriter.DefaultAlignment);
        Assert.Equal(vector, g.ReadFloat32("v"));
        Assert.Equal(matrix.Select(x => (float)(Half)x), g.ReadFloat32("m16"));
        Assert.Equal(matrix.Select(ZeTT.Ops.BFloat16.Round), g.ReadFloat32("mbf"));
        float[] q = g.ReadFloat32("q8");
        for (int b = 0; b < cube.Length / 32; b++)
        {
            // Q8_0 error per element: half a step plus the fp16 rounding of the scale (2^-11 relative)
            // times 127.
            float amax = cube.Skip(b * 32).Take(32).Max(Math.Abs);
            for (int i = b * 32; i < b * 32 + 32; i++)
            {
                Assert.InRange(Math.Abs(q[i] - cube[i]), 0, amax / 127 * 0.57f + 1e-6f);
            }
        }
    }

    [Fact]
    public void Output_is_deterministic_and_the_header_is_what_the_format_says()
    {
        string a = Path.Combine(_dir, "a.gguf"), b = Path.Combine(_dir, "b.gguf");
        float[] m = Values(2 * 32, 4);
        GgufWriter.Write(a, Metadata(), [FromArray("t", GgmlType.F32, [2, 32], m)]);
        GgufWriter.Write(b, Metadata(), [FromArray("t", GgmlType.F32, [2, 32], m)]);
        byte[] bytes = File.ReadAllBytes(a);
        Assert.Equal(bytes, File.ReadAllBytes(b));
        Assert.Equal("GGUF"u8.ToArray(), bytes[..4]);
        Assert.Equal(3u, BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(4)));
        Assert.Equal(1ul, BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(8)));
        Assert.Equal((ulong)Metadata().Count, BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(16)));
        GgufFile g = GgufFile.Open(a);
        Assert.Equal(g.DataStart + 2 * 32 * 4, bytes.Length);
        // ggml stores dimensions fastest first: [2, 32] is ne = {32, 2}.
        Assert.Equal(m[33], BitConverter.ToSingle(bytes, (int)g.DataStart + 33 * 4));
    }

    [Fact]
    public void Q8_0_is_ggml_reference_quantization()
    {
        // amax 127 → scale 1: values round half away from zero, as C's roundf.
        float[] x = new float[32];
        x[0] = 127f;
        x[1] = 0.5f;
        x[2] = -0.5f;
        x[3] = 2.5f;
        x[4] = -126.49f;
        byte[] block = new byte[34];
        Assert.Equal(34, GgufTensor.Encode(GgmlType.Q8_0, x, block));
        Assert.Equal((Half)1f, BinaryPrimitives.ReadHalfLittleEndian(block));
        Assert.Equal(new sbyte[] { 127, 1, -1, 3, -126, 0 },
            block[2..8].Select(v => (sbyte)v).ToArray());
        // An all-zero block stores scale 0 and zeros (no division by zero).
        Assert.Equal(34, GgufTensor.Encode(GgmlType.Q8_0, new float[32], block));
        Assert.All(block, v => Assert.Equal(0, v));
        Assert.Throws<ArgumentException>(() =>
            new GgufTensor("t", GgmlType.Q8_0, [2, 33], _ => { }));
    }

    [Fact]
    public void A_failed_write_leaves_nothing_and_keeps_an_existing_file()
    {
        string path = Path.Combine(_dir, "x.gguf");
        File.WriteAllText(path, "previous");
        var bad = new GgufTensor("t", GgmlType.F32, [4], s => s.Write(new byte[8]));
        Assert.Throws<InvalidOperationException>(() => GgufWriter.Write(path, Metadata(), [bad]));
        var throwing = new GgufTensor("t", GgmlType.F32, [4],
            _ => throw new IOException("disk full"));
        Assert.Throws<IOException>(() => GgufWriter.Write(path, Metadata(), [throwing]));
        Assert.Equal("previous", File.ReadAllText(path));
        Assert.Equal(["x.gguf"], Directory.GetFiles(_dir).Select(Path.GetFileName));
    }

    [Fact]
    public void Every_truncation_and_a_corrupted_header_are_refused_with_the_file_named()
    {
        string path = Path.Combine(_dir, "t.gguf");
        GgufWriter.Write(path, Metadata(), [FromArray("t", GgmlType.F16, [2, 32], Values(64, 5))]);
        byte[] bytes = File.ReadAllBytes(path);
        string cut = Path.Combine(_dir, "cut.gguf");
        for (int n = 0; n < bytes.Length; n++)
        {
            File.WriteAllBytes(cut, bytes[..n]);
            ZettException e = Assert.Throws<ZettException>(() => GgufFile.Open(cut));
            Assert.StartsWith(cut + ": ", e.Message);
        }
        byte[] hostile = (byte[])bytes.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(hostile.AsSpan(16), ulong.MaxValue);
        File.WriteAllBytes(cut, hostile);
        Assert.Contains("metadata count", Assert.Throws<ZettException>(() => GgufFile.Open(cut)).Message);
        hostile = (byte[])bytes.Clone();
        hostile[0] = (byte)'X';
        File.WriteAllBytes(cut, hostile);
        Assert.Contains("not a GGUF file", Assert.Throws<ZettException>(() => GgufFile.Open(cut)).Message);
    }

    [Fact]
    public void Reads_the_files_llama_cpp_wrote()
    {
        string? dir = GgufTestData.VocabDir;
        Assert.SkipWhen(dir is null, GgufTestData.VocabSkipReason);
        string[] files = Directory.GetFiles(dir!, "*.gguf");
        Assert.NotEmpty(files);
        foreach (string file in files)
        {
            GgufFile g = GgufFile.Open(file);
            Assert.Equal(3u, g.Version);
            int n = g.Require("tokenizer.ggml.tokens").Count;
            Assert.True(n > 1000, $"{file}: {n} tokens");
            Assert.Equal(n, g.Require("tokenizer.ggml.token_type").Count);
        }
    }
}
