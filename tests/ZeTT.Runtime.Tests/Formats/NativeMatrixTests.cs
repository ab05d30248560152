using System.Buffers.Binary;
using System.Text;
using ZeTT.Ops;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Tensors;

namespace ZeTT.Runtime.Tests.Formats;

public sealed class NativeMatrixTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zett-nm-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>
    /// A [300000, 8192] F16 embedding (2,457,600,000 elements, past 2^31 and past one host
    /// array) in a sparse file: the header is real, the data region is a hole except for three
    /// written rows, so the test needs ~50 KB of disk and RAM. It covers opening such a file,
    /// the long element offsets of <see cref="SafetensorsFile.ReadFloat32(string, long, Span{float})"/>
    /// and the long row addressing of <see cref="NativeMatrix"/> (a 9.8 GB zeroed allocation
    /// whose untouched pages stay unbacked). It does not convert the whole matrix: that needs
    /// 9.8 GB resident, which CI does not have.
    /// </summary>
    [Fact]
    public void Rows_past_element_2_pow_31_are_read_and_addressed_with_long_offsets()
    {
        const long Rows = 300_000;
        const int Cols = 8192;
        long dataBytes = Rows * Cols * 2;
        string path = Path.Combine(_dir, "big.safetensors");
        byte[] header = Encoding.UTF8.GetBytes(
            $"{{\"emb\":{{\"dtype\":\"F16\",\"shape\":[{Rows},{Cols}],\"data_offsets\":[0,{dataBytes}]}}}}");
        long dataStart = 8 + header.Length;
        // Row 262144 starts at element 2^31 exactly; row 299999 is the last.
        long[] written = [0, 262_143, 262_144, Rows - 1];
        using (FileStream fs = File.Create(path))
        {
            Span<byte> length = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
            fs.Write(length);
            fs.Write(header);
            fs.SetLength(dataStart + dataBytes);
            foreach (long r in written)
            {
                fs.Position = dataStart + (r * Cols * 2);
                fs.Write(RowBytes(r, Cols));
            }
        }

        using SafetensorsFile file = SafetensorsFile.Open(path);
        Assert.Equal(Rows * Cols, file.GetInfo("emb").ElementCount);
        Assert.True(file.GetInfo("emb").ElementCount > int.MaxValue);
        // The float[] path refuses it by name; the native matrix below holds it.
        SafetensorsException refused = Assert.Throws<SafetensorsException>(() => file.ReadFloat32("emb"));
        Assert.Contains("exceed one host array", refused.Message);

        using var matrix = new NativeMatrix(Rows, Cols);
        Assert.Equal(Rows * Cols, matrix.ElementCount);
        foreach (long r in written)
        {
            file.ReadFloat32("emb", r * Cols, matrix.Row(r));
        }
        foreach (long r in written)
        {
            float[] expected = new float[Cols];
            DTypeConverter.ToFloat32(DType.F16, RowBytes(r, Cols), expected);
            Assert.Equal(expected, matrix.Row(r).ToArray());
            Assert.NotEqual(0f, expected[0]);
        }
        // A slice across the 2^31 boundary sees the last element of row 262143 then the first
        // of row 262144: an int offset would have wrapped to a negative index here.
        Span<float> across = matrix.Slice((1L << 31) - 1, 2);
        Assert.Equal(matrix.Row(262_143)[Cols - 1], across[0]);
        Assert.Equal(matrix.Row(262_144)[0], across[1]);
        Assert.Equal((float)Value(262_144, 0), across[1]);
        // An unwritten row of the hole reads as zeros.
        float[] hole = new float[Cols];
        file.ReadFloat32("emb", 280_000L * Cols, hole);
        Assert.All(hole, x => Assert.Equal(0f, x));
        Assert.Throws<ArgumentOutOfRangeException>(() => matrix.Row(Rows));
        Assert.Throws<ArgumentOutOfRangeException>(() => matrix.Slice(Rows * Cols - 1, 2));
    }

    [Theory]
    [InlineData(DType.F16, 9, 1 << 21)] // 8 rows per 2^24-element block: a full and a partial block
    [InlineData(DType.BF16, 37, 5)]
    [InlineData(DType.F32, 3, 1)]
    [InlineData(DType.F32, 0, 4)]
    public void ReadFloat32_equals_the_host_array_path(DType dtype, int rows, int cols)
    {
        var rng = new Random(rows * 31 + cols);
        float[] values = new float[(long)rows * cols];
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = (float)(rng.NextDouble() * 4 - 2);
        }
        string path = Path.Combine(_dir, "m.safetensors");
        SafetensorsWriter.Write(path, [SafetensorsEntry.FromFloat32("m", [rows, cols], values, dtype)]);
        using SafetensorsFile file = SafetensorsFile.Open(path);
        float[] expected = file.ReadFloat32("m").Data;
        using NativeMatrix matrix = NativeMatrix.ReadFloat32(file, "m");
        Assert.Equal(rows, matrix.Rows);
        Assert.Equal(cols, matrix.Cols);
        Assert.Equal(expected, matrix.Slice(0, expected.Length).ToArray());
    }

    [Fact]
    public void ReadFloat32_refuses_a_tensor_that_is_not_a_matrix()
    {
        string path = Path.Combine(_dir, "v.safetensors");
        SafetensorsWriter.Write(path, [SafetensorsEntry.FromFloat32("v", [4], [1, 2, 3, 4])]);
        using SafetensorsFile file = SafetensorsFile.Open(path);
        SafetensorsException e = Assert.Throws<SafetensorsException>(() => NativeMatrix.ReadFloat32(file, "v"));
        Assert.Contains("[4]", e.Message);
    }

    private static double Value(long row, int col) => ((row % 97) + 1) * 0.25 + (col % 13) * 0.125;

    private static byte[] RowBytes(long row, int cols)
    {
        byte[] bytes = new byte[cols * 2];
        for (int j = 0; j < cols; j++)
        {
            BinaryPrimitives.WriteHalfLittleEndian(bytes.AsSpan(j * 2), (Half)Value(row, j));
        }
        return bytes;
    }
}
