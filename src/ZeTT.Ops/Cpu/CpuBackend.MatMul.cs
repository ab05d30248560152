using System.Numerics.Tensors;

namespace ZeTT.Ops.Cpu;

public sealed unsafe partial class CpuBackend
{
    /// <summary>A 2-D operand: its rows, columns and row stride (leading dimensions of a
    /// higher-rank tensor flatten when their strides allow).</summary>
    private readonly record struct Matrix(long Rows, long Cols, long Ld);

    private static Matrix AsMatrix(Tensor t)
    {
        RequireHost(t);
        if (t.Rank == 0)
        {
            throw new ArgumentException($"tensor '{t.Name}' is a scalar, not a matrix");
        }
        long cols = t.Shape[^1];
        if (t.Strides[^1] != 1 && cols > 1)
        {
            throw new ArgumentException($"tensor '{t.Name}': the last dimension of a matrix operand "
                + "must be contiguous");
        }
        if (t.Rank == 1)
        {
            return new Matrix(1, cols, cols);
        }
        long rows = 1;
        for (int d = 0; d < t.Rank - 1; d++)
        {
            rows *= t.Shape[d];
        }
        long ld = t.Strides[^2];
        for (int d = 0; d < t.Rank - 2; d++)
        {
            if (t.Shape[d] > 1 && t.Strides[d] != t.Strides[d + 1] * t.Shape[d + 1])
            {
                throw new ArgumentException($"tensor '{t.Name}': leading dimensions "
                    + $"{Tensor.ShapeText(t.Shape)} with strides {Tensor.ShapeText(t.Strides)} do "
                    + "not flatten into rows");
            }
        }
        return new Matrix(rows, cols, Math.Max(ld, 1));
    }

