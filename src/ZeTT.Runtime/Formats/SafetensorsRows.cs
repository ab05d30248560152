using ZeTT.Ops;
using ZeTT.Runtime.Tensors;

namespace ZeTT.Runtime.Formats;

/// <summary>
/// A 2-D float tensor of a memory-mapped safetensors file read by rows, widened to fp32 on each
/// read from its stored dtype: no host copy of the whole matrix, 64-bit row offsets (a
/// [262144, 8192] BF16 embedding is read as it is mapped). Valid while the file is open.
/// </summary>
public sealed class SafetensorsRows : IFloatRows
{
    private readonly SafetensorsFile _file;

    /// <summary>Tensor <paramref name="name"/> of <paramref name="weights"/>.</summary>
    /// <exception cref="SafetensorsException">The tensor is not a 2-D float tensor with rows
    /// below 2^31 elements.</exception>
    public SafetensorsRows(SafetensorsCollection weights, string name)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(name);
        _file = weights.FileOf(name);
        SafetensorsTensorInfo info = _file.GetInfo(name);
        if (!DTypeConverter.IsConvertibleFloat(info.DType))
        {
            throw new SafetensorsException(_file.Path, name,
                $"expected a floating-point tensor, found {DTypes.ToSafetensorsName(info.DType)}");
        }
        if (info.Shape.Length != 2 || info.Shape[1] > int.MaxValue)
        {
            throw new SafetensorsException(_file.Path, name, "expected a [rows, cols] tensor "
                + $"with cols below 2^31, found shape {HostTensor.ShapeToString(info.Shape)}");
        }
        Name = name;
        Rows = info.Shape[0];
        Cols = (int)info.Shape[1];
        DType = info.DType;
    }

    /// <inheritdoc />
    public string Name { get; }

    /// <summary>The file holding the tensor (for messages).</summary>
    public string FilePath => _file.Path;

    /// <summary>The stored dtype.</summary>
    public DType DType { get; }

    /// <inheritdoc />
    public long Rows { get; }

    /// <inheritdoc />
    public int Cols { get; }

    /// <inheritdoc />
    public void ReadRows(long first, int count, Span<float> destination)
    {
        FloatRows.CheckRange(this, first, count, destination.Length);
        _file.ReadFloat32(Name, first * Cols, destination[..(count * Cols)]);
    }
}
