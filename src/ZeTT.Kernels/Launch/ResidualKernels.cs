using System.Runtime.InteropServices;
using static ZeTT.Kernels.Launch.LaunchChecks;

namespace ZeTT.Kernels.Launch;

/// <summary>Args of <c>zett_axpby</c> (kernels/residual.cu, same layout).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct AxpbyArgs
{
    public ulong X;
    public ulong Y;
    public ulong Out;
    public long Count;
    public float Alpha;
    public float Beta;
    public int XDtype;
    public int YDtype;
    public int OutDtype;
    public int Pad0;
}

/// <summary>Args of <c>zett_sum_rows</c> (kernels/residual.cu, same layout).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct SumRowsArgs
{
    public ulong X;
    public ulong Out;
    public int Rows;
    public int Cols;
    public int Ld;
    public float Beta;
    public int XDtype;
    public int Pad0;
}

/// <summary>Args of <c>zett_copy_strided</c> (kernels/residual.cu, same layout).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct CopyArgs
{
    public ulong Src;
    public ulong Dst;
    public long Count;
    public fixed long Shape[ResidualKernels.MaxCopyRank];
    public fixed long SrcStrides[ResidualKernels.MaxCopyRank];
    public fixed long DstStrides[ResidualKernels.MaxCopyRank];
    public int Rank;
    public int SrcDtype;
    public int DstDtype;
    public float Value;
}

/// <summary>Launchers of kernels/residual.cu: <c>alpha·x + beta·y</c> (residual adds, scales,
/// gradient accumulation) and ordered column sums (bias gradients).</summary>
public static class ResidualKernels
{
    private const uint SumThreads = 256;

    /// <summary>Most dimensions a strided copy takes.</summary>
    public const int MaxCopyRank = 6;

    /// <summary>
    /// Queues <c>destination[idx] = source[idx]</c> over <paramref name="shape"/> (any element
    /// strides on either side, F32/BF16 converted), or <c>= value</c> when source is none.
    /// </summary>
    /// <param name="kernels">Loaded kernels.</param>
    /// <param name="stream">Stream to queue on.</param>
    /// <param name="source">Element 0 of the source, or none (fill).</param>
    /// <param name="sourceStrides">Source strides in elements, one per dimension.</param>
    /// <param name="destination">Element 0 of the destination.</param>
    /// <param name="destinationStrides">Destination strides in elements.</param>
    /// <param name="shape">Dimensions (at most <see cref="MaxCopyRank"/>).</param>
    /// <param name="value">Fill value.</param>
    public static void CopyStrided(KernelSet kernels, CudaStream stream, DeviceView source,
        ReadOnlySpan<long> sourceStrides, DeviceView destination,
        ReadOnlySpan<long> destinationStrides, ReadOnlySpan<long> shape, float value = 0f)
    {
        ArgumentNullException.ThrowIfNull(kernels);
        var (config, args) = PlanCopy(source, sourceStrides, destination, destinationStrides,
            shape, value);
        if (args.Count > 0)
        {
            kernels.CopyStrided.Launch(config, stream, args);
        }
    }

    internal static unsafe (LaunchConfig, CopyArgs) PlanCopy(DeviceView source,
        ReadOnlySpan<long> sourceStrides, DeviceView destination,
        ReadOnlySpan<long> destinationStrides, ReadOnlySpan<long> shape, float value)
    {
        const string k = "zett_copy_strided";
        if (shape.Length > MaxCopyRank)
        {
            throw new ArgumentException($"{k}: {shape.Length} dimensions exceed {MaxCopyRank}",
                nameof(shape));
        }
        if (destinationStrides.Length != shape.Length
            || (source.IsPresent && sourceStrides.Length != shape.Length))
        {
            throw new ArgumentException($"{k}: strides must have one entry per dimension",
                nameof(shape));
        }
        long count = 1, srcExtent = 1, dstExtent = 1;
        foreach (long d in shape)
        {
            if (d < 0)
            {
                throw new ArgumentException($"{k}: negative dimension {d}", nameof(shape));
            }
            count *= d;
        }
        for (int i = 0; i < shape.Length && count > 0; i++)
        {
            if (destinationStrides[i] < 0 || (source.IsPresent && sourceStrides[i] < 0))
            {
                throw new ArgumentException($"{k}: negative strides are not supported",
                    nameof(shape));
            }
            dstExtent += (shape[i] - 1) * destinationStrides[i];
            if (source.IsPresent)
            {
                srcExtent += (shape[i] - 1) * sourceStrides[i];
            }
        }
        var args = new CopyArgs { Count = count, Rank = shape.Length, Value = value };
        if (count == 0)
        {
            return (new LaunchConfig(1, 1, 256, 0), args);
        }
        ulong src = Optional(k, source, nameof(source), srcExtent, KernelDType.F32,
            KernelDType.BF16);
        View(k, destination, nameof(destination), dstExtent, KernelDType.F32, KernelDType.BF16);
        args.Src = src;
        args.Dst = destination.Address;
        args.SrcDtype = (int)source.DType;
        args.DstDtype = (int)destination.DType;
        for (int i = 0; i < shape.Length; i++)
        {
            args.Shape[i] = shape[i];
            args.DstStrides[i] = destinationStrides[i];
            args.SrcStrides[i] = source.IsPresent ? sourceStrides[i] : 0;
        }
        return (new LaunchConfig(GridStride(count), 1, 256, 0), args);
    }

