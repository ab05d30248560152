using System.Runtime.InteropServices;
using static ZeTT.Kernels.Launch.LaunchChecks;

namespace ZeTT.Kernels.Launch;

/// <summary>Args of <c>zett_scale_shift</c> (kernels/training.cu, same layout).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct ScaleShiftArgs
{
    public ulong X;
    public ulong Scale;
    public ulong Shift;
    public ulong Out;
    public int Rows;
    public int Cols;
    public int LdX;
    public int LdOut;
    public int XDtype;
    public int ScaleDtype;
    public int ShiftDtype;
    public int OutDtype;
}

/// <summary>Args of <c>zett_scale_shift_params</c> (kernels/training.cu, same layout).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct ScaleShiftBwdArgs
{
    public ulong Dy;
    public ulong X;
    public ulong DsPartial;
    public ulong DbPartial;
    public int Rows;
    public int Cols;
    public int LdDy;
    public int LdX;
    public int RowsPerChunk;
    public int DyDtype;
    public int XDtype;
    public int Pad0;
}

/// <summary>Args of <c>zett_adamw</c> (kernels/training.cu, same layout).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct AdamWArgs
{
    public ulong Param;
    public ulong Grad;
    public ulong M;
    public ulong V;
    public long Count;
    public float Lr;
    public float Beta1;
    public float Beta2;
    public float OneMinusBeta1;
    public float OneMinusBeta2;
    public float C1;
    public float C2;
    public float Eps;
    public float WeightDecay;
    public float GradScale;
    public int ParamDtype;
    public int GradDtype;
    public int StateDtype;
    public int Pad0;
}

/// <summary>One row-strided operand of <see cref="TrainingKernels"/>: element 0 and the row
/// stride in elements.</summary>
/// <param name="View">Element 0 of row 0.</param>
/// <param name="Ld">Elements from one row to the next (at least the columns).</param>
public readonly record struct StridedRows(DeviceView View, int Ld);

/// <summary>
/// Launchers of kernels/training.cu: the per-column scale and shift of the hypernetwork's
/// rescalers (forward, dx, and the parameter gradients in two deterministic stages) and the
/// AdamW update. fp32 results equal the CPU backend's bit for bit, except the parameter
/// gradients' sums over more than <see cref="RowsPerChunk"/> rows (chunked order).
/// </summary>
public static class TrainingKernels
{
    /// <summary>Rows each block of the parameter-gradient stage sums in order.</summary>
    public const int RowsPerChunk = 64;

    private const uint ParamThreads = 256;

    /// <summary>Chunks (rows of each partial-sum workspace) for <paramref name="rows"/> rows.
    /// </summary>
    public static int Chunks(int rows) => (rows + RowsPerChunk - 1) / RowsPerChunk;

    /// <summary>Queues <c>output[r, c] = x[r, c]·scale[c] (+ shift[c])</c>; output may be x.
    /// </summary>
    /// <param name="kernels">Loaded kernels.</param>
    /// <param name="stream">Stream to queue on.</param>
    /// <param name="x">[rows, cols] F32 or BF16 with its row stride.</param>
    /// <param name="scale">[cols] F32 or BF16.</param>
    /// <param name="shift">[cols] F32 or BF16, or none.</param>
    /// <param name="rows">Rows.</param>
    /// <param name="cols">Columns.</param>
    /// <param name="output">[rows, cols] F32 or BF16 with its row stride.</param>
    public static void ScaleShift(KernelSet kernels, CudaStream stream, StridedRows x,
        DeviceView scale, DeviceView shift, int rows, int cols, StridedRows output)
    {
        ArgumentNullException.ThrowIfNull(kernels);
        var (config, args) = PlanScaleShift(x, scale, shift, rows, cols, output);
        kernels.ScaleShift.Launch(config, stream, args);
    }

    /// <summary>
    /// Queues the parameter gradients of <see cref="ScaleShift"/>: dScale += Σ_r dy·x and
    /// dShift += Σ_r dy (either may be none), through per-chunk partial sums in
    /// <paramref name="partial"/> (F32, 2·<see cref="Chunks"/>(rows)·cols) and an ordered sum of
    /// the chunks.
    /// </summary>
    /// <param name="kernels">Loaded kernels.</param>
    /// <param name="stream">Stream to queue on.</param>
    /// <param name="dy">[rows, cols] F32 or BF16 with its row stride.</param>
    /// <param name="x">The forward's input, [rows, cols] F32 or BF16 with its row stride.</param>
    /// <param name="rows">Rows.</param>
    /// <param name="cols">Columns.</param>
    /// <param name="dScale">[cols] F32, or none.</param>
    /// <param name="dShift">[cols] F32, or none.</param>
    /// <param name="partial">Workspace, F32.</param>
    public static void ScaleShiftParams(KernelSet kernels, CudaStream stream, StridedRows dy,
        StridedRows x, int rows, int cols, DeviceView dScale, DeviceView dShift,
        DeviceView partial)
    {
        ArgumentNullException.ThrowIfNull(kernels);
        ParamsPlan plan = PlanScaleShiftParams(dy, x, rows, cols, dScale, dShift, partial);
        kernels.ScaleShiftParams.Launch(plan.Partials, stream, plan.Args);
        foreach (SumRowsArgs s in plan.Sums)
        {
            kernels.SumRows.Launch(plan.SumConfig, stream, s);
        }
    }

