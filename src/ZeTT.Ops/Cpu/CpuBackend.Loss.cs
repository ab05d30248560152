using System.Numerics;
using System.Numerics.Tensors;

namespace ZeTT.Ops.Cpu;

public sealed unsafe partial class CpuBackend
{
    /// <summary>Logit elements per vocabulary chunk ([tokens, chunk] at most this many, 16 MiB
    /// of fp32): the full [tokens, vocab] matrix never exists.</summary>
    private const long DefaultChunkElements = 1 << 22;

    /// <summary>Logit elements per vocabulary chunk; tests lower it to cross chunk borders.
    /// </summary>
    internal long LogitChunkElements { get; init; } = DefaultChunkElements;

    private long VocabChunk(long tokens, long vocab) =>
        Math.Clamp(LogitChunkElements / Math.Max(tokens, 1), 1, Math.Max(vocab, 1));

    private static (long N, long D, long V) CheckHead(Tensor hidden, Tensor weight, Tensor targets)
    {
        ArgumentNullException.ThrowIfNull(hidden);
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(targets);
        if (hidden.Rank != 2 || weight.Rank != 2 || weight.Shape[1] != hidden.Shape[1])
        {
            throw new ArgumentException($"lm head: hidden {Tensor.ShapeText(hidden.Shape)} and "
                + $"weight '{weight.Name}' {Tensor.ShapeText(weight.Shape)} must be [N, D] and "
                + "[V, D]");
        }
        if (targets.Count != hidden.Shape[0])
        {
            throw new ArgumentException($"lm head: {targets.Count} targets for "
                + $"{hidden.Shape[0]} rows");
        }
        return (hidden.Shape[0], hidden.Shape[1], weight.Shape[0]);
    }

    /// <inheritdoc />
    public void LmHeadCrossEntropy(Tensor hidden, Tensor weight, Tensor? bias, Tensor targets,
        Tensor losses, Tensor logSumExp)
    {
        (long n, _, long vocab) = CheckHead(hidden, weight, targets);
        int[] t = ReadInts(targets);
        RequireShape(losses, n);
        RequireShape(logSumExp, n);
        if (IsF64(hidden, losses, logSumExp))
        {
            HeadForward<double>(hidden, weight, bias, t, losses, logSumExp, n, vocab, DType.F64);
        }
        else
        {
            HeadForward<float>(hidden, weight, bias, t, losses, logSumExp, n, vocab, DType.F32);
        }
    }

    private void HeadForward<T>(Tensor hidden, Tensor weight, Tensor? bias, int[] targets,
        Tensor losses, Tensor lse, long n, long vocab, DType dtype)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        RequireActivation<T>(losses);
        RequireActivation<T>(lse);
        RequireWritable(losses);
        RequireWritable(lse);
        var max = new T[n];
        var sum = new T[n];
        var target = new T[n];
        Array.Fill(max, T.NegativeInfinity);
        long chunk = VocabChunk(n, vocab);
        using Tensor logits = Empty(dtype, [n, chunk], "logits chunk");
        T* pl = (T*)logits.Address;
        for (long v0 = 0; v0 < vocab; v0 += chunk)
        {
            long vc = Math.Min(chunk, vocab - v0);
            Tensor view = vc == chunk ? logits : logits.View(-1).Slice(0, 0, n * vc).View(n, vc);
            Linear(hidden, weight.Slice(0, v0, vc), bias?.Slice(0, v0, vc), view);
            For(n, vc, i =>
            {
                var row = new Span<T>(pl + i * vc, (int)vc);
                if (targets[i] >= v0 && targets[i] < v0 + vc)
                {
                    target[i] = row[(int)(targets[i] - v0)];
                }
                T m = T.Max(max[i], TensorPrimitives.Max<T>(row));
                // In place: the chunk's logits are not read again.
                TensorPrimitives.Subtract<T>(row, m, row);
                TensorPrimitives.Exp<T>(row, row);
                sum[i] = sum[i] * T.Exp(max[i] - m) + TensorPrimitives.Sum<T>(row);
                max[i] = m;
            });
        }
        T* po = (T*)losses.Address, ps = (T*)lse.Address;
        for (long i = 0; i < n; i++)
        {
            T l = max[i] + T.Log(sum[i]);
            ps[i] = l;
            if (targets[i] >= vocab)
            {
                throw new ArgumentException($"lm head: target {targets[i]} at row {i} is outside "
                    + $"the vocabulary of {vocab}");
            }
            po[i] = targets[i] < 0 ? T.Zero : l - target[i];
        }
    }

    /// <inheritdoc />
    public void LmHeadCrossEntropyBackward(Tensor hidden, Tensor weight, Tensor? bias,
        Tensor targets, Tensor logSumExp, Tensor dLosses, Tensor dHidden, Tensor? dWeight,
        Tensor? dBias)
    {
        (long n, _, long vocab) = CheckHead(hidden, weight, targets);
        int[] t = ReadInts(targets);
        RequireShape(logSumExp, n);
        RequireShape(dLosses, n);
        RequireSameShape(hidden, dHidden);
        if (IsF64(hidden, logSumExp, dLosses, dHidden))
        {
            HeadBackward<double>(hidden, weight, bias, t, logSumExp, dLosses, dHidden, dWeight,
                dBias, n, vocab, DType.F64);
        }
        else
        {
            HeadBackward<float>(hidden, weight, bias, t, logSumExp, dLosses, dHidden, dWeight,
                dBias, n, vocab, DType.F32);
        }
    }

    private void HeadBackward<T>(Tensor hidden, Tensor weight, Tensor? bias, int[] targets,
        Tensor lse, Tensor dLosses, Tensor dHidden, Tensor? dWeight, Tensor? dBias, long n,
        long vocab, DType dtype) where T : unmanaged, IFloatingPointIeee754<T>
    {
        RequireActivation<T>(lse);
        RequireActivation<T>(dLosses);
        T[] l = ReadVector<T>(lse, n);
        T[] g = ReadVector<T>(dLosses, n);
        long chunk = VocabChunk(n, vocab);
        using Tensor logits = Empty(dtype, [n, chunk], "logits chunk");
        T* pl = (T*)logits.Address;
        for (long v0 = 0; v0 < vocab; v0 += chunk)
        {
            long vc = Math.Min(chunk, vocab - v0);
            Tensor view = vc == chunk ? logits : logits.View(-1).Slice(0, 0, n * vc).View(n, vc);
            Tensor w = weight.Slice(0, v0, vc);
            Linear(hidden, w, bias?.Slice(0, v0, vc), view);
            For(n, vc, i =>
            {
                var row = new Span<T>(pl + i * vc, (int)vc);
                if (targets[i] < 0)
                {
                    row.Clear();
                    return;
                }
                // dlogits = dLoss · (softmax − onehot(target))
                TensorPrimitives.Subtract(row, l[i], row);
                TensorPrimitives.Exp<T>(row, row);
                if (targets[i] >= v0 && targets[i] < v0 + vc)
                {
                    row[(int)(targets[i] - v0)] -= T.One;
                }
                TensorPrimitives.Multiply(row, g[i], row);
            });
            MatMul(view, false, w, false, dHidden, 1f, v0 == 0 ? 0f : 1f);
            if (dWeight is not null)
            {
                MatMul(view, true, hidden, false, dWeight.Slice(0, v0, vc), 1f, 1f);
            }
            if (dBias is not null)
            {
                AccumulateColumnSums(view, dBias.Slice(0, v0, vc));
            }
        }
        if (vocab == 0)
        {
            Fill(dHidden, 0);
        }
    }
}
