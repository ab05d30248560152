using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace ZeTT.Ops.Cpu;

/// <summary>
/// The op layer on the host: TensorPrimitives (Vector256/Vector512 underneath) inside a row,
/// rows spread over all cores, matrix products through <see cref="CpuGemm"/>. Activations are
/// F32, or F64 for the finite-difference test path (every op has both, written once over
/// generic math); weights may be F32, BF16 or F16 as stored, memory-mapped. Results do not
/// depend on the thread count: parallel loops split work into fixed pieces and reductions
/// across rows run in a fixed order.
/// </summary>
public sealed unsafe partial class CpuBackend : IOpBackend
{
    /// <summary>Work (elements touched) below which a loop stays on one thread, and the least
    /// work of one parallel piece: a Parallel.For dispatch costs microseconds, as much as
    /// ~64 K elements of SIMD arithmetic.</summary>
    private const long MinParallelWork = 1 << 16;

    /// <inheritdoc />
    public string Name => "cpu";

    /// <inheritdoc />
    public TensorDevice Device => TensorDevice.Host;

    /// <inheritdoc />
    public Tensor Empty(DType dtype, long[] shape, string? name = null) =>
        Tensor.Host(dtype, shape, name);

    /// <inheritdoc />
    public Tensor Zeros(DType dtype, long[] shape, string? name = null) =>
        Tensor.Host(dtype, shape, name);

    /// <inheritdoc />
    public Tensor Upload(Tensor host)
    {
        ArgumentNullException.ThrowIfNull(host);
        RequireHost(host);
        return host;
    }

    /// <inheritdoc />
    public void Download(Tensor source, Tensor hostDestination)
    {
        ArgumentNullException.ThrowIfNull(hostDestination);
        if (!hostDestination.IsContiguous)
        {
            throw new ArgumentException($"tensor '{hostDestination.Name}': a download target must "
                + "be contiguous", nameof(hostDestination));
        }
        Copy(source, hostDestination);
    }

