using ZeTT.Ops.Cpu;

namespace ZeTT.Ops;

/// <summary>
/// Default implementations of the training ops for a backend without kernels for them: the
/// operands are copied to host tensors (F32, or F64 on the float64 path), the CPU backend
/// computes, and the outputs are copied back. Correct on every backend; slow on a device.
/// </summary>
internal static class HostFallback
{
    private static readonly CpuBackend Cpu = new();

    /// <summary>The operands <see cref="IOpBackend.CopyFromHost"/> takes: a contiguous host
    /// tensor and a contiguous destination of the same dtype and shape.</summary>
    public static void CheckCopyFromHost(Tensor host, Tensor destination)
    {
        ArgumentNullException.ThrowIfNull(host);
        ArgumentNullException.ThrowIfNull(destination);
        if (host.Device != TensorDevice.Host || !host.IsContiguous)
        {
            throw new ArgumentException($"tensor '{host.Name}': CopyFromHost reads a contiguous "
                + "host tensor", nameof(host));
        }
        if (!destination.IsContiguous || host.DType != destination.DType
            || !host.Shape.AsSpan().SequenceEqual(destination.Shape))
        {
            throw new ArgumentException($"CopyFromHost: '{host.Name}' ({host.DType} "
                + $"{Tensor.ShapeText(host.Shape)}) into '{destination.Name}' ({destination.DType} "
                + $"{Tensor.ShapeText(destination.Shape)}) needs one dtype, one shape and a "
                + "contiguous destination", nameof(destination));
        }
    }

    public static void CopyFromHost(IOpBackend ops, Tensor host, Tensor destination)
    {
        CheckCopyFromHost(host, destination);
        ops.Copy(host, destination);
    }

    public static void ScaleShift(IOpBackend ops, Tensor x, Tensor scale, Tensor? shift,
        Tensor y)
    {
        using Tensor hx = ToHost(ops, x), hs = ToHost(ops, scale);
        using Tensor? hb = shift is null ? null : ToHost(ops, shift, DType.F32);
        using Tensor hy = Tensor.Host(y.DType, y.Shape, y.Name);
        Cpu.ScaleShift(hx, hs, hb, hy);
        Back(ops, hy, y);
    }

    public static void ScaleShiftBackward(IOpBackend ops, Tensor dy, Tensor x, Tensor scale,
        Tensor? dx, Tensor? dScale, Tensor? dShift)
    {
        using Tensor hg = ToHost(ops, dy), hx = ToHost(ops, x), hs = ToHost(ops, scale);
        using Tensor? hdx = dx is null ? null : Tensor.Host(dx.DType, dx.Shape, dx.Name);
        using Tensor? hds = dScale is null ? null : ToHost(ops, dScale);
        using Tensor? hdb = dShift is null ? null : ToHost(ops, dShift);
        Cpu.ScaleShiftBackward(hg, hx, hs, hdx, hds, hdb);
        Back(ops, hdx, dx);
        Back(ops, hds, dScale);
        Back(ops, hdb, dShift);
    }

    public static void AdamW(IOpBackend ops, Tensor parameter, Tensor gradient, Tensor m,
        Tensor v, AdamWStep step)
    {
        using Tensor hp = ToHost(ops, parameter), hg = ToHost(ops, gradient, parameter.DType);
        using Tensor hm = ToHost(ops, m), hv = ToHost(ops, v);
        Cpu.AdamW(hp, hg, hm, hv, step);
        Back(ops, hp, parameter);
        Back(ops, hm, m);
        Back(ops, hv, v);
    }

    private static Tensor ToHost(IOpBackend ops, Tensor t, DType? dtype = null)
    {
        Tensor h = Tensor.Host(dtype ?? t.DType, t.Shape, t.Name);
        ops.Download(t, h);
        return h;
    }

    private static void Back(IOpBackend ops, Tensor? host, Tensor? destination)
    {
        if (host is null || destination is null)
        {
            return;
        }
        Tensor uploaded = ops.Upload(host);
        try
        {
            ops.Copy(uploaded, destination);
        }
        finally
        {
            if (!ReferenceEquals(uploaded, host))
            {
                uploaded.Dispose();
            }
        }
    }
}
