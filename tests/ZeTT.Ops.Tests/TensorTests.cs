namespace ZeTT.Ops.Tests;

public class TensorTests
{
    [Fact]
    public void Views_share_storage_and_follow_strides()
    {
        using Tensor t = Tensor.FromFloats([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], 3, 4);
        Tensor col = t.Slice(1, 1, 2);
        Assert.False(col.IsContiguous);
        Assert.Equal([1f, 2, 5, 6, 9, 10], col.ToFloats());
        Tensor row = t.Select(0, 2);
        Assert.Equal([8f, 9, 10, 11], row.ToFloats());
        Tensor flat = t.View(2, -1);
        Assert.Equal([2L, 6], flat.Shape);
        flat.AsSpan<float>()[7] = 70;
        Assert.Equal(70f, t.ToFloats()[7]);
        Assert.Throws<InvalidOperationException>(() => col.View(6));
        Assert.Throws<ArgumentException>(() => t.View(5, 3));
    }

    [Fact]
    public void Reads_half_precision_dtypes_exactly()
    {
        using Tensor t = Tensor.Host(DType.BF16, 2);
        Span<ushort> bits = t.AsSpan<ushort>();
        bits[0] = BFloat16.FromFloat(1.5f);
        bits[1] = BFloat16.FromFloat(-3.25f);
        Assert.Equal([1.5, -3.25], t.ToDoubles());
        Assert.Throws<InvalidOperationException>(() => t.AsSpan<float>());
    }
}