    /// <inheritdoc />
    public void Copy(Tensor source, Tensor destination)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(destination);
        RequireHost(source);
        RequireWritable(destination);
        RequireSameShape(source, destination);
        if (source.Rank == 0 || source.Count == 0)
        {
            if (source.Count == 1)
            {
                WriteElement(destination, 0, ReadElement(source, 0));
            }
            return;
        }
        long width = source.Shape[^1];
        long[] so = RowOffsets(source, lastContiguous: false);
        long[] dofs = RowOffsets(destination, lastContiguous: false);
        long ss = source.Strides[^1], ds = destination.Strides[^1];
        bool fast = source.DType == destination.DType && ss == 1 && ds == 1;
        int size = source.ElementSize;
        For(so.Length, width, r =>
        {
            if (fast)
            {
                Buffer.MemoryCopy((byte*)source.Address + so[r] * size,
                    (byte*)destination.Address + dofs[r] * size, width * size, width * size);
                return;
            }
            for (long c = 0; c < width; c++)
            {
                WriteElement(destination, dofs[r] + c * ds, ReadElement(source, so[r] + c * ss));
            }
        });
    }

    /// <inheritdoc />
    public void Fill(Tensor tensor, double value)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        RequireWritable(tensor);
        if (tensor.Count == 0)
        {
            return;
        }
        if (tensor.Rank == 0)
        {
            WriteElement(tensor, 0, value);
            return;
        }
        long width = tensor.Shape[^1];
        long[] offs = RowOffsets(tensor, lastContiguous: false);
        long s = tensor.Strides[^1];
        For(offs.Length, width, r =>
        {
            for (long c = 0; c < width; c++)
            {
                WriteElement(tensor, offs[r] + c * s, value);
            }
        });
    }

    /// <inheritdoc />
    public void Synchronize()
    {
    }

    /// <summary>Nothing to release: tensors own their memory.</summary>
    public void Dispose()
    {
    }

    // ---- elementwise ---------------------------------------------------------------------

    /// <inheritdoc />
    public void Add(Tensor a, Tensor b, Tensor y)
    {
        RequireSameShape(a, b);
        RequireSameShape(a, y);
        if (IsF64(y, a, b))
        {
            Binary<double>(a, b, y, static (x, z, o) => TensorPrimitives.Add(x, z, o));
        }
        else
        {
            Binary<float>(a, b, y, static (x, z, o) => TensorPrimitives.Add(x, z, o));
        }
    }

    /// <inheritdoc />
    public void AddScaled(Tensor x, float alpha, Tensor y)
    {
        RequireSameShape(x, y);
        if (IsF64(y, x))
        {
            double a = alpha;
            Binary<double>(x, y, y, (p, q, o) => TensorPrimitives.MultiplyAdd(p, a, q, o));
        }
        else
        {
            Binary<float>(x, y, y, (p, q, o) => TensorPrimitives.MultiplyAdd(p, alpha, q, o));
        }
    }

    /// <inheritdoc />
    public void Scale(Tensor x, float alpha, Tensor y)
    {
        RequireSameShape(x, y);
        if (IsF64(y, x))
        {
            double a = alpha;
            Binary<double>(x, x, y, (p, _, o) => TensorPrimitives.Multiply(p, a, o));
        }
        else
        {
            Binary<float>(x, x, y, (p, _, o) => TensorPrimitives.Multiply(p, alpha, o));
        }
    }

    private delegate void RowFunc<T>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> y);

    private void Binary<T>(Tensor a, Tensor b, Tensor y, RowFunc<T> f) where T : unmanaged
    {
        RequireActivation<T>(a);
        RequireActivation<T>(b);
        RequireActivation<T>(y);
        RequireWritable(y);
        if (y.Count == 0)
        {
            return;
        }
        (long rows, long width) = RowShape(y);
        long[] ao = RowOffsets(a), bo = RowOffsets(b), yo = RowOffsets(y);
        T* pa = (T*)a.Address, pb = (T*)b.Address, py = (T*)y.Address;
        For(rows, width, r => f(new ReadOnlySpan<T>(pa + ao[r], (int)width),
            new ReadOnlySpan<T>(pb + bo[r], (int)width), new Span<T>(py + yo[r], (int)width)));
    }

    // ---- activations ---------------------------------------------------------------------

    /// <inheritdoc />
    public void Activation(ActivationFunction function, Tensor x, Tensor y)
    {
        RequireSameShape(x, y);
        if (IsF64(y, x))
        {
            Binary<double>(x, x, y, (p, _, o) => Activations.Forward(function, p, o));
        }
        else if (VectorActivations.Handles(function))
        {
            Binary<float>(x, x, y, (p, _, o) =>
            {
                fixed (float* px = p, po = o)
                {
                    VectorActivations.Forward(function, px, po, p.Length);
                }
            });
        }
        else
        {
            Binary<float>(x, x, y, (p, _, o) => Activations.Forward(function, p, o));
        }
    }

    /// <inheritdoc />
    public void ActivationBackward(ActivationFunction function, Tensor dy, Tensor x, Tensor dx)
    {
        RequireSameShape(dy, x);
        RequireSameShape(x, dx);
        if (IsF64(dx, x, dy))
        {
            Binary<double>(dy, x, dx, (g, p, o) => Activations.Backward(function, g, p, o));
        }
        else
        {
            Binary<float>(dy, x, dx, (g, p, o) => Activations.Backward(function, g, p, o));
        }
    }

    /// <inheritdoc />
    public void GatedActivation(ActivationFunction function, Tensor gate, Tensor up, Tensor y)
    {
        RequireSameShape(gate, up);
        RequireSameShape(gate, y);
        if (IsF64(y, gate, up))
        {
            Binary<double>(gate, up, y, (g, u, o) => Activations.Gated(function, g, u, o));
        }
        else
        {
            Binary<float>(gate, up, y, (g, u, o) => Activations.Gated(function, g, u, o));
        }
    }

    /// <inheritdoc />
    public void GatedActivationBackward(ActivationFunction function, Tensor dy, Tensor gate,
        Tensor up, Tensor dGate, Tensor dUp)
    {
        RequireSameShape(dy, gate);
        RequireSameShape(gate, up);
        RequireSameShape(gate, dGate);
        RequireSameShape(gate, dUp);
        if (IsF64(dy, gate, up, dGate, dUp))
        {
            GatedBackward<double>(function, dy, gate, up, dGate, dUp);
        }
        else
        {
            GatedBackward<float>(function, dy, gate, up, dGate, dUp);
        }
    }

    private void GatedBackward<T>(ActivationFunction function, Tensor dy, Tensor gate, Tensor up,
        Tensor dGate, Tensor dUp) where T : unmanaged, IFloatingPointIeee754<T>
    {
        foreach (Tensor t in (Tensor[])[dy, gate, up, dGate, dUp])
        {
            RequireActivation<T>(t);
        }
        RequireWritable(dGate);
        RequireWritable(dUp);
        if (dy.Count == 0)
        {
            return;
        }
        (long rows, long width) = RowShape(dy);
        long[] o0 = RowOffsets(dy), o1 = RowOffsets(gate), o2 = RowOffsets(up),
            o3 = RowOffsets(dGate), o4 = RowOffsets(dUp);
        T* p0 = (T*)dy.Address, p1 = (T*)gate.Address, p2 = (T*)up.Address,
            p3 = (T*)dGate.Address, p4 = (T*)dUp.Address;
        int w = (int)width;
        For(rows, width * 8, r =>
        {
            var g = new ReadOnlySpan<T>(p1 + o1[r], w);
            var u = new ReadOnlySpan<T>(p2 + o2[r], w);
            var d = new ReadOnlySpan<T>(p0 + o0[r], w);
            var act = new T[w];
            Activations.Forward(function, g, act);
            var du = new T[w];
            TensorPrimitives.Multiply(d, act, du);
            var dg = new T[w];
            TensorPrimitives.Multiply(d, u, dg);
            Activations.Backward(function, dg, g, dg);
            du.CopyTo(new Span<T>(p4 + o4[r], w));
            dg.CopyTo(new Span<T>(p3 + o3[r], w));
        });
    }

    // ---- helpers -------------------------------------------------------------------------

    /// <summary>Runs <paramref name="body"/> for 0 … <paramref name="count"/>−1, in parallel
    /// when count · <paramref name="workEach"/> is large enough.</summary>
    /// <remarks>The items go out in at most four contiguous pieces per core, each worth at
    /// least <see cref="MinParallelWork"/>: Parallel.For over single items dispatched every
    /// row of a small op as its own work item, which cost more than the row (stories260K:
    /// rows of 64 floats).</remarks>
    internal static void For(long count, long workEach, Action<long> body)
    {
        if (count <= 0)
        {
            return;
        }
        long total = count * Math.Max(workEach, 1);
        long pieces = Math.Min(count, Math.Min(4L * Environment.ProcessorCount,
            total / MinParallelWork));
        if (pieces < 2)
        {
            for (long i = 0; i < count; i++)
            {
                body(i);
            }
            return;
        }
        Parallel.For(0L, pieces, p =>
        {
            long end = count * (p + 1) / pieces;
            for (long i = count * p / pieces; i < end; i++)
            {
                body(i);
            }
        });
    }

    /// <summary>Element offsets (relative to <see cref="Tensor.Address"/>) of every row, a row
    /// being the last dimension; the last stride must be 1 unless told otherwise.</summary>
    internal static long[] RowOffsets(Tensor t, bool lastContiguous = true)
    {
        if (t.Rank == 0)
        {
            return [0];
        }
        if (lastContiguous && t.Strides[^1] != 1 && t.Shape[^1] > 1)
        {
            throw new ArgumentException($"tensor '{t.Name}': the last dimension must be "
                + $"contiguous (strides {Tensor.ShapeText(t.Strides)})");
        }
        long rows = 1;
        for (int d = 0; d < t.Rank - 1; d++)
        {
            rows *= t.Shape[d];
        }
        var offsets = new long[rows];
        var index = new long[Math.Max(t.Rank - 1, 0)];
        long offset = 0;
        for (long r = 0; r < rows; r++)
        {
            offsets[r] = offset;
            for (int d = t.Rank - 2; d >= 0; d--)
            {
                index[d]++;
                offset += t.Strides[d];
                if (index[d] < t.Shape[d])
                {
                    break;
                }
                offset -= t.Strides[d] * index[d];
                index[d] = 0;
            }
        }
        return offsets;
    }

    /// <summary>(rows, width) of a tensor read as rows of its last dimension.</summary>
    internal static (long Rows, long Width) RowShape(Tensor t)
    {
        if (t.Rank == 0)
        {
            return (1, 1);
        }
        long width = t.Shape[^1];
        return (width == 0 ? 0 : t.Count / width, width);
    }

    private static bool IsF64(params ReadOnlySpan<Tensor> tensors)
    {
        int f64 = 0;
        foreach (Tensor t in tensors)
        {
            f64 += t.DType == DType.F64 ? 1 : 0;
        }
        if (f64 > 0 && f64 < tensors.Length)
        {
            foreach (Tensor odd in tensors)
            {
                if (odd.DType != DType.F64)
                {
                    throw new ArgumentException($"tensor '{odd.Name}' is {odd.DType}, but this op "
                        + "runs in F64 (the float64 path takes F64 tensors only)");
                }
            }
        }
        return f64 > 0;
    }

    internal static void RequireActivation<T>(Tensor t) where T : unmanaged
    {
        RequireHost(t);
        DType want = typeof(T) == typeof(double) ? DType.F64 : DType.F32;
        if (t.DType != want)
        {
            throw new ArgumentException($"tensor '{t.Name}' is {t.DType}; the CPU backend computes "
                + $"activations in {want} here");
        }
    }

    internal static void RequireHost(Tensor t)
    {
        ArgumentNullException.ThrowIfNull(t);
        if (t.Device != TensorDevice.Host)
        {
            throw new ArgumentException($"tensor '{t.Name}' is on {t.Device}; the CPU backend reads "
                + "host memory");
        }
    }

    internal static void RequireWritable(Tensor t)
    {
        RequireHost(t);
        if (!t.Storage.IsWritable)
        {
            throw new ArgumentException($"tensor '{t.Name}' is read-only (memory-mapped) and cannot "
                + "be an output");
        }
    }

    internal static void RequireSameShape(Tensor a, Tensor b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (!a.Shape.AsSpan().SequenceEqual(b.Shape))
        {
            throw new ArgumentException($"tensor '{b.Name}' has shape {Tensor.ShapeText(b.Shape)}, "
                + $"expected {Tensor.ShapeText(a.Shape)} (as '{a.Name}')");
        }
    }

    internal static void RequireShape(Tensor t, params long[] shape)
    {
        ArgumentNullException.ThrowIfNull(t);
        if (!t.Shape.AsSpan().SequenceEqual(shape))
        {
            throw new ArgumentException($"tensor '{t.Name}' has shape {Tensor.ShapeText(t.Shape)}, "
                + $"expected {Tensor.ShapeText(shape)}");
        }
    }

    internal static int[] ReadInts(Tensor t)
    {
        RequireHost(t);
        if (t.DType != DType.I32)
        {
            throw new ArgumentException($"tensor '{t.Name}' is {t.DType}, expected I32");
        }
        if (t.IsContiguous)
        {
            return new ReadOnlySpan<int>((void*)t.Address, checked((int)t.Count)).ToArray();
        }
        return Array.ConvertAll(t.ToDoubles(), x => (int)x);
    }

    /// <summary>A float vector (norm weight, bias) widened into T.</summary>
    internal static T[] ReadVector<T>(Tensor t, long expected) where T : unmanaged, INumberBase<T>
    {
        RequireHost(t);
        if (t.Count != expected)
        {
            throw new ArgumentException($"tensor '{t.Name}' has {t.Count} elements "
                + $"{Tensor.ShapeText(t.Shape)}, expected {expected}");
        }
        var result = new T[expected];
        if (t.IsContiguous)
        {
            ReadRow(t.DType, (void*)t.Address, result, t.Name);
        }
        else
        {
            double[] d = t.ToDoubles();
            for (long i = 0; i < expected; i++)
            {
                result[i] = T.CreateTruncating(d[i]);
            }
        }
        return result;
    }

    /// <summary>Widens <paramref name="destination"/>.Length contiguous elements of a stored
    /// dtype into T.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void ReadRow<T>(DType dtype, void* source, Span<T> destination, string name)
        where T : unmanaged, INumberBase<T>
    {
        int n = destination.Length;
        switch (dtype)
        {
            case DType.F32 when typeof(T) == typeof(float):
                new ReadOnlySpan<T>(source, n).CopyTo(destination);
                break;
            case DType.F64 when typeof(T) == typeof(double):
                new ReadOnlySpan<T>(source, n).CopyTo(destination);
                break;
            case DType.F32:
                for (int i = 0; i < n; i++)
                {
                    destination[i] = T.CreateTruncating(((float*)source)[i]);
                }
                break;
            case DType.F64:
                for (int i = 0; i < n; i++)
                {
                    destination[i] = T.CreateTruncating(((double*)source)[i]);
                }
                break;
            case DType.BF16:
                for (int i = 0; i < n; i++)
                {
                    destination[i] = T.CreateTruncating(BFloat16.ToFloat(((ushort*)source)[i]));
                }
                break;
            case DType.F16:
                for (int i = 0; i < n; i++)
                {
                    destination[i] = T.CreateTruncating((float)((Half*)source)[i]);
                }
                break;
            default:
                throw new ArgumentException($"tensor '{name}' is {dtype}, not a float dtype");
        }
    }

    private static double ReadElement(Tensor t, long offset)
    {
        byte* p = (byte*)t.Address + offset * t.ElementSize;
        return t.DType switch
        {
            DType.F64 => *(double*)p,
            DType.F32 => *(float*)p,
            DType.BF16 => BFloat16.ToFloat(*(ushort*)p),
            DType.F16 => (double)*(Half*)p,
            DType.I32 => *(int*)p,
            DType.I64 => *(long*)p,
            _ => throw new ArgumentException($"tensor '{t.Name}': {t.DType} is not supported here"),
        };
    }

    private static void WriteElement(Tensor t, long offset, double value)
    {
        byte* p = (byte*)t.Address + offset * t.ElementSize;
        switch (t.DType)
        {
            case DType.F64: *(double*)p = value; break;
            case DType.F32: *(float*)p = (float)value; break;
            case DType.BF16: *(ushort*)p = BFloat16.FromFloat((float)value); break;
            case DType.F16: *(Half*)p = (Half)value; break;
            case DType.I32: *(int*)p = (int)value; break;
            case DType.I64: *(long*)p = (long)value; break;
            default:
                throw new ArgumentException($"tensor '{t.Name}': {t.DType} is not supported here");
        }
    }
}