    /// <summary>
    /// Queues one AdamW update of <paramref name="count"/> contiguous elements in place
    /// (optax's adamw; the arithmetic of the CPU backend, rounded step by step).
    /// </summary>
    /// <param name="kernels">Loaded kernels.</param>
    /// <param name="stream">Stream to queue on.</param>
    /// <param name="parameter">[count] F32 or BF16.</param>
    /// <param name="gradient">[count] F32 or BF16.</param>
    /// <param name="m">[count] F32 or BF16, the first moment.</param>
    /// <param name="v">[count] in m's dtype, the second moment.</param>
    /// <param name="count">Elements.</param>
    /// <param name="step">The hyperparameters as fp32 (see <see cref="AdamWScalars"/>).</param>
    public static void AdamW(KernelSet kernels, CudaStream stream, DeviceView parameter,
        DeviceView gradient, DeviceView m, DeviceView v, long count, AdamWScalars step)
    {
        ArgumentNullException.ThrowIfNull(kernels);
        var (config, args) = PlanAdamW(parameter, gradient, m, v, count, step);
        kernels.AdamW.Launch(config, stream, args);
    }

    internal readonly record struct ParamsPlan(LaunchConfig Partials, ScaleShiftBwdArgs Args,
        LaunchConfig SumConfig, SumRowsArgs[] Sums);

    private static void Rows(string k, StridedRows t, string name, int rows, int cols)
    {
        if (t.Ld < cols)
        {
            throw new ArgumentException($"{k}: {name}'s row stride {t.Ld} is less than the "
                + $"{cols} columns", name);
        }
        View(k, t.View, name, ((long)rows - 1) * t.Ld + cols, KernelDType.F32, KernelDType.BF16);
    }

    internal static (LaunchConfig, ScaleShiftArgs) PlanScaleShift(StridedRows x,
        DeviceView scale, DeviceView shift, int rows, int cols, StridedRows output)
    {
        const string k = "zett_scale_shift";
        Positive(k, rows, nameof(rows));
        Positive(k, cols, nameof(cols));
        Rows(k, x, nameof(x), rows, cols);
        View(k, scale, nameof(scale), cols, KernelDType.F32, KernelDType.BF16);
        ulong b = Optional(k, shift, nameof(shift), cols, KernelDType.F32, KernelDType.BF16);
        Rows(k, output, nameof(output), rows, cols);
        var args = new ScaleShiftArgs
        {
            X = x.View.Address,
            Scale = scale.Address,
            Shift = b,
            Out = output.View.Address,
            Rows = rows,
            Cols = cols,
            LdX = x.Ld,
            LdOut = output.Ld,
            XDtype = (int)x.View.DType,
            ScaleDtype = (int)scale.DType,
            ShiftDtype = (int)(shift.IsPresent ? shift.DType : KernelDType.F32),
            OutDtype = (int)output.View.DType,
        };
        return (new LaunchConfig(GridStride((long)rows * cols), 1, 256, 0), args);
    }

