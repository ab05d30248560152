using System.Numerics;
using System.Numerics.Tensors;

namespace ZeTT.Ops.Cpu;

public sealed unsafe partial class CpuBackend
{
    /// <inheritdoc />
    public void LayerNormForward(Tensor x, Tensor weight, Tensor? bias, float eps, Tensor y,
        Tensor mean, Tensor rstd, Tensor? residual = null)
    {
        RequireSameShape(x, y);
        if (residual is not null)
        {
            RequireSameShape(x, residual);
        }
        if (IsF64(x, y, mean, rstd))
        {
            NormForward<double>(x, weight, bias, eps, false, false, y, mean, rstd, residual);
        }
        else
        {
            NormForward<float>(x, weight, bias, eps, false, false, y, mean, rstd, residual);
        }
    }

    /// <inheritdoc />
    public void RmsNormForward(Tensor x, Tensor weight, float eps, bool unitOffset, Tensor y,
        Tensor rstd)
    {
        RequireSameShape(x, y);
        if (IsF64(x, y, rstd))
        {
            NormForward<double>(x, weight, null, eps, true, unitOffset, y, null, rstd);
        }
        else
        {
            NormForward<float>(x, weight, null, eps, true, unitOffset, y, null, rstd);
        }
    }

    private static void NormForward<T>(Tensor x, Tensor weight, Tensor? bias, float eps, bool rms,
        bool unitOffset, Tensor y, Tensor? mean, Tensor rstd, Tensor? residual = null)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (residual is not null)
        {
            RequireActivation<T>(residual);
        }
        RequireActivation<T>(x);
        RequireActivation<T>(y);
        RequireWritable(y);
        (long rows, long width) = RowShape(x);
        RequireStats<T>(rstd, rows);
        if (mean is not null)
        {
            RequireStats<T>(mean, rows);
        }
        T[] w = ReadVector<T>(weight, width);
        if (unitOffset)
        {
            TensorPrimitives.Add(w, T.One, w);
        }
        T[]? b = bias is null ? null : ReadVector<T>(bias, width);
        long[] xo = RowOffsets(x), yo = RowOffsets(y);
        long[]? ro = residual is null ? null : RowOffsets(residual);
        T* px = (T*)x.Address, py = (T*)y.Address;
        T* pres = residual is null ? null : (T*)residual.Address;
        T* pm = mean is null ? null : (T*)mean.Address, pr = (T*)rstd.Address;
        int n = (int)width;
        T e = T.CreateTruncating(eps), count = T.CreateTruncating(width);
        For(rows, width * 4, r =>
        {
            var xr = new ReadOnlySpan<T>(px + xo[r], n);
            var yr = new Span<T>(py + yo[r], n);
            if (pres != null)
            {
                // The residual sum, in y (as a separate Add would write it), then y normalised
                // in place: the same values as Add followed by the norm.
                TensorPrimitives.Add(xr, new ReadOnlySpan<T>(pres + ro![r], n), yr);
                xr = yr;
            }
            T mu = rms ? T.Zero : TensorPrimitives.Sum(xr) / count;
            if (rms)
            {
                T ms = TensorPrimitives.SumOfSquares(xr) / count;
                T rs = T.One / T.Sqrt(ms + e);
                TensorPrimitives.Multiply(xr, rs, yr);
                TensorPrimitives.Multiply(yr, w, yr);
                pr[r] = rs;
            }
            else
            {
                TensorPrimitives.Subtract(xr, mu, yr);
                T var = TensorPrimitives.SumOfSquares<T>(yr) / count;
                T rs = T.One / T.Sqrt(var + e);
                TensorPrimitives.Multiply(yr, rs, yr);
                if (b is null)
                {
                    TensorPrimitives.Multiply(yr, w, yr);
                }
                else
                {
                    TensorPrimitives.FusedMultiplyAdd(yr, w, b, yr);
                }
                pm![r] = mu;
                pr[r] = rs;
            }
        });
    }

    /// <inheritdoc />
    public void LayerNormBackward(Tensor dy, Tensor x, Tensor weight, Tensor mean, Tensor rstd,
        Tensor dx, Tensor? dWeight, Tensor? dBias)
    {
        RequireSameShape(x, dy);
        RequireSameShape(x, dx);
        if (IsF64(dy, x, dx, mean, rstd))
        {
            NormBackward<double>(dy, x, weight, false, false, mean, rstd, dx, dWeight, dBias);
        }
        else
        {
            NormBackward<float>(dy, x, weight, false, false, mean, rstd, dx, dWeight, dBias);
        }
    }

    /// <inheritdoc />
    public void RmsNormBackward(Tensor dy, Tensor x, Tensor weight, bool unitOffset, Tensor rstd,
        Tensor dx, Tensor? dWeight)
    {
        RequireSameShape(x, dy);
        RequireSameShape(x, dx);
        if (IsF64(dy, x, dx, rstd))
        {
            NormBackward<double>(dy, x, weight, true, unitOffset, null, rstd, dx, dWeight, null);
        }
        else
        {
            NormBackward<float>(dy, x, weight, true, unitOffset, null, rstd, dx, dWeight, null);
        }
    }

    /// <summary>x̂ = (x − mean)·rstd; dx = rstd · (g − mean(g) − x̂ · mean(g · x̂)) with
    /// g = dy · w (RMSNorm: no mean terms); dWeight += Σ dy · x̂, dBias += Σ dy.</summary>
    private static void NormBackward<T>(Tensor dy, Tensor x, Tensor weight, bool rms,
        bool unitOffset, Tensor? mean, Tensor rstd, Tensor dx, Tensor? dWeight, Tensor? dBias)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        RequireActivation<T>(dy);
        RequireActivation<T>(x);
        RequireActivation<T>(dx);
        RequireWritable(dx);
        (long rows, long width) = RowShape(x);
        RequireStats<T>(rstd, rows);
        if (mean is not null)
        {
            RequireStats<T>(mean, rows);
        }
        T[] w = ReadVector<T>(weight, width);
        if (unitOffset)
        {
            TensorPrimitives.Add(w, T.One, w);
        }
        long[] xo = RowOffsets(x), go = RowOffsets(dy), dxo = RowOffsets(dx);
        T* px = (T*)x.Address, pg = (T*)dy.Address, pdx = (T*)dx.Address;
        T* pm = mean is null ? null : (T*)mean.Address, pr = (T*)rstd.Address;
        int n = (int)width;
        T count = T.CreateTruncating(width);
        For(rows, width * 6, r =>
        {
            var xhat = new T[n];
            var g = new T[n];
            var xr = new ReadOnlySpan<T>(px + xo[r], n);
            T mu = pm is null ? T.Zero : pm[r];
            T rs = pr[r];
            TensorPrimitives.Subtract(xr, mu, xhat);
            TensorPrimitives.Multiply(xhat, rs, xhat);
            TensorPrimitives.Multiply(new ReadOnlySpan<T>(pg + go[r], n), w, g);
            T meanG = rms ? T.Zero : TensorPrimitives.Sum<T>(g) / count;
            T meanGx = TensorPrimitives.Dot<T>(g, xhat) / count;
            var dxr = new Span<T>(pdx + dxo[r], n);
            // dx = rs · (g − meanG − x̂ · meanGx)
            TensorPrimitives.Multiply(xhat, -meanGx, dxr);
            TensorPrimitives.Add(dxr, g, dxr);
            TensorPrimitives.Subtract(dxr, meanG, dxr);
            TensorPrimitives.Multiply(dxr, rs, dxr);
        });
        if (dWeight is not null)
        {
            RequireActivation<T>(dWeight);
            RequireWritable(dWeight);
            if (dWeight.Count != width || !dWeight.IsContiguous)
            {
                throw new ArgumentException($"tensor '{dWeight.Name}' must be a contiguous [{width}]");
            }
            T* pw = (T*)dWeight.Address;
            const int Block = 64;
            For((width + Block - 1) / Block, rows * Block, bl =>
            {
                int c0 = (int)(bl * Block), len = (int)Math.Min(Block, width - c0);
                var acc = new Span<T>(pw + c0, len);
                var xhat = new T[len];
                var prod = new T[len];
                for (long r = 0; r < rows; r++)
                {
                    T mu = pm is null ? T.Zero : pm[r];
                    TensorPrimitives.Subtract(new ReadOnlySpan<T>(px + xo[r] + c0, len), mu, xhat);
                    TensorPrimitives.Multiply(xhat, pr[r], xhat);
                    TensorPrimitives.Multiply(new ReadOnlySpan<T>(pg + go[r] + c0, len), xhat, prod);
                    TensorPrimitives.Add(acc, prod, acc);
                }
            });
        }
        if (dBias is not null)
        {
            AccumulateColumnSums(dy, dBias);
        }
    }

    private static void RequireStats<T>(Tensor stats, long rows) where T : unmanaged
    {
        RequireActivation<T>(stats);
        RequireWritable(stats);
        if (stats.Count != rows || !stats.IsContiguous)
        {
            throw new ArgumentException($"tensor '{stats.Name}' must be a contiguous [{rows}] "
                + $"(one statistic per row), is {Tensor.ShapeText(stats.Shape)}");
        }
    }

    // ---- rotary --------------------------------------------------------------------------

    /// <inheritdoc />
    public void Rotary(Tensor x, Tensor positions, RotaryOptions options, Tensor y,
        bool inverse = false)
    {
        RequireSameShape(x, y);
        if (x.Rank != 3)
        {
            throw new ArgumentException($"rotary: '{x.Name}' must be [tokens, heads, head_dim], is "
                + Tensor.ShapeText(x.Shape));
        }
        int dh = (int)x.Shape[2], r = options.Dims;
        if (r <= 0 || r % 2 != 0 || r > dh)
        {
            throw new ArgumentException($"rotary: {r} rotated dimensions for heads of {dh} (must be "
                + "even, positive and at most the head size)");
        }
        int[] pos = ReadInts(positions);
        if (pos.Length != x.Shape[0])
        {
            throw new ArgumentException($"rotary: {pos.Length} positions for {x.Shape[0]} tokens");
        }
        if (IsF64(x, y))
        {
            RotaryImpl<double>(x, pos, options, y, inverse);
        }
        else
        {
            RotaryImpl<float>(x, pos, options, y, inverse);
        }
    }

    private static void RotaryImpl<T>(Tensor x, int[] pos, RotaryOptions o, Tensor y, bool inverse)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        RequireActivation<T>(x);
        RequireActivation<T>(y);
        RequireWritable(y);
        long tokens = x.Shape[0], heads = x.Shape[1];
        int dh = (int)x.Shape[2], half = o.Dims / 2;
        // Frequencies as Hugging Face computes them for fp32 models: inv_freq in float32,
        // angle = position · inv_freq in float32, cos/sin of that float (the F64 path keeps
        // everything in double). Matching the fp32 rounding keeps long-position logits within
        // the golden tolerance.
        var cos = new T[tokens * half];
        var sin = new T[tokens * half];
        bool f64 = typeof(T) == typeof(double);
        For(tokens, half * 8L, t =>
        {
            for (int j = 0; j < half; j++)
            {
                double c, s;
                if (f64)
                {
                    double angle = pos[t] * Math.Pow(o.Theta, -2.0 * j / o.Dims);
                    (s, c) = Math.SinCos(angle);
                }
                else
                {
                    float inv = 1f / MathF.Pow((float)o.Theta, 2f * j / o.Dims);
                    float angle = pos[t] * inv;
                    (float sf, float cf) = MathF.SinCos(angle);
                    (s, c) = (sf, cf);
                }
                cos[t * half + j] = T.CreateTruncating(c);
                sin[t * half + j] = T.CreateTruncating(inverse ? -s : s);
            }
        });
        long[] xo = RowOffsets(x), yo = RowOffsets(y);
        T* px = (T*)x.Address, py = (T*)y.Address;
        bool interleaved = o.Style == RotaryStyle.Interleaved;
        For(tokens * heads, dh * 4L, row =>
        {
            long t = row / heads;
            T* xr = px + xo[row], yr = py + yo[row];
            for (int j = 0; j < half; j++)
            {
                int i0 = interleaved ? 2 * j : j, i1 = interleaved ? 2 * j + 1 : j + half;
                T c = cos[t * half + j], s = sin[t * half + j];
                T a = xr[i0], b = xr[i1];
                yr[i0] = a * c - b * s;
                yr[i1] = b * c + a * s;
            }
            if (xr != yr)
            {
                for (int i = o.Dims; i < dh; i++)
                {
                    yr[i] = xr[i];
                }
            }
        });
    }
}