    /// <inheritdoc />
    public void MatMul(Tensor a, bool transA, Tensor b, bool transB, Tensor c, float alpha = 1f,
        float beta = 0f)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        ArgumentNullException.ThrowIfNull(c);
        RequireWritable(c);
        Matrix ma = AsMatrix(a), mb = AsMatrix(b), mc = AsMatrix(c);
        long m = transA ? ma.Cols : ma.Rows, k = transA ? ma.Rows : ma.Cols;
        long kb = transB ? mb.Cols : mb.Rows, n = transB ? mb.Rows : mb.Cols;
        if (kb != k || mc.Rows != m || mc.Cols != n)
        {
            throw new ArgumentException($"matmul: op('{a.Name}') is [{m}, {k}], op('{b.Name}') is "
                + $"[{kb}, {n}] and '{c.Name}' is [{mc.Rows}, {mc.Cols}]");
        }
        if (m == 0 || n == 0)
        {
            return;
        }
        if (c.DType == DType.F64)
        {
            MatMulF64(a, transA, ma, b, transB, mb, c, mc, (int)m, (int)n, (int)k, alpha, beta);
            return;
        }
        if (c.DType != DType.F32)
        {
            throw new ArgumentException($"matmul: output '{c.Name}' is {c.DType}, expected F32");
        }
        if (k == 0)
        {
            Scale(c, beta, c);
            return;
        }
        CpuGemm.Gemm(transA, transB, checked((int)m), checked((int)n), checked((int)k), alpha,
            (void*)a.Address, GemmTypeOf(a), ma.Ld, (void*)b.Address, GemmTypeOf(b), mb.Ld,
            beta, (float*)c.Address, mc.Ld);
    }

    private static GemmType GemmTypeOf(Tensor t) => t.DType switch
    {
        DType.F32 => GemmType.F32,
        DType.BF16 => GemmType.BF16,
        DType.F16 => GemmType.F16,
        _ => throw new ArgumentException($"matmul: '{t.Name}' is {t.DType}; an F32 product takes "
            + "F32, BF16 or F16 operands"),
    };

    /// <summary>The float64 test path: plain dot products, rows in parallel.</summary>
    private static void MatMulF64(Tensor a, bool transA, Matrix ma, Tensor b, bool transB,
        Matrix mb, Tensor c, Matrix mc, int m, int n, int k, double alpha, double beta)
    {
        if (a.DType != DType.F64 || b.DType != DType.F64)
        {
            throw new ArgumentException($"matmul: the F64 path takes F64 operands ('{a.Name}' is "
                + $"{a.DType}, '{b.Name}' is {b.DType})");
        }
        double* pa = (double*)a.Address, pb = (double*)b.Address, pc = (double*)c.Address;
        For(m, (long)n * k, i =>
        {
            var row = new double[k];
            var col = new double[k];
            for (int p = 0; p < k; p++)
            {
                row[p] = transA ? pa[p * ma.Ld + i] : pa[i * ma.Ld + p];
            }
            for (int j = 0; j < n; j++)
            {
                for (int p = 0; p < k; p++)
                {
                    col[p] = transB ? pb[j * mb.Ld + p] : pb[p * mb.Ld + j];
                }
                double* cij = pc + i * mc.Ld + j;
                double prior = beta == 0 ? 0 : beta * *cij;
                *cij = alpha * TensorPrimitives.Dot<double>(row, col) + prior;
            }
        });
    }

    /// <inheritdoc />
    public void Linear(Tensor x, Tensor weight, Tensor? bias, Tensor y, bool weightInOut = false,
        ActivationFunction? activation = null)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(y);
        if (y.DType == DType.F32 && x.DType != DType.F64
            && (bias is null || bias is { DType: DType.F32, IsContiguous: true })
            && (activation is null || VectorActivations.Handles(activation.Value)))
        {
            LinearFused(x, weight, bias, y, weightInOut, activation);
            return;
        }
        float beta = 0f;
        if (bias is not null)
        {
            BroadcastRows(bias, y);
            beta = 1f;
        }
        MatMul(x, false, weight, !weightInOut, y, 1f, beta);
        if (activation is { } f)
        {
            Activation(f, y, y);
        }
    }

    /// <summary>The F32 Linear as one GEMM whose epilogue adds the bias and applies the GELU
    /// while each tile of y is in L1 (what a separate bias pass and activation pass would
    /// compute, bit for bit, with two fewer trips through memory).</summary>
    private static void LinearFused(Tensor x, Tensor weight, Tensor? bias, Tensor y,
        bool weightInOut, ActivationFunction? activation)
    {
        RequireWritable(y);
        Matrix mx = AsMatrix(x), mw = AsMatrix(weight), my = AsMatrix(y);
        long n = weightInOut ? mw.Cols : mw.Rows, k = weightInOut ? mw.Rows : mw.Cols;
        if (mx.Cols != k || my.Rows != mx.Rows || my.Cols != n)
        {
            throw new ArgumentException($"linear: '{x.Name}' is [{mx.Rows}, {mx.Cols}], weight "
                + $"'{weight.Name}' maps {k} → {n} and '{y.Name}' is [{my.Rows}, {my.Cols}]");
        }
        if (bias is not null && bias.Count != n)
        {
            throw new ArgumentException($"linear: bias '{bias.Name}' has {bias.Count} elements, "
                + $"expected {n}");
        }
        CpuGemm.Gemm(false, !weightInOut, checked((int)mx.Rows), checked((int)n),
            checked((int)k), (void*)x.Address, GemmTypeOf(x), mx.Ld, (void*)weight.Address,
            GemmTypeOf(weight), mw.Ld, (float*)y.Address, my.Ld,
            new GemmEpilogue(VectorActivations.Epilogue(activation),
                bias is null ? null : (float*)bias.Address));
    }

    /// <summary>Writes <paramref name="bias"/> into every row of <paramref name="y"/>.</summary>
    private static void BroadcastRows(Tensor bias, Tensor y)
    {
        RequireWritable(y);
        (long rows, long width) = RowShape(y);
        long[] offs = RowOffsets(y);
        if (y.DType == DType.F64)
        {
            double[] b = ReadVector<double>(bias, width);
            double* p = (double*)y.Address;
            For(rows, width, r => b.CopyTo(new Span<double>(p + offs[r], (int)width)));
        }
        else
        {
            RequireActivation<float>(y);
            float[] b = ReadVector<float>(bias, width);
            float* p = (float*)y.Address;
            For(rows, width, r => b.CopyTo(new Span<float>(p + offs[r], (int)width)));
        }
    }

    /// <inheritdoc />
    public void SumRows(Tensor x, Tensor sums)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(sums);
        AccumulateColumnSums(x, sums);
    }

    /// <summary>sums[c] += Σ_rows t[r, c], columns in parallel blocks, rows in order.</summary>
    private static void AccumulateColumnSums(Tensor t, Tensor sums)
    {
        RequireWritable(sums);
        (long rows, long width) = RowShape(t);
        if (sums.Count != width || !sums.IsContiguous)
        {
            throw new ArgumentException($"tensor '{sums.Name}' must be a contiguous [{width}]");
        }
        long[] offs = RowOffsets(t);
        const int Block = 64;
        long blocks = (width + Block - 1) / Block;
        if (t.DType == DType.F64)
        {
            IsF64(t, sums);
            double* p = (double*)t.Address, s = (double*)sums.Address;
            For(blocks, rows * Block, bl =>
            {
                int c0 = (int)(bl * Block), len = (int)Math.Min(Block, width - c0);
                var dst = new Span<double>(s + c0, len);
                for (long r = 0; r < rows; r++)
                {
                    TensorPrimitives.Add(dst, new ReadOnlySpan<double>(p + offs[r] + c0, len), dst);
                }
            });
        }
        else
        {
            RequireActivation<float>(t);
            RequireActivation<float>(sums);
            float* p = (float*)t.Address, s = (float*)sums.Address;
            For(blocks, rows * Block, bl =>
            {
                int c0 = (int)(bl * Block), len = (int)Math.Min(Block, width - c0);
                var dst = new Span<float>(s + c0, len);
                for (long r = 0; r < rows; r++)
                {
                    TensorPrimitives.Add(dst, new ReadOnlySpan<float>(p + offs[r] + c0, len), dst);
                }
            });
        }
    }

    // ---- embedding -----------------------------------------------------------------------

    /// <inheritdoc />
    public void EmbeddingForward(Tensor table, Tensor ids, Tensor output, float scale = 1f)
    {
        ArgumentNullException.ThrowIfNull(table);
        ArgumentNullException.ThrowIfNull(output);
        RequireHost(table);
        if (table.Rank != 2 || !table.IsContiguous)
        {
            throw new ArgumentException($"embedding table '{table.Name}' must be a contiguous "
                + $"[vocab, dim] (is {Tensor.ShapeText(table.Shape)})");
        }
        int[] idx = ReadInts(ids);
        long vocab = table.Shape[0], dim = table.Shape[1];
        RequireShape(output, idx.Length, dim);
        RequireWritable(output);
        CheckIds(idx, vocab, ids.Name);
        long[] offs = RowOffsets(output);
        int size = table.ElementSize;
        if (output.DType == DType.F64)
        {
            double* o = (double*)output.Address;
            For(idx.Length, dim, i =>
            {
                var row = new Span<double>(o + offs[i], (int)dim);
                ReadRow(table.DType, (byte*)table.Address + idx[i] * dim * size, row, table.Name);
                if (scale != 1f)
                {
                    TensorPrimitives.Multiply(row, scale, row);
                }
            });
        }
        else
        {
            RequireActivation<float>(output);
            float* o = (float*)output.Address;
            For(idx.Length, dim, i =>
            {
                var row = new Span<float>(o + offs[i], (int)dim);
                ReadRow(table.DType, (byte*)table.Address + idx[i] * dim * size, row, table.Name);
                if (scale != 1f)
                {
                    TensorPrimitives.Multiply(row, scale, row);
                }
            });
        }
    }

    /// <inheritdoc />
    public void EmbeddingBackward(Tensor dOutput, Tensor ids, Tensor dTable, float scale = 1f)
    {
        ArgumentNullException.ThrowIfNull(dOutput);
        ArgumentNullException.ThrowIfNull(dTable);
        RequireWritable(dTable);
        if (dTable.Rank != 2 || !dTable.IsContiguous)
        {
            throw new ArgumentException($"embedding gradient '{dTable.Name}' must be a contiguous "
                + "[vocab, dim]");
        }
        int[] idx = ReadInts(ids);
        long vocab = dTable.Shape[0], dim = dTable.Shape[1];
        RequireShape(dOutput, idx.Length, dim);
        CheckIds(idx, vocab, ids.Name);
        long[] offs = RowOffsets(dOutput);
        // Sequential over tokens so repeated ids sum in token order (deterministic); each row
        // add is vectorised.
        if (dTable.DType == DType.F64)
        {
            IsF64(dOutput, dTable);
            double* g = (double*)dOutput.Address, t = (double*)dTable.Address;
            for (int i = 0; i < idx.Length; i++)
            {
                var dst = new Span<double>(t + idx[i] * dim, (int)dim);
                TensorPrimitives.MultiplyAdd(new ReadOnlySpan<double>(g + offs[i], (int)dim),
                    scale, dst, dst);
            }
        }
        else
        {
            RequireActivation<float>(dOutput);
            RequireActivation<float>(dTable);
            float* g = (float*)dOutput.Address, t = (float*)dTable.Address;
            for (int i = 0; i < idx.Length; i++)
            {
                var dst = new Span<float>(t + idx[i] * dim, (int)dim);
                TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(g + offs[i], (int)dim),
                    scale, dst, dst);
            }
        }
    }

    private static void CheckIds(int[] ids, long vocab, string name)
    {
        for (int i = 0; i < ids.Length; i++)
        {
            if (ids[i] < 0 || ids[i] >= vocab)
            {
                throw new ArgumentException($"tensor '{name}': id {ids[i]} at position {i} is "
                    + $"outside the vocabulary of {vocab}");
            }
        }
    }
}