    internal static ParamsPlan PlanScaleShiftParams(StridedRows dy, StridedRows x, int rows,
        int cols, DeviceView dScale, DeviceView dShift, DeviceView partial)
    {
        const string k = "zett_scale_shift_params";
        Positive(k, rows, nameof(rows));
        Positive(k, cols, nameof(cols));
        Rows(k, dy, nameof(dy), rows, cols);
        ulong ds = Optional(k, dScale, nameof(dScale), cols, KernelDType.F32);
        ulong db = Optional(k, dShift, nameof(dShift), cols, KernelDType.F32);
        if (ds == 0 && db == 0)
        {
            throw new ArgumentException($"{k}: neither dScale nor dShift is given",
                nameof(dScale));
        }
        if (ds != 0)
        {
            Rows(k, x, nameof(x), rows, cols);
        }
        int chunks = Chunks(rows);
        View(k, partial, nameof(partial), 2L * chunks * cols, KernelDType.F32);
        var args = new ScaleShiftBwdArgs
        {
            Dy = dy.View.Address,
            X = ds != 0 ? x.View.Address : 0,
            DsPartial = ds != 0 ? partial.Address : 0,
            DbPartial = db != 0 ? partial.Slice((long)chunks * cols, (long)chunks * cols).Address
                : 0,
            Rows = rows,
            Cols = cols,
            LdDy = dy.Ld,
            LdX = ds != 0 ? x.Ld : cols,
            RowsPerChunk = RowsPerChunk,
            DyDtype = (int)dy.View.DType,
            XDtype = (int)(ds != 0 ? x.View.DType : KernelDType.F32),
        };
        uint colBlocks = (uint)((cols + ParamThreads - 1) / ParamThreads);
        var sums = new List<SumRowsArgs>();
        foreach ((ulong part, ulong output) in (ReadOnlySpan<(ulong, ulong)>)
            [(args.DsPartial, ds), (args.DbPartial, db)])
        {
            if (output != 0)
            {
                sums.Add(new SumRowsArgs
                {
                    X = part,
                    Out = output,
                    Rows = chunks,
                    Cols = cols,
                    Ld = cols,
                    Beta = 1f,
                    XDtype = (int)KernelDType.F32,
                });
            }
        }
        return new ParamsPlan(new LaunchConfig(colBlocks, (uint)chunks, ParamThreads, 0), args,
            new LaunchConfig(colBlocks, 1, ParamThreads, 0), [.. sums]);
    }

    internal static (LaunchConfig, AdamWArgs) PlanAdamW(DeviceView parameter,
        DeviceView gradient, DeviceView m, DeviceView v, long count, AdamWScalars s)
    {
        const string k = "zett_adamw";
        if (count <= 0)
        {
            throw new ArgumentException($"{k}: count must be positive, got {count}",
                nameof(count));
        }
        View(k, parameter, nameof(parameter), count, KernelDType.F32, KernelDType.BF16);
        View(k, gradient, nameof(gradient), count, KernelDType.F32, KernelDType.BF16);
        View(k, m, nameof(m), count, KernelDType.F32, KernelDType.BF16);
        View(k, v, nameof(v), count, m.DType);
        var args = new AdamWArgs
        {
            Param = parameter.Address,
            Grad = gradient.Address,
            M = m.Address,
            V = v.Address,
            Count = count,
            Lr = s.LearningRate,
            Beta1 = s.Beta1,
            Beta2 = s.Beta2,
            OneMinusBeta1 = s.OneMinusBeta1,
            OneMinusBeta2 = s.OneMinusBeta2,
            C1 = s.C1,
            C2 = s.C2,
            Eps = s.Eps,
            WeightDecay = s.WeightDecay,
            GradScale = s.GradientScale,
            ParamDtype = (int)parameter.DType,
            GradDtype = (int)gradient.DType,
            StateDtype = (int)m.DType,
        };
        return (new LaunchConfig(GridStride(count), 1, 256, 0), args);
    }
}

/// <summary>
/// AdamW's hyperparameters for one step as the fp32 values the update uses, made the way the
/// CPU backend makes them: each hyperparameter rounded to fp32, 1 − β in fp32, and the bias
/// corrections 1 − β^t computed in double and then rounded.
/// </summary>
/// <param name="LearningRate">lr.</param>
/// <param name="Beta1">β1.</param>
/// <param name="Beta2">β2.</param>
/// <param name="OneMinusBeta1">1 − β1 (fp32).</param>
/// <param name="OneMinusBeta2">1 − β2 (fp32).</param>
/// <param name="C1">1 − β1^t.</param>
/// <param name="C2">1 − β2^t.</param>
/// <param name="Eps">eps.</param>
/// <param name="WeightDecay">Decoupled weight decay.</param>
/// <param name="GradientScale">Factor on the gradient (1 / accumulation steps).</param>
public readonly record struct AdamWScalars(float LearningRate, float Beta1, float Beta2,
    float OneMinusBeta1, float OneMinusBeta2, float C1, float C2, float Eps, float WeightDecay,
    float GradientScale)
{
    /// <summary>The scalars of step <paramref name="step"/> (counting from 1).</summary>
    public static AdamWScalars For(double learningRate, double beta1, double beta2, double eps,
        double weightDecay, long step, double gradientScale)
    {
        if (step < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(step), "AdamW steps count from 1");
        }
        float b1 = (float)beta1, b2 = (float)beta2;
        return new AdamWScalars((float)learningRate, b1, b2, 1f - b1, 1f - b2,
            (float)(1 - Math.Pow(beta1, step)), (float)(1 - Math.Pow(beta2, step)), (float)eps,
            (float)weightDecay, (float)gradientScale);
    }
}
