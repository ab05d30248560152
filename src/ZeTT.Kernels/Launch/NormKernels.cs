using System.Runtime.InteropServices;
using static ZeTT.Kernels.Launch.LaunchChecks;

namespace ZeTT.Kernels.Launch;

/// <summary>Args of the norm forwards (kernels/norm.cu, same layout).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct NormArgs
{
    public ulong X;
    public ulong Weight;
    public ulong Bias;
    public ulong Out;
    public ulong Mean;
    public ulong Rstd;
    public int Rows;
    public int Cols;
    public float Eps;
    public int XDtype;
    public int WDtype;
    public int OutDtype;
    public int UnitOffset;
    public int ResDtype;
    public ulong Residual;
}

/// <summary>Args of the norm backwards (kernels/norm.cu, same layout).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct NormBwdArgs
{
    public ulong X;
    public ulong Weight;
    public ulong Dy;
    public ulong Mean;
    public ulong Rstd;
    public ulong Dx;
    public ulong DwPartial;
    public ulong DbPartial;
    public int Rows;
    public int Cols;
    public int RowsPerChunk;
    public int XDtype;
    public int WDtype;
    public int DyDtype;
    public int DxDtype;
    public int UnitOffset;
}

/// <summary>Which normalisation.</summary>
public enum NormKind
{
    /// <summary>RMSNorm: x·rstd·w.</summary>
    Rms,

    /// <summary>LayerNorm: (x − mean)·rstd·w + b.</summary>
    Layer,
}

/// <summary>Launchers of kernels/norm.cu: RMSNorm and LayerNorm over the last dimension,
/// forward (saving the statistics) and backward (dx; weight and bias gradients summed
/// deterministically in two stages).</summary>
public static class NormKernels
{
    /// <summary>Rows each block of the parameter-gradient stage sums.</summary>
    public const int RowsPerChunk = 64;

    private const uint ParamThreads = 256;

    /// <summary>Chunks (rows of the partial-sum workspace) for <paramref name="rows"/> rows.
    /// </summary>
    public static int Chunks(int rows) => (rows + RowsPerChunk - 1) / RowsPerChunk;

    /// <summary>
    /// Queues the forward. RMSNorm: <c>y = x·r·w̃</c>, r = (mean(x²) + eps)^-½; LayerNorm:
    /// <c>y = (x − μ)·r·w̃ + b</c>; w̃ = w, or 1 + w with <paramref name="unitOffset"/> (gemma).
    /// Writes rstd (and mean for LayerNorm) per row.
    /// </summary>
    /// <param name="kernels">Loaded kernels.</param>
    /// <param name="stream">Stream to queue on.</param>
    /// <param name="kind">RMSNorm or LayerNorm.</param>
    /// <param name="x">[rows, cols] F32 or BF16.</param>
    /// <param name="weight">[cols] F32 or BF16, or none (w = 1, or 0 with unit offset).</param>
    /// <param name="bias">[cols] in weight's dtype, or none (LayerNorm only).</param>
    /// <param name="rows">Rows.</param>
    /// <param name="cols">Columns.</param>
    /// <param name="eps">Epsilon (&gt; 0).</param>
    /// <param name="unitOffset">Multiply by 1 + w.</param>
    /// <param name="output">[rows, cols] F32 or BF16.</param>
    /// <param name="mean">[rows] F32 (LayerNorm), none for RMSNorm.</param>
    /// <param name="rstd">[rows] F32.</param>
    /// <param name="residual">[rows, cols] F32 or BF16, or none: normalise x + residual (the
    /// sum in fp32, not stored). output may be x or residual.</param>
    public static void Forward(KernelSet kernels, CudaStream stream, NormKind kind,
        DeviceView x, DeviceView weight, DeviceView bias, int rows, int cols, float eps,
        bool unitOffset, DeviceView output, DeviceView mean, DeviceView rstd,
        DeviceView residual = default)
    {
        ArgumentNullException.ThrowIfNull(kernels);
        var (config, args) = PlanForward(kind, x, weight, bias, rows, cols, eps, unitOffset,
            output, mean, rstd, residual);
        (kind == NormKind.Rms ? kernels.RmsNormForward : kernels.LayerNormForward)
            .Launch(config, stream, args);
    }

