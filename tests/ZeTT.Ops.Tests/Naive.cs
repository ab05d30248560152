namespace ZeTT.Ops.Tests;

/// <summary>|a − b| ≤ atol + rtol·|b| as an equality for Assert.Equal on sequences.</summary>
internal sealed class Tolerance(double atol, double rtol = 0) : IEqualityComparer<double>
{
    public bool Equals(double x, double y) => Math.Abs(x - y) <= atol + rtol * Math.Abs(y);

    public int GetHashCode(double obj) => 0;
}

/// <summary>Textbook forms of the fused ops (full score matrices, full logits), float64.
/// </summary>
internal static class Naive
{
    public static double[] Attention(double[] q, double[] k, double[] v, int b, int tq, int tk,
        int hq, int hkv, int dh, AttentionOptions o, int[]? lengths)
    {
        var y = new double[b * tq * hq * dh];
        for (int s = 0; s < b; s++)
        {
            for (int h = 0; h < hq; h++)
            {
                int kh = h / (hq / hkv);
                for (int i = 0; i < tq; i++)
                {
                    int pos = tk - tq + i;
                    var scores = new double[tk];
                    for (int j = 0; j < tk; j++)
                    {
                        bool visible = (lengths is null || j < lengths[s])
                            && (!o.Causal || j <= pos) && (!o.Causal || o.Window <= 0
                                || pos - j < o.Window);
                        double dot = 0;
                        for (int d = 0; d < dh; d++)
                        {
                            dot += q[((s * tq + i) * hq + h) * dh + d]
                                * k[((s * tk + j) * hkv + kh) * dh + d];
                        }
                        scores[j] = visible ? dot * o.Scale : double.NegativeInfinity;
                    }
                    double max = scores.Max();
                    if (double.IsNegativeInfinity(max))
                    {
                        continue;
                    }
                    double sum = scores.Sum(x => Math.Exp(x - max));
                    for (int j = 0; j < tk; j++)
                    {
                        double p = Math.Exp(scores[j] - max) / sum;
                        for (int d = 0; d < dh; d++)
                        {
                            y[((s * tq + i) * hq + h) * dh + d] +=
                                p * v[((s * tk + j) * hkv + kh) * dh + d];
                        }
                    }
                }
            }
        }
        return y;
    }

    public static double[] CrossEntropy(double[] h, double[] w, double[]? bias, int[] targets,
        int n, int dm, int vocab)
    {
        var losses = new double[n];
        for (int i = 0; i < n; i++)
        {
            var logits = new double[vocab];
            for (int v = 0; v < vocab; v++)
            {
                double dot = bias?[v] ?? 0;
                for (int d = 0; d < dm; d++)
                {
                    dot += h[i * dm + d] * w[v * dm + d];
                }
                logits[v] = dot;
            }
            double max = logits.Max();
            double lse = max + Math.Log(logits.Sum(x => Math.Exp(x - max)));
            losses[i] = targets[i] < 0 ? 0 : lse - logits[targets[i]];
        }
        return losses;
    }
}
