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

/// <summary>Launchers of kernels/residual.cu: <c>alpha·x + beta·y</c> (residual adds, scales,
/// gradient accumulation) and ordered column sums (bias gradients).</summary>
public static class ResidualKernels
{
    private const uint SumThreads = 256;

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
