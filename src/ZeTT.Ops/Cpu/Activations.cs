using System.Numerics;

namespace ZeTT.Ops.Cpu;

/// <summary>The activation functions and their derivatives, elementwise, in float or double.
/// </summary>
internal static class Activations
{
    private const double SqrtTwoOverPi = 0.7978845608028654;
    private const double GeluCubic = 0.044715;
    private const double InvSqrtTwo = 0.7071067811865476;
    private const double InvSqrtTwoPi = 0.3989422804014327;

    public static void Forward<T>(ActivationFunction f, ReadOnlySpan<T> x, Span<T> y)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int i = 0; i < x.Length; i++)
        {
            y[i] = Value(f, x[i]);
        }
    }

    public static void Backward<T>(ActivationFunction f, ReadOnlySpan<T> dy, ReadOnlySpan<T> x,
        Span<T> dx) where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int i = 0; i < x.Length; i++)
        {
            dx[i] = dy[i] * Derivative(f, x[i]);
        }
    }

    public static void Gated<T>(ActivationFunction f, ReadOnlySpan<T> gate, ReadOnlySpan<T> up,
        Span<T> y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int i = 0; i < gate.Length; i++)
        {
            y[i] = Value(f, gate[i]) * up[i];
        }
    }

    public static T Value<T>(ActivationFunction f, T x) where T : IFloatingPointIeee754<T>
    {
        switch (f)
        {
            case ActivationFunction.Silu:
                return x / (T.One + T.Exp(-x));
            case ActivationFunction.Relu:
                return T.Max(x, T.Zero);
            case ActivationFunction.GeluErf:
                return T.CreateTruncating(0.5) * x
                    * (T.One + Erf(x * T.CreateTruncating(InvSqrtTwo)));
            case ActivationFunction.GeluTanh:
                T u = T.CreateTruncating(SqrtTwoOverPi)
                    * (x + T.CreateTruncating(GeluCubic) * x * x * x);
                return T.CreateTruncating(0.5) * x * (T.One + T.Tanh(u));
            default:
                throw new ArgumentOutOfRangeException(nameof(f), f, "unknown activation");
        }
    }

    public static T Derivative<T>(ActivationFunction f, T x) where T : IFloatingPointIeee754<T>
    {
        switch (f)
        {
            case ActivationFunction.Silu:
                T s = T.One / (T.One + T.Exp(-x));
                return s * (T.One + x * (T.One - s));
            case ActivationFunction.Relu:
                return x > T.Zero ? T.One : T.Zero;
            case ActivationFunction.GeluErf:
                return T.CreateTruncating(0.5) * (T.One + Erf(x * T.CreateTruncating(InvSqrtTwo)))
                    + x * T.CreateTruncating(InvSqrtTwoPi) * T.Exp(-x * x / T.CreateTruncating(2));
            case ActivationFunction.GeluTanh:
                T c = T.CreateTruncating(SqrtTwoOverPi);
                T a = T.CreateTruncating(GeluCubic);
                T t = T.Tanh(c * (x + a * x * x * x));
                return T.CreateTruncating(0.5) * (T.One + t) + T.CreateTruncating(0.5) * x
                    * (T.One - t * t) * c * (T.One + T.CreateTruncating(3) * a * x * x);
            default:
                throw new ArgumentOutOfRangeException(nameof(f), f, "unknown activation");
        }
    }

    /// <summary>erf: .NET has none. Double: the Maclaurin series below |x| = 3 (≈ 1e-15, the
    /// largest term is ≈ 170 so about three digits cancel) and erfc's continued fraction
    /// beyond; float goes through the same double path (exact to float rounding).</summary>
    public static T Erf<T>(T x) where T : IFloatingPointIeee754<T> =>
        T.CreateTruncating(Erf(double.CreateTruncating(x)));

    public static double Erf(double x)
    {
        if (double.IsNaN(x))
        {
            return x;
        }
        double ax = Math.Abs(x);
        double r;
        if (ax < 3)
        {
            double x2 = ax * ax, term = ax, sum = ax;
            for (int n = 1; n < 100; n++)
            {
                term *= -x2 / n;
                double add = term / (2 * n + 1);
                sum += add;
                if (Math.Abs(add) < 1e-17 * Math.Abs(sum))
                {
                    break;
                }
            }
            r = sum * 1.1283791670955126;
        }
        else if (ax > 6)
        {
            r = 1;
        }
        else
        {
            // erfc(x) = exp(-x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + …)))), evaluated bottom-up.
            double f = ax;
            for (int k = 60; k >= 1; k--)
            {
                f = ax + k / 2.0 / f;
            }
            r = 1 - Math.Exp(-ax * ax) / f * 0.5641895835477563;
        }
        return x < 0 ? -r : r;
    }
}
