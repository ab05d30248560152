using System.Runtime.InteropServices;
using static ZeTT.Kernels.Launch.LaunchChecks;

namespace ZeTT.Kernels.Launch;

/// <summary>Activation code of the activation kernels (values as in kernels/common.cuh).
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

/// <summary>Args of <c>zett_act_forward</c> / <c>_backward</c> (kernels/activation.cu, same
/// layout).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct ActArgs
{
    public ulong X;
    public ulong Bias;
    public ulong Dy;
    public ulong Out;
    public long Count;
    public int Cols;
    public int Act;
    public int XDtype;
    public int BiasDtype;
    public int DyDtype;
    public int OutDtype;
}

/// <summary>Args of <c>zett_glu_forward</c> / <c>_backward</c> (kernels/activation.cu, same
/// layout).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct GluArgs
{
    public ulong Gate;
    public ulong Up;
    public ulong Dy;
    public ulong Out;
    public ulong Dgate;
    public ulong Dup;
    public int Rows;
    public int Cols;
    public int InLd;
    public int OutLd;
    public int Act;
    public int InDtype;
    public int OutDtype;
    public int Pad0;
}

/// <summary>Launchers of kernels/activation.cu: GELU (erf, tanh), SiLU with an optional bias,
/// and gated units (SwiGLU = SiLU gate, GeGLU = GELU gate), forward and backward, any
/// F32/BF16 mix.</summary>
public static class ActivationKernels
{
    /// <summary>Queues <c>output = act(x + bias)</c> over [rows, cols] (bias broadcast over
    /// rows; output may be x).</summary>
    /// <param name="kernels">Loaded kernels.</param>
    /// <param name="stream">Stream to queue on.</param>
    /// <param name="activation">Activation.</param>
    /// <param name="x">[rows, cols] F32 or BF16.</param>
    /// <param name="bias">[cols] F32 or BF16, or none.</param>
    /// <param name="rows">Rows.</param>
    /// <param name="cols">Columns.</param>
    /// <param name="output">[rows, cols] F32 or BF16.</param>
    public static void Forward(KernelSet kernels, CudaStream stream, Activation activation,
        DeviceView x, DeviceView bias, long rows, int cols, DeviceView output)
    {
        ArgumentNullException.ThrowIfNull(kernels);
        var (config, args) = Plan(false, activation, x, bias, default, rows, cols, output);
        kernels.ActForward.Launch(config, stream, args);
    }

    /// <summary>Queues <c>dx = dy · act'(x + bias)</c> (dx may be dy).</summary>
    /// <param name="kernels">Loaded kernels.</param>
    /// <param name="stream">Stream to queue on.</param>
    /// <param name="activation">Activation.</param>
    /// <param name="x">The forward's input.</param>
    /// <param name="bias">The forward's bias, or none.</param>
    /// <param name="dy">[rows, cols] F32 or BF16.</param>
    /// <param name="rows">Rows.</param>
    /// <param name="cols">Columns.</param>
    /// <param name="dx">[rows, cols] F32 or BF16.</param>
    public static void Backward(KernelSet kernels, CudaStream stream, Activation activation,
        DeviceView x, DeviceView bias, DeviceView dy, long rows, int cols, DeviceView dx)
    {
        ArgumentNullException.ThrowIfNull(kernels);
        var (config, args) = Plan(true, activation, x, bias, dy, rows, cols, dx);
        kernels.ActBackward.Launch(config, stream, args);
    }

    /// <summary>Queues <c>output[r, c] = act(gate[r, c]) · up[r, c]</c>; gate and up are
    /// windows of row stride <paramref name="inLd"/> (a fused gate|up projection: up = gate +
    /// cols, inLd = 2·cols).</summary>
    /// <param name="kernels">Loaded kernels.</param>
    /// <param name="stream">Stream to queue on.</param>
    /// <param name="activation">Gate activation (SiLU for SwiGLU, GELU tanh for GeGLU).</param>
    /// <param name="gate">Gate window, F32 or BF16.</param>
    /// <param name="up">Up window, gate's dtype.</param>
    /// <param name="rows">Rows.</param>
    /// <param name="cols">Columns (intermediate size).</param>
    /// <param name="inLd">Row stride of gate and up.</param>
    /// <param name="output">[rows, outLd] F32 or BF16.</param>
    /// <param name="outLd">Row stride of output.</param>
    public static void GluForward(KernelSet kernels, CudaStream stream, Activation activation,
        DeviceView gate, DeviceView up, int rows, int cols, int inLd, DeviceView output,
        int outLd)
    {
        ArgumentNullException.ThrowIfNull(kernels);
        var (config, args) = PlanGlu(false, activation, gate, up, rows, cols, inLd, output,
            outLd, default, default);
        kernels.GluForward.Launch(config, stream, args);
    }