    /// <summary>Queues <c>output = alpha·x + beta·y</c> element-wise (y none: alpha·x); output
    /// may be x or y.</summary>
    /// <param name="kernels">Loaded kernels.</param>
    /// <param name="stream">Stream to queue on.</param>
    /// <param name="x">[count] F32 or BF16.</param>
    /// <param name="alpha">Scale of x.</param>
    /// <param name="y">[count] F32 or BF16, or none.</param>
    /// <param name="beta">Scale of y.</param>
    /// <param name="count">Elements.</param>
    /// <param name="output">[count] F32 or BF16.</param>
    public static void Axpby(KernelSet kernels, CudaStream stream, DeviceView x, float alpha,
        DeviceView y, float beta, long count, DeviceView output)
    {
        ArgumentNullException.ThrowIfNull(kernels);
        var (config, args) = PlanAxpby(x, alpha, y, beta, count, output);
        kernels.Axpby.Launch(config, stream, args);
    }

    /// <summary>Queues <c>output[c] = beta·output[c] + Σ_r x[r·ld + c]</c> (fp32, rows summed
    /// in order: deterministic).</summary>
    /// <param name="kernels">Loaded kernels.</param>
    /// <param name="stream">Stream to queue on.</param>
    /// <param name="x">[rows, ld] F32 or BF16.</param>
    /// <param name="rows">Rows.</param>
    /// <param name="cols">Columns summed.</param>
    /// <param name="ld">Row stride of x.</param>
    /// <param name="beta">0 overwrites output, 1 accumulates.</param>
    /// <param name="output">[cols] F32.</param>
    public static void SumRows(KernelSet kernels, CudaStream stream, DeviceView x, int rows,
        int cols, int ld, float beta, DeviceView output)
    {
        ArgumentNullException.ThrowIfNull(kernels);
        var (config, args) = PlanSumRows(x, rows, cols, ld, beta, output);
        kernels.SumRows.Launch(config, stream, args);
    }

    internal static (LaunchConfig, AxpbyArgs) PlanAxpby(DeviceView x, float alpha,
        DeviceView y, float beta, long count, DeviceView output)
    {
        const string k = "zett_axpby";
        if (count <= 0)
        {
            throw new ArgumentException($"{k}: count must be positive, got {count}",
                nameof(count));
        }
        View(k, x, nameof(x), count, KernelDType.F32, KernelDType.BF16);
        ulong ya = Optional(k, y, nameof(y), count, KernelDType.F32, KernelDType.BF16);
        View(k, output, nameof(output), count, KernelDType.F32, KernelDType.BF16);
        var args = new AxpbyArgs
        {
            X = x.Address,
            Y = ya,
            Out = output.Address,
            Count = count,
            Alpha = alpha,
            Beta = beta,
            XDtype = (int)x.DType,
            YDtype = (int)y.DType,
            OutDtype = (int)output.DType,
        };
        return (new LaunchConfig(GridStride(count), 1, 256, 0), args);
    }

    internal static (LaunchConfig, SumRowsArgs) PlanSumRows(DeviceView x, int rows, int cols,
        int ld, float beta, DeviceView output)
    {
        const string k = "zett_sum_rows";
        Positive(k, rows, nameof(rows));
        Positive(k, cols, nameof(cols));
        if (ld < cols)
        {
            throw new ArgumentException($"{k}: row stride {ld} is less than the {cols} columns",
                nameof(ld));
        }
        View(k, x, nameof(x), (long)(rows - 1) * ld + cols, KernelDType.F32, KernelDType.BF16);
        View(k, output, nameof(output), cols, KernelDType.F32);
        var args = new SumRowsArgs
        {
            X = x.Address,
            Out = output.Address,
            Rows = rows,
            Cols = cols,
            Ld = ld,
            Beta = beta,
            XDtype = (int)x.DType,
        };
        return (new LaunchConfig((uint)((cols + SumThreads - 1) / SumThreads), 1, SumThreads, 0),
            args);
    }
}
