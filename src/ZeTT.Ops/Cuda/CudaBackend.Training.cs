using ZeTT.Kernels;
using ZeTT.Kernels.Launch;

namespace ZeTT.Ops.Cuda;

public sealed partial class CudaBackend
{
    // ---- training (kernels/training.cu) ----------------------------------------------------
    // Operands the kernels do not take (F64, a gradient vector that is not F32 or not
    // contiguous) go through the interface's host round trip, which is correct on every
    // backend.

    /// <inheritdoc />
    public void ScaleShift(Tensor x, Tensor scale, Tensor? shift, Tensor y)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(scale);
        ArgumentNullException.ThrowIfNull(y);
        RequireSameShape(x, y);
        if (!Kernel(x, scale, y) || (shift is not null && !Kernel(shift)))
        {
            HostFallback.ScaleShift(this, x, scale, shift, y);
            return;
        }
        (long rows, long width, long ldx) = Rows(x);
        long ldy = Rows(y).Ld;
        Vector(scale, width, "scale shift");
        if (shift is not null)
        {
            Vector(shift, width, "scale shift");
        }
        if (x.Count == 0)
        {
            return;
        }
        TrainingKernels.ScaleShift(_kernels, _stream, Strided(x, ldx), View(scale),
            ViewOrNone(shift), ToInt(rows, x, "rows"), ToInt(width, x, "width"),
            Strided(y, ldy));
    }

    /// <inheritdoc />
    public void ScaleShiftBackward(Tensor dy, Tensor x, Tensor scale, Tensor? dx, Tensor? dScale,
        Tensor? dShift)
    {
        ArgumentNullException.ThrowIfNull(dy);
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(scale);
        RequireSameShape(dy, x);
        if (dx is not null)
        {
            RequireSameShape(dy, dx);
        }
        bool gradients = dScale is not null || dShift is not null;
        if (!Kernel(dy, x, scale) || (dx is not null && !Kernel(dx))
            || (gradients && !(GradientVector(dScale) && GradientVector(dShift))))
        {
            HostFallback.ScaleShiftBackward(this, dy, x, scale, dx, dScale, dShift);
            return;
        }
        (long rows, long width, long ldg) = Rows(dy);
        long ldx = Rows(x).Ld;
        // The parameter gradients first: they read dy, which dx may overwrite.
        if (gradients && dy.Count > 0)
        {
            int r = ToInt(rows, dy, "rows"), w = ToInt(width, dy, "width");
            foreach (Tensor? t in (Tensor?[])[dScale, dShift])
            {
                if (t is not null && t.Count != width)
                {
                    throw new ArgumentException($"scale shift backward: '{t.Name}' has "
                        + $"{t.Count} elements for rows of {width}");
                }
            }
            TrainingKernels.ScaleShiftParams(_kernels, _stream, Strided(dy, ldg),
                Strided(x, ldx), r, w, ViewOrNone(dScale), ViewOrNone(dShift),
                Scratch("scale-shift-partial", KernelDType.F32,
                    2L * TrainingKernels.Chunks(r) * w));
        }
        if (dx is not null)
        {
            ScaleShift(dy, scale, null, dx);
        }
    }

    /// <inheritdoc />
    public void AdamW(Tensor parameter, Tensor gradient, Tensor m, Tensor v, AdamWStep step)
    {
        ArgumentNullException.ThrowIfNull(parameter);
        ArgumentNullException.ThrowIfNull(gradient);
        ArgumentNullException.ThrowIfNull(m);
        ArgumentNullException.ThrowIfNull(v);
        RequireSameShape(parameter, gradient);
        RequireSameShape(parameter, m);
        RequireSameShape(parameter, v);
        if (!Kernel(parameter, gradient, m, v) || m.DType != v.DType)
        {
            HostFallback.AdamW(this, parameter, gradient, m, v, step);
            return;
        }
        Dense(parameter, "adamw", gradient, m, v);
        AdamWScalars s = AdamWScalars.For(step.LearningRate, step.Beta1, step.Beta2, step.Eps,
            step.WeightDecay, step.Step, step.GradientScale);
        if (parameter.Count > 0)
        {
            TrainingKernels.AdamW(_kernels, _stream, View(parameter), View(gradient), View(m),
                View(v), parameter.Count, s);
        }
    }

    /// <summary>Whether the kernels take these tensors' dtypes (F32, BF16).</summary>
    private static bool Kernel(params Tensor[] tensors) =>
        tensors.All(t => t.DType is DType.F32 or DType.BF16);

    /// <summary>A gradient vector the parameter stage writes: absent, or contiguous F32.</summary>
    private static bool GradientVector(Tensor? t) =>
        t is null || (t.DType == DType.F32 && t.IsContiguous);

    private static void Vector(Tensor t, long width, string op)
    {
        if (t.Count != width || !t.IsContiguous)
        {
            throw new ArgumentException($"{op}: '{t.Name}' must be a contiguous vector of "
                + $"{width} elements, is {Tensor.ShapeText(t.Shape)}");
        }
    }

    private static StridedRows Strided(Tensor t, long ld) =>
        new(View(t), ToInt(ld, t, "row stride"));
}
