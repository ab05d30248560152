using System.Runtime.InteropServices;
using static ZeTT.Kernels.Launch.LaunchChecks;

namespace ZeTT.Kernels.Launch;

/// <summary>Activation applied by the epilogue kernels (values as in kernels/common.cuh).
/// </summary>
public enum Activation
{
    /// <summary>Identity.</summary>
    None = 0,

    /// <summary>GELU, tanh approximation (ProjectorBlock).</summary>
    GeluTanh = 1,

    /// <summary>GELU with erf (RoBERTa encoder).</summary>
    GeluErf = 2,

    /// <summary>SiLU, x·σ(x) (the SwiGLU gate).</summary>
    Silu = 3,

    /// <summary>ReLU, max(x, 0).</summary>
    Relu = 4,
}

/// <summary>Args of <c>zett_bias_act</c> (kernels/epilogue.cu, same layout).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct BiasActArgs
{
    public ulong X;
    public ulong Bias;
    public ulong Out;
    public long Count;
    public int Cols;
    public int Act;
    public int OutDtype;
    public int Pad0;
}

/// <summary>Args of <c>zett_bias_act_residual_ln</c> (kernels/epilogue.cu, same layout).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct ResidualLnArgs
{
    public ulong X;
    public ulong Bias;
    public ulong Residual;
    public ulong LnW;
    public ulong LnB;
    public ulong Out;
    public ulong OutGemm;
    public int Rows;
    public int Cols;
    public float Eps;
    public int Act;
    public int GemmDtype;
    public int Pad0;
}

/// <summary>Launchers of kernels/epilogue.cu. CPU twins: <see cref="Reference.CpuKernels"/>.
/// </summary>
public static class EpilogueKernels
{
    /// <summary>Queues <c>output = act(x + bias)</c> over [rows, cols] (bias broadcast over rows).
    /// </summary>
    /// <param name="kernels">Loaded kernels.</param>
    /// <param name="stream">Stream to queue on.</param>
    /// <param name="x">[rows, cols] F32 (a GEMM output).</param>
    /// <param name="bias">[cols] F32, or none.</param>
    /// <param name="rows">Rows.</param>
    /// <param name="cols">Columns.</param>
    /// <param name="activation">Activation.</param>
    /// <param name="output">[rows, cols] F32 or BF16 (may be x when F32).</param>
    public static void BiasActivation(KernelSet kernels, CudaStream stream, DeviceView x,
        DeviceView bias, int rows, int cols, Activation activation, DeviceView output)
    {
        ArgumentNullException.ThrowIfNull(kernels);
        var (config, args) = PlanBiasActivation(x, bias, rows, cols, activation, output);
        kernels.BiasAct.Launch(config, stream, args);
    }

    internal static (LaunchConfig, BiasActArgs) PlanBiasActivation(DeviceView x,
        DeviceView bias, int rows, int cols, Activation activation, DeviceView output)
    {
        const string k = "zett_bias_act";
        Positive(k, rows, nameof(rows));
        Positive(k, cols, nameof(cols));
        CheckActivation(k, activation);
        long count = (long)rows * cols;
        View(k, x, nameof(x), count, KernelDType.F32);
        ulong b = Optional(k, bias, nameof(bias), cols, KernelDType.F32);
        View(k, output, nameof(output), count, KernelDType.F32, KernelDType.BF16);
        var args = new BiasActArgs
        {
            X = x.Address,
            Bias = b,
            Out = output.Address,
            Count = count,
            Cols = cols,
            Act = (int)activation,
            OutDtype = (int)output.DType,
        };
        return (new LaunchConfig(GridStride(count), 1, 256, 0), args);
    }

    /// <summary>
    /// Queues <c>output = LN(act(x + bias) + residual)</c> row by row, with LayerNorm
    /// <paramref name="eps"/>; also writes <paramref name="outputGemm"/> (the next GEMM's input)
    /// when given. <paramref name="output"/> may alias <paramref name="x"/> or
    /// <paramref name="residual"/>.
    /// </summary>
    /// <param name="kernels">Loaded kernels.</param>
    /// <param name="stream">Stream to queue on.</param>
    /// <param name="x">[rows, cols] F32.</param>
    /// <param name="bias">[cols] F32, or none.</param>
    /// <param name="residual">[rows, cols] F32.</param>
    /// <param name="lnW">[cols] LayerNorm weight.</param>
    /// <param name="lnB">[cols] LayerNorm bias.</param>
    /// <param name="eps">LayerNorm eps.</param>
    /// <param name="activation">Activation applied to x + bias before the residual add.</param>
    /// <param name="rows">Rows.</param>
    /// <param name="cols">Columns.</param>
    /// <param name="output">[rows, cols] F32.</param>
    /// <param name="outputGemm">[rows, cols] F32/BF16 copy, or none.</param>
    public static void BiasActivationResidualLayerNorm(KernelSet kernels, CudaStream stream,
        DeviceView x, DeviceView bias, DeviceView residual, DeviceView lnW, DeviceView lnB,
        float eps, Activation activation, int rows, int cols, DeviceView output,
        DeviceView outputGemm)
    {
        ArgumentNullException.ThrowIfNull(kernels);
        var (config, args) = PlanBiasActivationResidualLayerNorm(x, bias, residual, lnW, lnB,
            eps, activation, rows, cols, output, outputGemm);
        kernels.ResidualLn.Launch(config, stream, args);
    }

    internal static (LaunchConfig, ResidualLnArgs) PlanBiasActivationResidualLayerNorm(
        DeviceView x, DeviceView bias, DeviceView residual, DeviceView lnW, DeviceView lnB,
        float eps, Activation activation, int rows, int cols, DeviceView output,
        DeviceView outputGemm)
    {
        const string k = "zett_bias_act_residual_ln";
        Positive(k, rows, nameof(rows));
        Positive(k, cols, nameof(cols));
        CheckActivation(k, activation);
        if (!(eps > 0))
        {
            throw new ArgumentException($"{k}: eps must be positive, got {eps}", nameof(eps));
        }
        long count = (long)rows * cols;
        View(k, x, nameof(x), count, KernelDType.F32);
        ulong b = Optional(k, bias, nameof(bias), cols, KernelDType.F32);
        View(k, residual, nameof(residual), count, KernelDType.F32);
        View(k, lnW, nameof(lnW), cols, KernelDType.F32);
        View(k, lnB, nameof(lnB), cols, KernelDType.F32);
        View(k, output, nameof(output), count, KernelDType.F32);
        ulong g = Optional(k, outputGemm, nameof(outputGemm), count, KernelDType.F32,
            KernelDType.BF16);
        var args = new ResidualLnArgs
        {
            X = x.Address,
            Bias = b,
            Residual = residual.Address,
            LnW = lnW.Address,
            LnB = lnB.Address,
            Out = output.Address,
            OutGemm = g,
            Rows = rows,
            Cols = cols,
            Eps = eps,
            Act = (int)activation,
            GemmDtype = (int)outputGemm.DType,
        };
        return (new LaunchConfig((uint)rows, 1, RowBlock(cols), (uint)cols * 4), args);
    }

    private static void CheckActivation(string kernel, Activation activation)
    {
        if (!Enum.IsDefined(activation))
        {
            throw new ArgumentException($"{kernel}: unknown activation {(int)activation}",
                nameof(activation));
        }
    }
}
