using ZeTT.Ops;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Tensors;

namespace ZeTT.Runtime.Tests.Formats;

public sealed class SafetensorsRoundTripTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zett-st-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.BF16)]
    [InlineData(DType.F16)]
    public void Float_tensors_round_trip_within_storage_precision(DType storeAs)
    {
        float[] data = Enumerable.Range(0, 35).Select(i => (i - 17) * 0.37f).ToArray();
        string path = Path.Combine(_dir, "a.safetensors");
        SafetensorsWriter.Write(path, [
            SafetensorsEntry.FromFloat32("w", [5, 7], data, storeAs),
            SafetensorsEntry.FromInt32("ids", [3], [1, -2, int.MaxValue]),
        ], new Dictionary<string, string> { ["format"] = "pt" });

        using SafetensorsFile file = SafetensorsFile.Open(path);
        Assert.Equal(["w", "ids"], file.Tensors.Select(t => t.Name));
        Assert.Equal("pt", file.Metadata["format"]);
        HostTensor w = file.ReadFloat32("w");
        Assert.Equal([5, 7], w.Shape);
        float tolerance = storeAs switch { DType.F32 => 0f, DType.BF16 => 1f / 128, _ => 1f / 1024 };
        for (int i = 0; i < data.Length; i++)
        {
            Assert.True(Math.Abs(w.Data[i] - data[i]) <= tolerance * Math.Abs(data[i]),
                $"element {i}: {w.Data[i]} vs {data[i]}");
        }
        Assert.Equal([1, -2, int.MaxValue], file.ReadInt32("ids", out int[] shape));
        Assert.Equal([3], shape);
    }

    [Fact]
    public void Header_is_padded_to_eight_bytes()
    {
        string path = Path.Combine(_dir, "b.safetensors");
        SafetensorsWriter.Write(path, [SafetensorsEntry.FromFloat32("x", [1], [1f])]);
        byte[] bytes = File.ReadAllBytes(path);
        ulong headerLength = BitConverter.ToUInt64(bytes, 0);
        Assert.Equal(0UL, headerLength % 8);
        Assert.Equal(8 + (long)headerLength + 4, bytes.LongLength);
    }

    [Fact]
    public void Truncated_file_names_file_and_tensor()
    {
        string path = Path.Combine(_dir, "c.safetensors");
        SafetensorsWriter.Write(path, [SafetensorsEntry.FromFloat32("x", [4], [1f, 2f, 3f, 4f])]);
        byte[] bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..^1]);
        var e = Assert.Throws<SafetensorsException>(() => SafetensorsFile.Open(path));
        Assert.Equal("x", e.Tensor);
        Assert.Contains(path, e.Message, StringComparison.Ordinal);
    }
}
