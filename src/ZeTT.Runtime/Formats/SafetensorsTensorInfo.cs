using ZeTT.Ops;

namespace ZeTT.Runtime.Formats;

/// <summary>One tensor's header entry.</summary>
/// <param name="Name">The tensor's name.</param>
/// <param name="DType">Its element type.</param>
/// <param name="Shape">Dimensions, outermost first (empty for a scalar).</param>
/// <param name="DataOffset">Start of its bytes, relative to the start of the data section.</param>
/// <param name="ByteLength">Number of bytes it occupies.</param>
public sealed record SafetensorsTensorInfo(
    string Name, DType DType, long[] Shape, long DataOffset, long ByteLength)
{
    /// <summary>Number of elements (product of the shape).</summary>
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
}
