using System.Numerics;
using System.Numerics.Tensors;

namespace ZeTT.Ops.Cpu;

public sealed unsafe partial class CpuBackend
{
    /// <summary>Keys scored at once per query: the online softmax rescales once per block.
    /// </summary>
    private const int KeyBlock = 128;

    private readonly record struct AttentionShape(int B, int Tq, int Tk, int Hq, int Hkv, int Dh);

    private static AttentionShape CheckAttention(Tensor q, Tensor k, Tensor v, Tensor o,
        Tensor lse)
    {
        foreach (Tensor t in (Tensor[])[q, k, v, o])
        {
            ArgumentNullException.ThrowIfNull(t);
            if (t.Rank != 4)
            {
                throw new ArgumentException($"attention: '{t.Name}' must be [batch, tokens, heads, "
                    + $"head_dim], is {Tensor.ShapeText(t.Shape)}");
            }
            if (t.Strides[3] != 1 && t.Shape[3] > 1)
            {
                throw new ArgumentException($"attention: '{t.Name}' needs a contiguous head_dim");
            }
        }
        var s = new AttentionShape((int)q.Shape[0], (int)q.Shape[1], (int)k.Shape[1],
            (int)q.Shape[2], (int)k.Shape[2], (int)q.Shape[3]);
        RequireSameShape(k, v);
        RequireSameShape(q, o);
        if (k.Shape[0] != s.B || k.Shape[3] != s.Dh)
        {
            throw new ArgumentException($"attention: keys {Tensor.ShapeText(k.Shape)} do not match "
                + $"queries {Tensor.ShapeText(q.Shape)}");
        }
        if (s.Hkv == 0 || s.Hq % s.Hkv != 0)
        {
            throw new ArgumentException($"attention: {s.Hq} query heads are not a multiple of "
                + $"{s.Hkv} key heads");
        }
        if (s.Tq > s.Tk)
        {
            throw new ArgumentException($"attention: {s.Tq} queries but only {s.Tk} keys (queries "
                + "are the last positions of the keys)");
        }
        RequireShape(lse, s.B, s.Hq, s.Tq);
        if (!lse.IsContiguous)
        {
            throw new ArgumentException($"attention: '{lse.Name}' must be contiguous");
        }
        return s;
    }

    /// <summary>Visible keys [lo, hi) of query <paramref name="i"/> of sequence b.</summary>
    private static (int Lo, int Hi) KeyRange(AttentionOptions o, AttentionShape s, int[]? lengths,
        int b, int i)
    {
        int hi = lengths is null ? s.Tk : Math.Clamp(lengths[b], 0, s.Tk);
        int lo = 0;
        if (o.Causal)
        {
            int pos = s.Tk - s.Tq + i;
            hi = Math.Min(hi, pos + 1);
            if (o.Window > 0)
            {
                lo = Math.Max(0, pos - o.Window + 1);
            }
        }
        return (lo, Math.Max(lo, hi));
    }

    /// <inheritdoc />
    public void AttentionForward(Tensor q, Tensor k, Tensor v, AttentionOptions options,
        Tensor output, Tensor logSumExp)
    {
        AttentionShape s = CheckAttention(q, k, v, output, logSumExp);
        int[]? lengths = options.KeyLengths is null ? null : ReadInts(options.KeyLengths);
        if (lengths is not null && lengths.Length != s.B)
        {
            throw new ArgumentException($"attention: {lengths.Length} key lengths for {s.B} "
                + "sequences");
        }
        bool f64 = IsF64(q, k, v, output, logSumExp);
        if (s.Dh < SmallHeadDim)
        {
            if (f64)
            {
                AttentionForwardSmallHeads<double>(q, k, v, options, output, logSumExp, s,
                    lengths);
            }
            else
            {
                AttentionForwardSmallHeads<float>(q, k, v, options, output, logSumExp, s,
                    lengths);
            }
        }
        else if (f64)
        {
            AttentionForwardImpl<double>(q, k, v, options, output, logSumExp, s, lengths);
        }
        else
        {
            AttentionForwardImpl<float>(q, k, v, options, output, logSumExp, s, lengths);
        }
    }

    /// <summary>Head widths below which the forward goes through
    /// <see cref="AttentionForwardSmallHeads"/>.</summary>
    private const int SmallHeadDim = 32;

    /// <summary>Queries of one head that share a transposed key block.</summary>
    private const int QueryBlock = 16;

