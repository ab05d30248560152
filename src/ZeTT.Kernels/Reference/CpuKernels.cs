using ZeTT.Kernels.Launch;

namespace ZeTT.Kernels.Reference;

/// <summary>
/// The CPU twin of every kernel in kernels/*.cu and of the row-major GEMM: the same arguments
/// (host arrays instead of device views), written plainly, computing in double where a kernel
/// accumulates. GPU parity tests compare each kernel with its twin; a <c>bf16</c> output of a
/// kernel corresponds to the twin's result rounded with <see cref="RoundBFloat16"/>.
/// </summary>
public static class CpuKernels
{
    /// <summary>Rounds to the nearest bf16 (ties to even) and widens back, like a kernel that
    /// stores bf16.</summary>
    public static float RoundBFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if ((bits & 0x7FFF_FFFFu) > 0x7F80_0000u)
        {
            return value;
        }
        bits += 0x7FFFu + ((bits >> 16) & 1u);
        return BitConverter.UInt32BitsToSingle(bits & 0xFFFF_0000u);
    }

    private static float Store(float v, KernelDType type) =>
        type == KernelDType.BF16 ? RoundBFloat16(v) : v;

    /// <summary>Row-major <c>C = alpha·A·op(B) + beta·C</c> (see <see cref="Blas.Gemm"/>),
    /// accumulated in double.</summary>
    public static void Gemm(int m, int n, int k, ReadOnlySpan<float> a, int lda,
        ReadOnlySpan<float> b, int ldb, bool transB, Span<float> c, int ldc, float alpha = 1f,
        float beta = 0f)
    {
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int p = 0; p < k; p++)
                {
                    s += (double)a[i * lda + p] * (transB ? b[j * ldb + p] : b[p * ldb + j]);
                }
                c[i * ldc + j] = (float)(alpha * s + (beta == 0 ? 0 : beta * c[i * ldc + j]));
            }
        }
    }

    /// <summary>Twin of <c>zett_surface_embed</c>. <paramref name="source"/> holds the values
    /// the device holds (already bf16-rounded for a bf16 source).</summary>
    public static void SurfaceEmbed(ReadOnlySpan<int> ids, ReadOnlySpan<float> source,
        int width, int originalVocab, ReadOnlySpan<float> fallback, ReadOnlySpan<float> inW,
        ReadOnlySpan<float> inB, Span<float> output, KernelDType outType = KernelDType.F32)
    {
        for (int t = 0; t < ids.Length; t++)
        {
            int id = ids[t];
            for (int c = 0; c < width; c++)
            {
                float x;
                if (id >= originalVocab)
                {
                    x = fallback[(id - originalVocab) * width + c];
                }
                else
                {
                    x = source[Math.Min(id, originalVocab - 1) * width + c];
                    if (!inW.IsEmpty)
                    {
                        x = inW[c] * x + inB[c];
                    }
                }
                output[t * width + c] = Store(x, outType);
            }
        }
    }

    /// <summary>LayerNorm of one row (two-pass statistics in double).</summary>
    public static void LayerNorm(ReadOnlySpan<float> row, ReadOnlySpan<float> w,
        ReadOnlySpan<float> b, float eps, Span<float> output)
    {
        double mean = 0;
        foreach (float v in row)
        {
            mean += v;
        }
        mean /= row.Length;
        double var = 0;
        foreach (float v in row)
        {
            var += (v - mean) * (v - mean);
        }
        var /= row.Length;
        double rstd = 1 / Math.Sqrt(var + eps);
        for (int c = 0; c < row.Length; c++)
        {
            output[c] = (float)((row[c] - mean) * rstd * w[c] + b[c]);
        }
    }

    /// <summary>Twin of <c>zett_roberta_embed_ln</c>: token t (of <c>src.Length</c>) gets
    /// LN((x[src[t]] + type0) + positions[posIndex[t]]), or LN(lang) when src[t] &lt; 0.
    /// Output [tokens, hidden].</summary>
    public static void RobertaEmbedLayerNorm(ReadOnlySpan<float> x, ReadOnlySpan<int> src,
        ReadOnlySpan<int> posIndex, int hidden, ReadOnlySpan<float> positions,
        ReadOnlySpan<float> type0, ReadOnlySpan<float> lang, ReadOnlySpan<float> lnW,
        ReadOnlySpan<float> lnB, float eps, Span<float> output)
    {
        var row = new float[hidden];
        for (int t = 0; t < src.Length; t++)
        {
            int s = src[t], p = posIndex[t];
            for (int c = 0; c < hidden; c++)
            {
                row[c] = s >= 0
                    ? (x[s * hidden + c] + type0[c]) + positions[p * hidden + c]
                    : lang[c];
            }
            LayerNorm(row, lnW, lnB, eps, output.Slice(t * hidden, hidden));
        }
    }

    /// <summary>GELU with erf (PyTorch's default).</summary>
    public static float GeluErf(float x) => (float)(0.5 * x * (1 + CpuMath.Erf(x / Math.Sqrt(2))));

    /// <summary>GELU, tanh approximation.</summary>
    public static float GeluTanh(float x) =>
        (float)(0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x))));

    /// <summary>Applies <paramref name="activation"/>.</summary>
    public static float Activate(float x, Activation activation) => activation switch
    {
        Activation.GeluTanh => GeluTanh(x),
        Activation.GeluErf => GeluErf(x),
        Activation.Silu => (float)(x / (1 + Math.Exp(-x))),
        Activation.Relu => MathF.Max(x, 0),
        _ => x,
    };

    /// <summary>Twin of <c>zett_bias_act</c>.</summary>
    public static void BiasActivation(ReadOnlySpan<float> x, ReadOnlySpan<float> bias, int rows,
        int cols, Activation activation, Span<float> output, KernelDType outType = KernelDType.F32)
    {
        for (int i = 0; i < rows * cols; i++)
        {
            float v = x[i] + (bias.IsEmpty ? 0f : bias[i % cols]);
            output[i] = Store(Activate(v, activation), outType);
        }
    }

    /// <summary>Twin of <c>zett_bias_act_residual_ln</c>.</summary>
    public static void BiasActivationResidualLayerNorm(ReadOnlySpan<float> x,
        ReadOnlySpan<float> bias, ReadOnlySpan<float> residual, ReadOnlySpan<float> lnW,
        ReadOnlySpan<float> lnB, float eps, Activation activation, int rows, int cols,
        Span<float> output)
    {
        var row = new float[cols];
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < cols; c++)
            {
                float v = x[r * cols + c] + (bias.IsEmpty ? 0f : bias[c]);
                row[c] = Activate(v, activation) + residual[r * cols + c];
            }
            LayerNorm(row, lnW, lnB, eps, output.Slice(r * cols, cols));
        }
    }

    /// <summary>Twin of <c>zett_attention</c>: per packed row r (tokens rowStart[r] ..
    /// rowStart[r+1]) and head, softmax((q·k)·scale + mask)·v over the row's own tokens; key t
    /// is attended iff src[t] &lt; 0 (language position) or ids[t] != padId, masked keys
    /// getting -float.MaxValue added (an all-masked row attends uniformly).</summary>
    public static void Attention(ReadOnlySpan<float> qkv, ReadOnlySpan<float> qkvBias,
        ReadOnlySpan<int> ids, ReadOnlySpan<int> src, ReadOnlySpan<int> rowStart, int heads,
        int headDim, int padId, Span<float> output, KernelDType outType = KernelDType.F32)
    {
        int hidden = heads * headDim, rows = rowStart.Length - 1;
        float scale = 1f / MathF.Sqrt(headDim);
        for (int r = 0; r < rows; r++)
        {
            int t0 = rowStart[r], seq = rowStart[r + 1] - t0;
            var scores = new double[seq];
            for (int h = 0; h < heads; h++)
            {
                for (int i = 0; i < seq; i++)
                {
                    double max = double.NegativeInfinity;
                    for (int j = 0; j < seq; j++)
                    {
                        double dot = 0;
                        for (int d = 0; d < headDim; d++)
                        {
                            dot += (double)QkvAt(qkv, qkvBias, t0 + i, hidden, h, headDim, 0, d)
                                * QkvAt(qkv, qkvBias, t0 + j, hidden, h, headDim, 1, d);
                        }
                        bool attended = src[t0 + j] < 0 || ids[t0 + j] != padId;
                        // In float, as the kernel: -MaxValue absorbs any moderate score.
                        float score = (float)dot * scale + (attended ? 0f : -float.MaxValue);
                        scores[j] = score;
                        max = Math.Max(max, score);
                    }
                    double sum = 0;
                    for (int j = 0; j < seq; j++)
                    {
                        scores[j] = Math.Exp(scores[j] - max);
                        sum += scores[j];
                    }
                    for (int d = 0; d < headDim; d++)
                    {
                        double o = 0;
                        for (int j = 0; j < seq; j++)
                        {
                            o += scores[j] / sum
                                * QkvAt(qkv, qkvBias, t0 + j, hidden, h, headDim, 2, d);
                        }
                        output[(t0 + i) * hidden + h * headDim + d] = Store((float)o, outType);
                    }
                }
            }
        }
    }

    /// <summary>The unpacked layout of <paramref name="rows"/> rows of <paramref name="seq"/>
    /// tokens, the first <paramref name="len"/> of each from a surface form [rows, len] and the
    /// rest language positions: (ids [rows·seq], src [rows·seq], posIndex [rows·seq],
    /// rowStart [rows + 1]) for the packed twins and kernels.</summary>
    public static (int[] Ids, int[] Src, int[] PosIndex, int[] RowStart) FullLayout(
        ReadOnlySpan<int> surfaceForms, int rows, int seq, int len, int padId)
    {
        var ids = new int[rows * seq];
        var src = new int[rows * seq];
        var pos = new int[rows * seq];
        var rowStart = new int[rows + 1];
        for (int r = 0; r < rows; r++)
        {
            rowStart[r] = r * seq;
            for (int p = 0; p < seq; p++)
            {
                int t = r * seq + p;
                ids[t] = p < len ? surfaceForms[r * len + p] : padId;
                src[t] = p < len ? r * len + p : -1;
                pos[t] = p;
            }
        }
        rowStart[rows] = rows * seq;
        return (ids, src, pos, rowStart);
    }

    private static float QkvAt(ReadOnlySpan<float> qkv, ReadOnlySpan<float> bias, int t,
        int hidden, int h, int headDim, int part, int d)
    {
        int col = part * hidden + h * headDim + d;
        return qkv[t * 3 * hidden + col] + (bias.IsEmpty ? 0f : bias[col]);
    }

    /// <summary>Twin of <c>zett_pool_first</c>: output[r] = h[rowStart[r]].</summary>
    public static void PoolFirst(ReadOnlySpan<float> h, ReadOnlySpan<int> rowStart, int hidden,
        Span<float> output)
    {
        for (int r = 0; r < rowStart.Length - 1; r++)
        {
            h.Slice(rowStart[r] * hidden, hidden).CopyTo(output.Slice(r * hidden, hidden));
        }
    }

    /// <summary>Twin of <c>zett_bias_rescale</c>.</summary>
    public static void BiasRescale(ReadOnlySpan<float> x, int xCols, int offset,
        ReadOnlySpan<float> bias, ReadOnlySpan<float> w, ReadOnlySpan<float> b, int rows,
        int cols, Span<float> output)
    {
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < cols; c++)
            {
                float t = x[r * xCols + offset + c] + (bias.IsEmpty ? 0f : bias[offset + c]);
                output[r * cols + c] = w.IsEmpty ? t : w[c] * t + b[c];
            }
        }
    }
}

/// <summary>Math the BCL lacks.</summary>
public static class CpuMath
{
    /// <summary>The error function, to about 1e-14 absolute: Maclaurin series for |x| &lt; 3,
    /// the erfc continued fraction beyond.</summary>
    public static double Erf(double x)
    {
        if (double.IsNaN(x))
        {
            return x;
        }
        double ax = Math.Abs(x);
        if (ax < 3)
        {
            double term = ax, sum = ax, x2 = ax * ax;
            for (int n = 1; n < 100 && Math.Abs(term) > 1e-17 * Math.Abs(sum); n++)
            {
                term *= -x2 / n;
                sum += term / (2 * n + 1);
            }
            return Math.CopySign(2 / Math.Sqrt(Math.PI) * sum, x);
        }
        if (ax > 6)
        {
            return Math.CopySign(1.0, x);
        }
        // erfc(x) = exp(-x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...))))).
        double f = ax;
        for (int n = 60; n >= 1; n--)
        {
            f = ax + n / 2.0 / f;
        }
        double erfc = Math.Exp(-ax * ax) / Math.Sqrt(Math.PI) / f;
        return Math.CopySign(1 - erfc, x);
    }
}
