namespace ZeTT.Ops.Tests;

/// <summary>Central finite differences in float64: the definition every backward pass is held
/// to.</summary>
internal static class FiniteDifferences
{
    /// <summary>h = 1e-6: the central difference's truncation error is O(h²) ≈ 1e-12 times the
    /// third derivative and its rounding error ≈ 1e-16 / h = 1e-10, both far below the
    /// tolerance.</summary>
    private const double H = 1e-6;

    /// <summary>Checks <paramref name="analytic"/> = ∂loss/∂x at up to
    /// <paramref name="samples"/> evenly spread elements of <paramref name="x"/> (every element
    /// when there are fewer): |a − fd| ≤ 1e-7 + 1e-6·|fd|.</summary>
    public static void Check(string name, double[] x, Func<double> loss, double[] analytic,
        int samples = 48)
    {
        Assert.Equal(x.Length, analytic.Length);
        int step = Math.Max(1, x.Length / samples);
        for (int i = 0; i < x.Length; i += step)
        {
            double saved = x[i];
            x[i] = saved + H;
            double plus = loss();
            x[i] = saved - H;
            double minus = loss();
            x[i] = saved;
            double fd = (plus - minus) / (2 * H);
            double tol = 1e-7 + 1e-6 * Math.Abs(fd);
            Assert.True(Math.Abs(analytic[i] - fd) <= tol,
                $"{name}[{i}]: backward {analytic[i]:R}, finite difference {fd:R}");
        }
    }

    public static double[] Random(Random rng, long count, double scale = 1)
    {
        var a = new double[count];
        for (long i = 0; i < count; i++)
        {
            a[i] = (rng.NextDouble() * 2 - 1) * scale;
        }
        return a;
    }

    /// <summary>Σ r · y: the scalar whose gradient with respect to y is r.</summary>
    public static double Weighted(double[] r, double[] y)
    {
        double s = 0;
        for (int i = 0; i < r.Length; i++)
        {
            s += r[i] * y[i];
        }
        return s;
    }
}
