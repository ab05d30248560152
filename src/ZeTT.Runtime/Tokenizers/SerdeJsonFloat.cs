using System.Globalization;

namespace ZeTT.Runtime.Tokenizers;

/// <summary>
/// A JSON number read as the Rust library reads Unigram scores: serde_json's default float
/// parser (no <c>float_roundtrip</c> feature), which accumulates up to 19 significant digits in
/// a u64, converts it to f64 and multiplies or divides once by a power of ten. That can land
/// one ulp from the correctly rounded value, and a Viterbi tie between equal-scored paths then
/// falls the other way (measured: a run of ten dashes under t5-small's
/// <c>"-" + 3 × "---"</c>); reading the scores the same way makes the ties fall alike.
/// </summary>
internal static class SerdeJsonFloat
{
    private static readonly double[] Pow10 = BuildPow10();

    /// <summary>Parses JSON number text; null if it is not a JSON number.</summary>
    public static double? Parse(string text)
    {
        int i = 0;
        bool positive = true;
        if (i < text.Length && text[i] == '-')
        {
            positive = false;
            i++;
        }
        ulong significand = 0;
        int exponent = 0;
        bool overflowed = false;
        int digits = 0;
        for (; i < text.Length && char.IsAsciiDigit(text[i]); i++, digits++)
        {
            ulong d = (ulong)(text[i] - '0');
            if (overflowed || Overflows(significand, d))
            {
                overflowed = true;
                exponent++;
                continue;
            }
            significand = significand * 10 + d;
        }
        if (digits == 0)
        {
            return null;
        }
        bool isFloat = false;
        if (i < text.Length && text[i] == '.')
        {
            isFloat = true;
            i++;
            for (; i < text.Length && char.IsAsciiDigit(text[i]); i++)
            {
                ulong d = (ulong)(text[i] - '0');
                if (overflowed || Overflows(significand, d))
                {
                    overflowed = true;
                    continue;
                }
                significand = significand * 10 + d;
                exponent--;
            }
        }
        if (i < text.Length && text[i] is 'e' or 'E')
        {
            isFloat = true;
            i++;
            bool positiveExp = true;
            if (i < text.Length && text[i] is '+' or '-')
            {
                positiveExp = text[i] == '+';
                i++;
            }
            int exp = 0;
            for (; i < text.Length && char.IsAsciiDigit(text[i]); i++)
            {
                exp = Math.Min(exp * 10 + (text[i] - '0'), 100_000);
            }
            exponent += positiveExp ? exp : -exp;
        }
        if (i != text.Length)
        {
            return null;
        }
        if (!isFloat && !overflowed)
        {
            // An integer: serde_json reads it as i64/u64 and casts.
            double v = significand;
            return positive ? v : -v;
        }
        double f = significand;
        while (true)
        {
            int abs = Math.Abs(exponent);
            if (abs < Pow10.Length)
            {
                f = exponent >= 0 ? f * Pow10[abs] : f / Pow10[abs];
                break;
            }
            if (f == 0 || exponent >= 0)
            {
                f = exponent >= 0 && f != 0 ? double.PositiveInfinity : f;
                break;
            }
            f /= 1e308;
            exponent += 308;
        }
        return positive ? f : -f;
    }

    private static bool Overflows(ulong a, ulong digit) =>
        a >= ulong.MaxValue / 10 && (a > ulong.MaxValue / 10 || digit > ulong.MaxValue % 10);

    private static double[] BuildPow10()
    {
        var table = new double[309];
        for (int i = 0; i < table.Length; i++)
        {
            table[i] = double.Parse($"1e{i}", CultureInfo.InvariantCulture);
        }
        return table;
    }
}
