using System.Numerics;
using System.Numerics.Tensors;

namespace ZeTT.Ops.Cpu;

public sealed unsafe partial class CpuBackend
{
    /// <inheritdoc />
    public void ScaleShift(Tensor x, Tensor scale, Tensor? shift, Tensor y)
    {
        RequireSameShape(x, y);
        if (IsF64(x, y))
        {
            ScaleShiftForward<double>(x, scale, shift, y);
        }
        else
        {
            ScaleShiftForward<float>(x, scale, shift, y);
        }
    }

    private static void ScaleShiftForward<T>(Tensor x, Tensor scale, Tensor? shift, Tensor y)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        RequireActivation<T>(x);
        RequireActivation<T>(y);
        RequireWritable(y);
        (long rows, long width) = RowShape(x);
        T[] w = ReadVector<T>(scale, width);
        T[]? b = shift is null ? null : ReadVector<T>(shift, width);
        long[] xo = RowOffsets(x), yo = RowOffsets(y);
        T* px = (T*)x.Address, py = (T*)y.Address;
        int n = (int)width;
        For(rows, width, r =>
        {
            var yr = new Span<T>(py + yo[r], n);
            TensorPrimitives.Multiply(new ReadOnlySpan<T>(px + xo[r], n), w, yr);
            if (b is not null)
            {
                TensorPrimitives.Add(yr, b, yr);
            }
        });
    }

    /// <inheritdoc />
    public void ScaleShiftBackward(Tensor dy, Tensor x, Tensor scale, Tensor? dx, Tensor? dScale,
        Tensor? dShift)
    {
        RequireSameShape(dy, x);
        if (dx is not null)
        {
            RequireSameShape(dy, dx);
        }
        if (IsF64(dy, x))
        {
            ScaleShiftBack<double>(dy, x, scale, dx, dScale, dShift);
        }
        else
        {
            ScaleShiftBack<float>(dy, x, scale, dx, dScale, dShift);
        }
    }

    private static void ScaleShiftBack<T>(Tensor dy, Tensor x, Tensor scale, Tensor? dx,
        Tensor? dScale, Tensor? dShift) where T : unmanaged, IFloatingPointIeee754<T>
    {
        RequireActivation<T>(dy);
        RequireActivation<T>(x);
        (long rows, long width) = RowShape(dy);
        int n = (int)width;
        long[] go = RowOffsets(dy), xo = RowOffsets(x);
        T* pg = (T*)dy.Address, px = (T*)x.Address;
        if (dx is not null)
        {
            RequireActivation<T>(dx);
            RequireWritable(dx);
            T[] w = ReadVector<T>(scale, width);
            long[] dxo = RowOffsets(dx);
            T* pd = (T*)dx.Address;
            For(rows, width, r => TensorPrimitives.Multiply(new ReadOnlySpan<T>(pg + go[r], n), w,
                new Span<T>(pd + dxo[r], n)));
        }
        // Column sums over rows in row order on one thread: deterministic, and cheap next to
        // the GEMMs around a rescaler (one multiply-add per element).
        if (dScale is not null)
        {
            var acc = new T[n];
            var prod = new T[n];
            for (long r = 0; r < rows; r++)
            {
                TensorPrimitives.Multiply(new ReadOnlySpan<T>(pg + go[r], n),
                    new ReadOnlySpan<T>(px + xo[r], n), prod);
                TensorPrimitives.Add(acc, prod, acc);
            }
            AccumulateVector(dScale, acc);
        }
        if (dShift is not null)
        {
            var acc = new T[n];
            for (long r = 0; r < rows; r++)
            {
                TensorPrimitives.Add(acc, new ReadOnlySpan<T>(pg + go[r], n), acc);
            }
            AccumulateVector(dShift, acc);
        }
    }

    /// <summary>target += values for a parameter gradient vector of any float dtype and
    /// shape holding values.Length elements.</summary>
    private static void AccumulateVector<T>(Tensor target, T[] values)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        RequireWritable(target);
        if (target.Count != values.Length || !target.IsContiguous)
        {
            throw new ArgumentException($"tensor '{target.Name}' must be contiguous with "
                + $"{values.Length} elements (is {Tensor.ShapeText(target.Shape)})");
        }
        for (int i = 0; i < values.Length; i++)
        {
            WriteElement(target, i, ReadElement(target, i) + double.CreateTruncating(values[i]));
        }
    }

    /// <inheritdoc />
    public void AdamW(Tensor parameter, Tensor gradient, Tensor m, Tensor v, AdamWStep step)
    {
        RequireSameShape(parameter, gradient);
        RequireSameShape(parameter, m);
        RequireSameShape(parameter, v);
        if (IsF64(parameter, gradient, m, v))
        {
            AdamWUpdate<double>(parameter, gradient, m, v, step);
        }
        else
        {
            AdamWUpdate<float>(parameter, gradient, m, v, step);
        }
    }

    private static void AdamWUpdate<T>(Tensor parameter, Tensor gradient, Tensor m, Tensor v,
        AdamWStep s) where T : unmanaged, IFloatingPointIeee754<T>
    {
        foreach (Tensor t in (Tensor[])[parameter, gradient, m, v])
        {
            RequireActivation<T>(t);
            if (!t.IsContiguous)
            {
                throw new ArgumentException($"tensor '{t.Name}': AdamW needs contiguous tensors");
            }
        }
        RequireWritable(parameter);
        RequireWritable(m);
        RequireWritable(v);
        if (s.Step < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(s), "AdamW steps count from 1");
        }
        long count = parameter.Count;
        T* p = (T*)parameter.Address, g = (T*)gradient.Address, pm = (T*)m.Address,
            pv = (T*)v.Address;
        T b1 = T.CreateTruncating(s.Beta1), b2 = T.CreateTruncating(s.Beta2);
        T c1 = T.CreateTruncating(1 - Math.Pow(s.Beta1, s.Step));
        T c2 = T.CreateTruncating(1 - Math.Pow(s.Beta2, s.Step));
        T lr = T.CreateTruncating(s.LearningRate), eps = T.CreateTruncating(s.Eps);
        T wd = T.CreateTruncating(s.WeightDecay), gs = T.CreateTruncating(s.GradientScale);
        const long Chunk = 1 << 16;
        For((count + Chunk - 1) / Chunk, Chunk, c =>
        {
            long end = Math.Min(count, (c + 1) * Chunk);
            for (long i = c * Chunk; i < end; i++)
            {
                T gi = g[i] * gs;
                T mi = (b1 * pm[i]) + ((T.One - b1) * gi);
                T vi = (b2 * pv[i]) + ((T.One - b2) * gi * gi);
                pm[i] = mi;
                pv[i] = vi;
                T update = (mi / c1 / (T.Sqrt(vi / c2) + eps)) + (wd * p[i]);
                p[i] -= lr * update;
            }
        });
    }
}