    /// <summary>
    /// The forward for narrow heads (stories260K: 8 dimensions). Scoring one key per
    /// TensorPrimitives call costs more in call overhead than the 8 multiply-adds it does;
    /// here a block of keys and values is transposed once per block of
    /// <see cref="QueryBlock"/> queries into [head_dim, keys], so that a query's scores are
    /// head_dim multiply-adds over the whole key block and its output head_dim dot products
    /// over it. Same online softmax, one rescale per key block.
    /// </summary>
    private static void AttentionForwardSmallHeads<T>(Tensor q, Tensor k, Tensor v,
        AttentionOptions o, Tensor output, Tensor lse, AttentionShape s, int[]? lengths)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        RequireWritable(output);
        RequireWritable(lse);
        T* pq = (T*)q.Address, pk = (T*)k.Address, pv = (T*)v.Address, po = (T*)output.Address;
        T* pl = (T*)lse.Address;
        int group = s.Hq / s.Hkv, dh = s.Dh;
        int qBlocks = (s.Tq + QueryBlock - 1) / QueryBlock;
        T scale = T.CreateTruncating(o.Scale);
        // The work of an item is its queries' keys (one query per head when decoding: a
        // trace of stories260K generation spent 70 % of its time in Parallel.For's wait when
        // this counted whole query blocks).
        For((long)s.B * s.Hq * qBlocks, 4L * Math.Min(QueryBlock, s.Tq) * s.Tk * dh, item =>
        {
            int qb = (int)(item % qBlocks), h = (int)(item / qBlocks % s.Hq);
            int b = (int)(item / qBlocks / s.Hq), kh = h / group;
            int i0 = qb * QueryBlock, qn = Math.Min(QueryBlock, s.Tq - i0);
            Span<T> m = stackalloc T[QueryBlock];
            Span<T> l = stackalloc T[QueryBlock];
            Span<int> lo = stackalloc int[QueryBlock];
            Span<int> hi = stackalloc int[QueryBlock];
            int first = int.MaxValue, last = 0;
            for (int r = 0; r < qn; r++)
            {
                (lo[r], hi[r]) = KeyRange(o, s, lengths, b, i0 + r);
                m[r] = T.NegativeInfinity;
                l[r] = T.Zero;
                OutRow(po, output, b, i0 + r, h, dh).Clear();
                if (hi[r] > lo[r])
                {
                    first = Math.Min(first, lo[r]);
                    last = Math.Max(last, hi[r]);
                }
            }
            // At most 31 × 128 elements each (31 KB in float64).
            Span<T> kt = stackalloc T[dh * KeyBlock];
            Span<T> vt = stackalloc T[dh * KeyBlock];
            Span<T> scores = stackalloc T[KeyBlock];
            for (int j0 = first; j0 < last; j0 += KeyBlock)
            {
                int n = Math.Min(KeyBlock, last - j0);
                for (int j = 0; j < n; j++)
                {
                    T* kj = pk + b * k.Strides[0] + (j0 + j) * k.Strides[1] + kh * k.Strides[2];
                    T* vj = pv + b * v.Strides[0] + (j0 + j) * v.Strides[1] + kh * v.Strides[2];
                    for (int d = 0; d < dh; d++)
                    {
                        kt[d * KeyBlock + j] = kj[d];
                        vt[d * KeyBlock + j] = vj[d];
                    }
                }
                for (int r = 0; r < qn; r++)
                {
                    int a = Math.Max(lo[r], j0), e = Math.Min(hi[r], j0 + n);
                    if (e <= a)
                    {
                        continue;
                    }
                    int len = e - a, off = a - j0;
                    Span<T> sc = scores[..len];
                    T* qi = pq + b * q.Strides[0] + (i0 + r) * q.Strides[1] + h * q.Strides[2];
                    TensorPrimitives.Multiply(kt.Slice(off, len), qi[0] * scale, sc);
                    for (int d = 1; d < dh; d++)
                    {
                        TensorPrimitives.MultiplyAdd(kt.Slice(d * KeyBlock + off, len),
                            qi[d] * scale, sc, sc);
                    }
                    T mNew = T.Max(m[r], TensorPrimitives.Max<T>(sc));
                    T correction = T.Exp(m[r] - mNew);
                    TensorPrimitives.Subtract(sc, mNew, sc);
                    TensorPrimitives.Exp<T>(sc, sc);
                    l[r] = l[r] * correction + TensorPrimitives.Sum<T>(sc);
                    m[r] = mNew;
                    Span<T> oi = OutRow(po, output, b, i0 + r, h, dh);
                    for (int d = 0; d < dh; d++)
                    {
                        oi[d] = oi[d] * correction + TensorPrimitives.Dot<T>(sc,
                            vt.Slice(d * KeyBlock + off, len));
                    }
                }
            }
            for (int r = 0; r < qn; r++)
            {
                long at = ((long)b * s.Hq + h) * s.Tq + i0 + r;
                if (hi[r] > lo[r])
                {
                    Span<T> oi = OutRow(po, output, b, i0 + r, h, dh);
                    TensorPrimitives.Multiply(oi, T.One / l[r], oi);
                    pl[at] = m[r] + T.Log(l[r]);
                }
                else
                {
                    pl[at] = T.NegativeInfinity;
                }
            }
        });
    }

    private static Span<T> OutRow<T>(T* po, Tensor output, int b, int i, int h, int dh)
        where T : unmanaged =>
        new(po + b * output.Strides[0] + i * output.Strides[1] + h * output.Strides[2], dh);

    private static void AttentionForwardImpl<T>(Tensor q, Tensor k, Tensor v, AttentionOptions o,
        Tensor output, Tensor lse, AttentionShape s, int[]? lengths)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        RequireWritable(output);
        RequireWritable(lse);
        T* pq = (T*)q.Address, pk = (T*)k.Address, pv = (T*)v.Address, po = (T*)output.Address;
        T* pl = (T*)lse.Address;
        int group = s.Hq / s.Hkv, dh = s.Dh;
        T scale = T.CreateTruncating(o.Scale);
        For((long)s.B * s.Hq * s.Tq, (long)s.Tk * dh, item =>
        {
            int i = (int)(item % s.Tq), h = (int)(item / s.Tq % s.Hq), b = (int)(item / s.Tq / s.Hq);
            int kh = h / group;
            (int lo, int hi) = KeyRange(o, s, lengths, b, i);
            var qi = new ReadOnlySpan<T>(pq + b * q.Strides[0] + i * q.Strides[1] + h * q.Strides[2],
                dh);
            var oi = new Span<T>(po + b * output.Strides[0] + i * output.Strides[1]
                + h * output.Strides[2], dh);
            oi.Clear();
            T m = T.NegativeInfinity, l = T.Zero;
            Span<T> scores = stackalloc T[KeyBlock];
            for (int j0 = lo; j0 < hi; j0 += KeyBlock)
            {
                int n = Math.Min(KeyBlock, hi - j0);
                Span<T> sc = scores[..n];
                for (int j = 0; j < n; j++)
                {
                    T* kj = pk + b * k.Strides[0] + (j0 + j) * k.Strides[1] + kh * k.Strides[2];
                    sc[j] = TensorPrimitives.Dot(qi, new ReadOnlySpan<T>(kj, dh)) * scale;
                }
                T mNew = T.Max(m, TensorPrimitives.Max<T>(sc));
                T correction = T.Exp(m - mNew);
                TensorPrimitives.Multiply(oi, correction, oi);
                l *= correction;
                TensorPrimitives.Subtract(sc, mNew, sc);
                TensorPrimitives.Exp<T>(sc, sc);
                l += TensorPrimitives.Sum<T>(sc);
                for (int j = 0; j < n; j++)
                {
                    T* vj = pv + b * v.Strides[0] + (j0 + j) * v.Strides[1] + kh * v.Strides[2];
                    TensorPrimitives.MultiplyAdd(new ReadOnlySpan<T>(vj, dh), sc[j], oi, oi);
                }
                m = mNew;
            }
            if (hi > lo)
            {
                TensorPrimitives.Multiply(oi, T.One / l, oi);
                pl[item] = m + T.Log(l);
            }
            else
            {
                pl[item] = T.NegativeInfinity;
            }
        });
    }

    /// <inheritdoc />
    public void AttentionBackward(Tensor dOutput, Tensor q, Tensor k, Tensor v, Tensor output,
        Tensor logSumExp, AttentionOptions options, Tensor dq, Tensor dk, Tensor dv)
    {
        AttentionShape s = CheckAttention(q, k, v, output, logSumExp);
        RequireSameShape(q, dOutput);
        RequireSameShape(q, dq);
        RequireSameShape(k, dk);
        RequireSameShape(v, dv);
        int[]? lengths = options.KeyLengths is null ? null : ReadInts(options.KeyLengths);
        if (IsF64(dOutput, q, k, v, output, logSumExp, dq, dk, dv))
        {
            AttentionBackwardImpl<double>(dOutput, q, k, v, output, logSumExp, options, dq, dk, dv,
                s, lengths);
        }
        else
        {
            AttentionBackwardImpl<float>(dOutput, q, k, v, output, logSumExp, options, dq, dk, dv,
                s, lengths);
        }
    }

    /// <summary>Per (sequence, key head): for each query of the group, D = dO·O, then for every
    /// visible key p = exp(s − lse), dV += p·dO, dS = p·(dO·v − D), dQ += scale·dS·k,
    /// dK += scale·dS·q. One task owns a key head's dK/dV, so sums run in a fixed order.
    /// </summary>
    private static void AttentionBackwardImpl<T>(Tensor dO, Tensor q, Tensor k, Tensor v,
        Tensor output, Tensor lse, AttentionOptions o, Tensor dq, Tensor dk, Tensor dv,
        AttentionShape s, int[]? lengths) where T : unmanaged, IFloatingPointIeee754<T>
    {
        RequireWritable(dq);
        RequireWritable(dk);
        RequireWritable(dv);
        T* pq = (T*)q.Address, pk = (T*)k.Address, pv = (T*)v.Address, po = (T*)output.Address;
        T* pdo = (T*)dO.Address, pdq = (T*)dq.Address, pdk = (T*)dk.Address, pdv = (T*)dv.Address;
        T* pl = (T*)lse.Address;
        int group = s.Hq / s.Hkv, dh = s.Dh;
        T scale = T.CreateTruncating(o.Scale);
        For((long)s.B * s.Hkv, (long)s.Tq * s.Tk * dh * group, item =>
        {
            int kh = (int)(item % s.Hkv), b = (int)(item / s.Hkv);
            for (int j = 0; j < s.Tk; j++)
            {
                new Span<T>(pdk + b * dk.Strides[0] + j * dk.Strides[1] + kh * dk.Strides[2], dh)
                    .Clear();
                new Span<T>(pdv + b * dv.Strides[0] + j * dv.Strides[1] + kh * dv.Strides[2], dh)
                    .Clear();
            }
            for (int h = kh * group; h < (kh + 1) * group; h++)
            {
                for (int i = 0; i < s.Tq; i++)
                {
                    var qi = new ReadOnlySpan<T>(pq + b * q.Strides[0] + i * q.Strides[1]
                        + h * q.Strides[2], dh);
                    var oi = new ReadOnlySpan<T>(po + b * output.Strides[0] + i * output.Strides[1]
                        + h * output.Strides[2], dh);
                    var gi = new ReadOnlySpan<T>(pdo + b * dO.Strides[0] + i * dO.Strides[1]
                        + h * dO.Strides[2], dh);
                    var dqi = new Span<T>(pdq + b * dq.Strides[0] + i * dq.Strides[1]
                        + h * dq.Strides[2], dh);
                    dqi.Clear();
                    (int lo, int hi) = KeyRange(o, s, lengths, b, i);
                    if (hi <= lo)
                    {
                        continue;
                    }
                    T d = TensorPrimitives.Dot(gi, oi);
                    T l = pl[((long)b * s.Hq + h) * s.Tq + i];
                    for (int j = lo; j < hi; j++)
                    {
                        var kj = new ReadOnlySpan<T>(pk + b * k.Strides[0] + j * k.Strides[1]
                            + kh * k.Strides[2], dh);
                        var vj = new ReadOnlySpan<T>(pv + b * v.Strides[0] + j * v.Strides[1]
                            + kh * v.Strides[2], dh);
                        T p = T.Exp(TensorPrimitives.Dot(qi, kj) * scale - l);
                        var dvj = new Span<T>(pdv + b * dv.Strides[0] + j * dv.Strides[1]
                            + kh * dv.Strides[2], dh);
                        TensorPrimitives.MultiplyAdd(gi, p, dvj, dvj);
                        T ds = p * (TensorPrimitives.Dot(gi, vj) - d) * scale;
                        TensorPrimitives.MultiplyAdd(kj, ds, dqi, dqi);
                        var dkj = new Span<T>(pdk + b * dk.Strides[0] + j * dk.Strides[1]
                            + kh * dk.Strides[2], dh);
                        TensorPrimitives.MultiplyAdd(qi, ds, dkj, dkj);
                    }
                }
            }
        });
    }
}