    /// <summary>
    /// Queues the backward: <paramref name="dx"/> from dy and the saved statistics, and when
    /// <paramref name="dWeight"/> (and, for LayerNorm, <paramref name="dBias"/>) are given, their
    /// gradients: per-chunk partial sums in <paramref name="partial"/> (F32,
    /// 2·<see cref="Chunks"/>(rows)·cols), then one ordered sum per column. dWeight and dBias are
    /// overwritten (beta 0) or accumulated into (beta 1).
    /// </summary>
    /// <param name="kernels">Loaded kernels.</param>
    /// <param name="stream">Stream to queue on.</param>
    /// <param name="kind">RMSNorm or LayerNorm.</param>
    /// <param name="x">The forward's input.</param>
    /// <param name="weight">The forward's weight, or none.</param>
    /// <param name="dy">[rows, cols] F32 or BF16.</param>
    /// <param name="mean">The forward's mean (LayerNorm), or none.</param>
    /// <param name="rstd">The forward's rstd.</param>
    /// <param name="rows">Rows.</param>
    /// <param name="cols">Columns.</param>
    /// <param name="unitOffset">As in the forward.</param>
    /// <param name="dx">[rows, cols] F32 or BF16.</param>
    /// <param name="dWeight">[cols] F32, or none.</param>
    /// <param name="dBias">[cols] F32, or none.</param>
    /// <param name="partial">Workspace, F32, needed with dWeight or dBias.</param>
    /// <param name="beta">0: overwrite dWeight/dBias; 1: add to them.</param>
    public static void Backward(KernelSet kernels, CudaStream stream, NormKind kind,
        DeviceView x, DeviceView weight, DeviceView dy, DeviceView mean, DeviceView rstd,
        int rows, int cols, bool unitOffset, DeviceView dx, DeviceView dWeight, DeviceView dBias,
        DeviceView partial, float beta = 0f)
    {
        ArgumentNullException.ThrowIfNull(kernels);
        BackwardPlan plan = PlanBackward(kind, x, weight, dy, mean, rstd, rows, cols, unitOffset,
            dx, dWeight, dBias, partial, beta);
        kernels.NormBackward.Launch(plan.Dx, stream, plan.Args);
        if (plan.Params is LaunchConfig p)
        {
            kernels.NormBackwardParams.Launch(p, stream, plan.Args);
            foreach (SumRowsArgs s in plan.Sums)
            {
                kernels.SumRows.Launch(plan.SumConfig, stream, s);
            }
        }
    }

    internal readonly record struct BackwardPlan(LaunchConfig Dx, LaunchConfig? Params,
        NormBwdArgs Args, LaunchConfig SumConfig, SumRowsArgs[] Sums);

    internal static (LaunchConfig, NormArgs) PlanForward(NormKind kind, DeviceView x,
        DeviceView weight, DeviceView bias, int rows, int cols, float eps, bool unitOffset,
        DeviceView output, DeviceView mean, DeviceView rstd, DeviceView residual = default)
    {
        string k = kind == NormKind.Rms ? "zett_rmsnorm_forward" : "zett_layernorm_forward";
        Positive(k, rows, nameof(rows));
        Positive(k, cols, nameof(cols));
        if (!(eps > 0))
        {
            throw new ArgumentException($"{k}: eps must be positive, got {eps}", nameof(eps));
        }
        long count = (long)rows * cols;
        View(k, x, nameof(x), count, KernelDType.F32, KernelDType.BF16);
        ulong w = Optional(k, weight, nameof(weight), cols, KernelDType.F32, KernelDType.BF16);
        ulong b = 0;
        if (kind == NormKind.Rms)
        {
            None(k, bias, nameof(bias), "RMSNorm has no bias");
            None(k, mean, nameof(mean), "RMSNorm saves no mean");
        }
        else
        {
            b = Optional(k, bias, nameof(bias), cols, weight.IsPresent ? weight.DType
                : bias.DType);
            View(k, mean, nameof(mean), rows, KernelDType.F32);
        }
        View(k, output, nameof(output), count, KernelDType.F32, KernelDType.BF16);
        View(k, rstd, nameof(rstd), rows, KernelDType.F32);
        ulong res = Optional(k, residual, nameof(residual), count, KernelDType.F32,
            KernelDType.BF16);
        var args = new NormArgs
        {
            X = x.Address,
            Weight = w,
            Bias = b,
            Out = output.Address,
            Mean = mean.Address,
            Rstd = rstd.Address,
            Rows = rows,
            Cols = cols,
            Eps = eps,
            XDtype = (int)x.DType,
            WDtype = (int)(weight.IsPresent ? weight.DType : bias.DType),
            OutDtype = (int)output.DType,
            UnitOffset = unitOffset ? 1 : 0,
            ResDtype = (int)(residual.IsPresent ? residual.DType : KernelDType.F32),
            Residual = res,
        };
        return (new LaunchConfig((uint)rows, 1, RowBlock(cols), 0), args);
    }

