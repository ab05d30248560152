using System.Reflection;
using ZeTT.Ops;
using ZeTT.Ops.Cpu;

namespace ZeTT.Runtime.Tests.Hypernetwork;

/// <summary>
/// A CPU model of an op backend that stores activations in bf16 and computes in fp32, as the
/// CUDA backend's kernels do: every op call runs on the <see cref="CpuBackend"/> over fp32
/// copies of its BF16 host tensors, and each copy the op changed is stored back into its BF16
/// tensor rounded to nearest even (what a kernel's bf16 store does). Each op therefore sees
/// bf16-rounded inputs and has its outputs rounded once, so a graph run on it has the numerics
/// of the bf16-activation path up to summation order. Allocation, copies and fills pass
/// straight through (the CPU backend takes BF16 there).
/// </summary>
public class Bf16ActivationBackend : DispatchProxy
{
    private static readonly HashSet<string> PassThrough =
    [
        nameof(IOpBackend.Empty), nameof(IOpBackend.Zeros), nameof(IOpBackend.Upload),
        nameof(IOpBackend.Download), nameof(IOpBackend.Copy), nameof(IOpBackend.Fill),
        nameof(IOpBackend.Synchronize), nameof(IOpBackend.Dispose),
    ];

    private CpuBackend _cpu = null!;

    /// <summary>Calls per op name that had at least one BF16 tensor argument.</summary>
    public Dictionary<string, int> Bf16Calls { get; } = [];

    /// <summary>Calls per op name, all of them.</summary>
    public Dictionary<string, int> Calls { get; } = [];

    /// <summary>A new backend over a new <see cref="CpuBackend"/>.</summary>
    public static (IOpBackend Ops, Bf16ActivationBackend Probe) Create()
    {
        IOpBackend ops = Create<IOpBackend, Bf16ActivationBackend>();
        var probe = (Bf16ActivationBackend)(object)ops;
        probe._cpu = new CpuBackend();
        return (ops, probe);
    }

    /// <inheritdoc />
    protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
    {
        ArgumentNullException.ThrowIfNull(targetMethod);
        string name = targetMethod.Name;
        if (name.StartsWith("get_", StringComparison.Ordinal) || PassThrough.Contains(name))
        {
            return Call(targetMethod, args);
        }
        Calls[name] = Calls.GetValueOrDefault(name) + 1;
        var copies = new List<(Tensor Bf16, Tensor F32, float[] Before)>();
        object?[]? inner = args is null ? null : (object?[])args.Clone();
        try
        {
            for (int i = 0; inner is not null && i < inner.Length; i++)
            {
                if (inner[i] is Tensor { DType: DType.BF16 } t)
                {
                    Tensor f = Tensor.Host(DType.F32, t.Shape, t.Name);
                    _cpu.Copy(t, f);
                    copies.Add((t, f, f.AsSpan<float>().ToArray()));
                    inner[i] = f;
                }
            }
            if (copies.Count > 0)
            {
                Bf16Calls[name] = Bf16Calls.GetValueOrDefault(name) + 1;
            }
            object? result = Call(targetMethod, inner);
            foreach ((Tensor bf16, Tensor f32, float[] before) in copies)
            {
                if (!f32.AsSpan<float>().SequenceEqual(before))
                {
                    _cpu.Copy(f32, bf16);
                }
            }
            return result;
        }
        finally
        {
            foreach ((_, Tensor f32, _) in copies)
            {
                f32.Dispose();
            }
        }
    }

    private object? Call(MethodInfo method, object?[]? args)
    {
        try
        {
            return method.Invoke(_cpu, args);
        }
        catch (TargetInvocationException e) when (e.InnerException is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerException)
                .Throw();
            throw;
        }
    }
}