    /// <summary>Queues <c>dGate = dy·up·act'(gate)</c>, <c>dUp = dy·act(gate)</c>; dGate and
    /// dUp have gate's row stride and dtype (a fused gradient buffer works as in the forward).
    /// </summary>
    /// <param name="kernels">Loaded kernels.</param>
    /// <param name="stream">Stream to queue on.</param>
    /// <param name="activation">Gate activation.</param>
    /// <param name="gate">The forward's gate.</param>
    /// <param name="up">The forward's up.</param>
    /// <param name="rows">Rows.</param>
    /// <param name="cols">Columns.</param>
    /// <param name="inLd">Row stride of gate, up, dGate, dUp.</param>
    /// <param name="dy">[rows, outLd] F32 or BF16.</param>
    /// <param name="outLd">Row stride of dy.</param>
    /// <param name="dGate">Gradient window of gate.</param>
    /// <param name="dUp">Gradient window of up.</param>
    public static void GluBackward(KernelSet kernels, CudaStream stream, Activation activation,
        DeviceView gate, DeviceView up, int rows, int cols, int inLd, DeviceView dy, int outLd,
        DeviceView dGate, DeviceView dUp)
    {
        ArgumentNullException.ThrowIfNull(kernels);
        var (config, args) = PlanGlu(true, activation, gate, up, rows, cols, inLd, dy, outLd,
            dGate, dUp);
        kernels.GluBackward.Launch(config, stream, args);
    }

    internal static (LaunchConfig, ActArgs) Plan(bool backward, Activation activation,
        DeviceView x, DeviceView bias, DeviceView dy, long rows, int cols, DeviceView output)
    {
        string k = backward ? "zett_act_backward" : "zett_act_forward";
        CheckActivation(k, activation);
        if (rows <= 0)
        {
            throw new ArgumentException($"{k}: rows must be positive, got {rows}", nameof(rows));
        }
        Positive(k, cols, nameof(cols));
        long count = rows * cols;
        View(k, x, nameof(x), count, KernelDType.F32, KernelDType.BF16);
        ulong b = Optional(k, bias, nameof(bias), cols, KernelDType.F32, KernelDType.BF16);
        if (backward)
        {
            View(k, dy, nameof(dy), count, KernelDType.F32, KernelDType.BF16);
        }
        View(k, output, backward ? "dx" : nameof(output), count, KernelDType.F32,
            KernelDType.BF16);
        var args = new ActArgs
        {
            X = x.Address,
            Bias = b,
            Dy = dy.Address,
            Out = output.Address,
            Count = count,
            Cols = cols,
            Act = (int)activation,
            XDtype = (int)x.DType,
            BiasDtype = (int)bias.DType,
            DyDtype = (int)dy.DType,
            OutDtype = (int)output.DType,
        };
        return (new LaunchConfig(GridStride(count), 1, 256, 0), args);
    }

    internal static (LaunchConfig, GluArgs) PlanGlu(bool backward, Activation activation,
        DeviceView gate, DeviceView up, int rows, int cols, int inLd, DeviceView outOrDy,
        int outLd, DeviceView dGate, DeviceView dUp)
    {
        string k = backward ? "zett_glu_backward" : "zett_glu_forward";
        CheckActivation(k, activation);
        Positive(k, rows, nameof(rows));
        Positive(k, cols, nameof(cols));
        if (inLd < cols || outLd < cols)
        {
            throw new ArgumentException($"{k}: row strides ({inLd}, {outLd}) must be at least "
                + $"the {cols} columns", nameof(inLd));
        }
        long inExtent = (long)(rows - 1) * inLd + cols, outExtent = (long)(rows - 1) * outLd + cols;
        View(k, gate, nameof(gate), inExtent, KernelDType.F32, KernelDType.BF16);
        View(k, up, nameof(up), inExtent, gate.DType);
        View(k, outOrDy, backward ? "dy" : "output", outExtent, KernelDType.F32,
            KernelDType.BF16);
        if (backward)
        {
            View(k, dGate, nameof(dGate), inExtent, gate.DType);
            View(k, dUp, nameof(dUp), inExtent, gate.DType);
        }
        var args = new GluArgs
        {
            Gate = gate.Address,
            Up = up.Address,
            Dy = backward ? outOrDy.Address : 0,
            Out = backward ? 0 : outOrDy.Address,
            Dgate = dGate.Address,
            Dup = dUp.Address,
            Rows = rows,
            Cols = cols,
            InLd = inLd,
            OutLd = outLd,
            Act = (int)activation,
            InDtype = (int)gate.DType,
            OutDtype = (int)outOrDy.DType,
        };
        return (new LaunchConfig(GridStride((long)rows * cols), 1, 256, 0), args);
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