    internal static BackwardPlan PlanBackward(NormKind kind, DeviceView x, DeviceView weight,
        DeviceView dy, DeviceView mean, DeviceView rstd, int rows, int cols, bool unitOffset,
        DeviceView dx, DeviceView dWeight, DeviceView dBias, DeviceView partial, float beta)
    {
        string k = kind == NormKind.Rms ? "zett_rmsnorm_backward" : "zett_layernorm_backward";
        Positive(k, rows, nameof(rows));
        Positive(k, cols, nameof(cols));
        long count = (long)rows * cols;
        View(k, x, nameof(x), count, KernelDType.F32, KernelDType.BF16);
        ulong w = Optional(k, weight, nameof(weight), cols, KernelDType.F32, KernelDType.BF16);
        View(k, dy, nameof(dy), count, KernelDType.F32, KernelDType.BF16);
        if (kind == NormKind.Rms)
        {
            None(k, mean, nameof(mean), "RMSNorm saves no mean");
            None(k, dBias, nameof(dBias), "RMSNorm has no bias");
        }
        else
        {
            View(k, mean, nameof(mean), rows, KernelDType.F32);
        }
        View(k, rstd, nameof(rstd), rows, KernelDType.F32);
        View(k, dx, nameof(dx), count, KernelDType.F32, KernelDType.BF16);
        ulong dw = Optional(k, dWeight, nameof(dWeight), cols, KernelDType.F32);
        ulong db = Optional(k, dBias, nameof(dBias), cols, KernelDType.F32);
        if (beta != 0f && beta != 1f)
        {
            throw new ArgumentException($"{k}: beta must be 0 or 1, got {beta}", nameof(beta));
        }
        int chunks = Chunks(rows);
        bool any = dw != 0 || db != 0;
        if (any)
        {
            View(k, partial, nameof(partial), 2L * chunks * cols, KernelDType.F32);
        }
        var args = new NormBwdArgs
        {
            X = x.Address,
            Weight = w,
            Dy = dy.Address,
            Mean = mean.Address,
            Rstd = rstd.Address,
            Dx = dx.Address,
            DwPartial = dw != 0 ? partial.Address : 0,
            DbPartial = db != 0 ? partial.Slice((long)chunks * cols, (long)chunks * cols).Address
                : 0,
            Rows = rows,
            Cols = cols,
            RowsPerChunk = RowsPerChunk,
            XDtype = (int)x.DType,
            WDtype = (int)(weight.IsPresent ? weight.DType : KernelDType.F32),
            DyDtype = (int)dy.DType,
            DxDtype = (int)dx.DType,
            UnitOffset = unitOffset ? 1 : 0,
        };
        var dxCfg = new LaunchConfig((uint)rows, 1, RowBlock(cols), 0);
        uint colBlocks = (uint)((cols + ParamThreads - 1) / ParamThreads);
        var sumCfg = new LaunchConfig(colBlocks, 1, ParamThreads, 0);
        var sums = new List<SumRowsArgs>();
        if (dw != 0)
        {
            sums.Add(SumArgs(args.DwPartial, dw, chunks, cols, beta));
        }
        if (db != 0)
        {
            sums.Add(SumArgs(args.DbPartial, db, chunks, cols, beta));
        }
        LaunchConfig? paramCfg = any
            ? new LaunchConfig(colBlocks, (uint)chunks, ParamThreads, 0) : null;
        return new BackwardPlan(dxCfg, paramCfg, args, sumCfg, [.. sums]);
    }

    private static SumRowsArgs SumArgs(ulong partial, ulong output, int chunks, int cols,
        float beta) => new()
        {
            X = partial,
            Out = output,
            Rows = chunks,
            Cols = cols,
            Ld = cols,
            Beta = beta,
            XDtype = (int)KernelDType.F32,
        };

    private static void None(string k, DeviceView view, string name, string why)
    {
        if (view.IsPresent)
        {
            throw new ArgumentException($"{k}: {name} must be absent ({why})", name);
        }
    }
}
