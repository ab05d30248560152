using System.Runtime.InteropServices;
using static ZeTT.Kernels.Launch.LaunchChecks;

namespace ZeTT.Kernels.Launch;

/// <summary>Args of <c>zett_pool_first</c> (kernels/heads.cu, same layout).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct PoolArgs
{
    public ulong H;
    public ulong Out;
    public ulong OutGemm;
    public ulong RowStart;
    public int Rows;
    public int Hidden;
    public int GemmDtype;
    public int Pad0;
}

/// <summary>Args of <c>zett_bias_rescale</c> (kernels/heads.cu, same layout).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct RescaleArgs
{
    public ulong X;
    public ulong Bias;
    public ulong W;
    public ulong B;
    public ulong Out;
    public int Rows;
    public int Cols;
    public int XLd;
    public int Pad0;
}

/// <summary>Launchers of kernels/heads.cu. CPU twins: <see cref="Reference.CpuKernels"/>.
/// </summary>
public static class HeadKernels
{
    /// <summary>Queues <c>output[r] = h[rowStart[r]]</c> (the first packed token of each
    /// row), F32, and the same into <paramref name="outputGemm"/> when given. The kernel trusts
    /// rowStart (device data) to stay below <paramref name="tokens"/>.</summary>
    /// <param name="kernels">Loaded kernels.</param>
    /// <param name="stream">Stream to queue on.</param>
    /// <param name="h">[tokens, hidden] F32.</param>
    /// <param name="rowStart">[rows + 1] I32 row offsets.</param>
    /// <param name="rows">Sequences.</param>
    /// <param name="tokens">Packed tokens.</param>
    /// <param name="hidden">H.</param>
    /// <param name="output">[rows, hidden] F32.</param>
    /// <param name="outputGemm">[rows, hidden] F32/BF16, or none.</param>
    public static void PoolFirst(KernelSet kernels, CudaStream stream, DeviceView h,
        DeviceView rowStart, int rows, int tokens, int hidden, DeviceView output,
        DeviceView outputGemm)
    {
        ArgumentNullException.ThrowIfNull(kernels);
        var (config, args) = PlanPoolFirst(h, rowStart, rows, tokens, hidden, output, outputGemm);
        kernels.PoolFirst.Launch(config, stream, args);
    }

    internal static (LaunchConfig, PoolArgs) PlanPoolFirst(DeviceView h, DeviceView rowStart,
        int rows, int tokens, int hidden, DeviceView output, DeviceView outputGemm)
    {
        const string k = "zett_pool_first";
        Positive(k, rows, nameof(rows));
        Positive(k, tokens, nameof(tokens));
        Positive(k, hidden, nameof(hidden));
        if (tokens < rows)
        {
            throw new ArgumentException($"{k}: {tokens} tokens cannot hold {rows} rows",
                nameof(tokens));
        }
        View(k, h, nameof(h), (long)tokens * hidden, KernelDType.F32);
        View(k, rowStart, nameof(rowStart), rows + 1L, KernelDType.I32);
        View(k, output, nameof(output), (long)rows * hidden, KernelDType.F32);
        ulong g = Optional(k, outputGemm, nameof(outputGemm), (long)rows * hidden,
            KernelDType.F32, KernelDType.BF16);
        var args = new PoolArgs
        {
            H = h.Address,
            Out = output.Address,
            OutGemm = g,
            RowStart = rowStart.Address,
            Rows = rows,
            Hidden = hidden,
            GemmDtype = (int)outputGemm.DType,
        };
        return (new LaunchConfig((uint)rows, 1, RowBlock(hidden), 0), args);
    }

    /// <summary>
    /// Queues <c>output[r, c] = w[c]·(x[r, offset + c] + bias[offset + c]) + b[c]</c> for
    /// c &lt; cols: a column window of a GEMM output [rows, xCols] plus its bias, optionally
    /// rescaled (w and b given together).
    /// </summary>
    /// <param name="kernels">Loaded kernels.</param>
    /// <param name="stream">Stream to queue on.</param>
    /// <param name="x">[rows, xCols] F32.</param>
    /// <param name="xCols">Row width of x.</param>
    /// <param name="offset">First column of the window.</param>
    /// <param name="bias">[xCols] F32 bias of the whole GEMM output, or none.</param>
    /// <param name="w">[cols] F32 scale, or none.</param>
    /// <param name="b">[cols] F32 shift (with w).</param>
    /// <param name="rows">Rows.</param>
    /// <param name="cols">Window width.</param>
    /// <param name="output">[rows, cols] F32.</param>
    public static void BiasRescale(KernelSet kernels, CudaStream stream, DeviceView x, int xCols,
        int offset, DeviceView bias, DeviceView w, DeviceView b, int rows, int cols,
        DeviceView output)
    {
        ArgumentNullException.ThrowIfNull(kernels);
        var (config, args) = PlanBiasRescale(x, xCols, offset, bias, w, b, rows, cols, output);
        kernels.BiasRescale.Launch(config, stream, args);
    }

    internal static (LaunchConfig, RescaleArgs) PlanBiasRescale(DeviceView x, int xCols,
        int offset, DeviceView bias, DeviceView w, DeviceView b, int rows, int cols,
        DeviceView output)
    {
        const string k = "zett_bias_rescale";
        Positive(k, rows, nameof(rows));
        Positive(k, cols, nameof(cols));
        Positive(k, xCols, nameof(xCols));
        if (offset < 0 || offset + cols > xCols)
        {
            throw new ArgumentException($"{k}: window [{offset}, {offset + cols}) is outside "
                + $"rows of width {xCols}", nameof(offset));
        }
        View(k, x, nameof(x), (long)rows * xCols, KernelDType.F32);
        ulong bb = Optional(k, bias, nameof(bias), xCols, KernelDType.F32);
        Both(k, w, nameof(w), b, nameof(b));
        ulong ww = Optional(k, w, nameof(w), cols, KernelDType.F32);
        ulong sb = Optional(k, b, nameof(b), cols, KernelDType.F32);
        View(k, output, nameof(output), (long)rows * cols, KernelDType.F32);
        var args = new RescaleArgs
        {
            X = x.Slice(offset, x.Length - offset).Address,
            Bias = bb == 0 ? 0 : bias.Slice(offset, cols).Address,
            W = ww,
            B = sb,
            Out = output.Address,
            Rows = rows,
            Cols = cols,
            XLd = xCols,
        };
        return (new LaunchConfig(GridStride((long)rows * cols), 1, 256, 0), args);
    }
}
