using ZeTT.Runtime.Hypernetwork;

namespace ZeTT.Runtime.Tests.Hypernetwork;

/// <summary>
/// Skipping trailing padding (the packed layout) against the unpacked layout that computes all
/// L positions of every row: same results within fp32 rounding, whatever the batch.
/// </summary>
public sealed class CpuPaddingSkipTests
{
    /// <summary>|packed − unpacked| ≤ 1e-5·(1 + |unpacked|). A masked key's softmax weight is
    /// exactly 0 and every kernel computes a row independently of the others, so the two layouts
    /// should agree to the bit; the bound only leaves room for reordered fp32 sums.</summary>
    private const double Tolerance = 1e-5;

    public static TheoryData<string, int, bool, bool> Configurations() => new()
    {
        { "lang", 7, true, false },
        { "mono", 7, false, false },
        { "mono_untied_separate", 7, false, true },
        { "lang_L16", 16, true, true },
        { "mono_L1", 1, false, false },
        { "lang_L1", 1, true, false },
    };

    [Theory]
    [MemberData(nameof(Configurations))]
    public void Packed_matches_unpacked_on_mixed_rows(string name, int maxLen, bool lang,
        bool separate)
    {
        var o = new TinyOptions(Lang: lang, MaxLen: maxLen, Separate: separate, Layers: 3);
        var (weights, source) = TinyHypernet.Create(o, name.Length + maxLen);
        const int rows = 40;
        int[] ids = MixedRows(o, rows, seed: maxLen);
        int langIndex = lang ? 2 : -1;
        foreach (HypernetPrecision precision in new[] { HypernetPrecision.Float32, HypernetPrecision.BFloat16 })
        {
            using var unpacked = new CpuHypernetBackend(weights, source, precision, maxBatchSize: rows)
            {
                SkipPadding = false,
            };
            HypernetOutput expected = unpacked.Predict(ids, rows, langIndex);
            foreach (int batch in new[] { rows, 7, 1 })
            {
                using var packed = new CpuHypernetBackend(weights, source, precision, maxBatchSize: batch);
                Assert.True(packed.SkipPadding);
                HypernetOutput actual = HypernetBatching.PredictAll(packed, ids, rows, langIndex,
                    weights.Config);
                AssertClose(expected, actual, $"{name} {precision} batch {batch}");
            }
        }
    }

    [Fact]
    public void A_rows_result_does_not_depend_on_the_rows_batched_with_it()
    {
        var o = new TinyOptions(Lang: false, Separate: true);
        var (weights, source) = TinyHypernet.Create(o, 17);
        const int rows = 30;
        int[] ids = MixedRows(o, rows, seed: 5);
        int l = o.MaxLen;
        using var backend = new CpuHypernetBackend(weights, source, HypernetPrecision.Float32,
            maxBatchSize: rows);
        HypernetOutput whole = backend.Predict(ids, rows, -1);
        // The same rows shuffled and batched with others of very different lengths.
        var rng = new Random(9);
        int[] order = Enumerable.Range(0, rows).OrderBy(_ => rng.Next()).ToArray();
        int[] shuffled = order.SelectMany(r => ids.AsSpan(r * l, l).ToArray()).ToArray();
        for (int split = 1; split < rows; split += 6)
        {
            HypernetOutput first = backend.Predict(shuffled.AsSpan(0, split * l), split, -1);
            HypernetOutput rest = backend.Predict(shuffled.AsSpan(split * l), rows - split, -1);
            for (int k = 0; k < rows; k++)
            {
                (HypernetOutput part, int at) = k < split ? (first, k) : (rest, k - split);
                AssertRowClose(whole, order[k], part, at, o.NEmbd, $"split {split}, row {order[k]}");
            }
        }
    }

    [Fact]
    public void Skipped_padding_is_not_counted_in_the_flops()
    {
        var o = new TinyOptions(Lang: false);
        var (weights, source) = TinyHypernet.Create(o, 3);
        using var backend = new CpuHypernetBackend(weights, source, HypernetPrecision.Float32);
        int l = o.MaxLen, pad = o.Pad;
        int[] full = Enumerable.Range(2, l).ToArray();
        int[] allPad = Enumerable.Repeat(pad, l).ToArray();
        int[] oneThenPad = [.. new[] { 7 }, .. Enumerable.Repeat(pad, l - 1)];
        int[] middlePad = [.. new[] { 7, pad, 8 }, .. Enumerable.Repeat(pad, l - 3)];
        Assert.Equal(backend.FlopsPerRow, backend.Flops(full, 1));
        // Without a language position an all-padding row attends over all L positions.
        Assert.Equal(backend.FlopsPerRow, backend.Flops(allPad, 1));
        double one = backend.Flops(oneThenPad, 1), three = backend.Flops(middlePad, 1);
        Assert.True(one < three && three < backend.FlopsPerRow);
        Assert.Equal(one + three, backend.Flops([.. oneThenPad, .. middlePad], 2));
        backend.SkipPadding = false;
        Assert.Equal(backend.FlopsPerRow, backend.Flops(oneThenPad, 1));
    }

    /// <summary>Rows of every kind: all padding, real ids up to a random last position with
    /// padding in between at random, and full rows.</summary>
    internal static int[] MixedRows(TinyOptions o, int rows, int seed)
    {
        var rng = new Random(seed);
        int l = o.MaxLen;
        var ids = new int[rows * l];
        for (int r = 0; r < rows; r++)
        {
            int kind = r % 5;
            int last = kind == 0 ? -1 : kind == 1 ? l - 1 : rng.Next(l);
            for (int p = 0; p < l; p++)
            {
                bool real = p == last || (p < last && rng.Next(4) != 0);
                ids[(r * l) + p] = !real ? o.Pad
                    : rng.Next(6) == 0 ? o.OriginalVocab + rng.Next(o.Extra)
                    : 2 + rng.Next(o.OriginalVocab - 2);
            }
        }
        return ids;
    }

    internal static void AssertClose(HypernetOutput expected, HypernetOutput actual, string what)
    {
        Compare(expected.EmbeddingsIn, actual.EmbeddingsIn, what + " embeddings_in");
        Assert.Equal(expected.EmbeddingsOut is null, actual.EmbeddingsOut is null);
        if (expected.EmbeddingsOut is not null)
        {
            Compare(expected.EmbeddingsOut, actual.EmbeddingsOut!, what + " embeddings_out");
        }
        Assert.Equal(expected.Bias is null, actual.Bias is null);
        if (expected.Bias is not null)
        {
            Compare(expected.Bias, actual.Bias!, what + " bias");
        }
    }

    private static void AssertRowClose(HypernetOutput expected, int row, HypernetOutput actual,
        int at, int n, string what)
    {
        Compare(expected.EmbeddingsIn.AsSpan(row * n, n).ToArray(),
            actual.EmbeddingsIn.AsSpan(at * n, n).ToArray(), what + " embeddings_in");
        Compare(expected.EmbeddingsOut!.AsSpan(row * n, n).ToArray(),
            actual.EmbeddingsOut!.AsSpan(at * n, n).ToArray(), what + " embeddings_out");
        Compare([expected.Bias![row]], [actual.Bias![at]], what + " bias");
    }

    private static void Compare(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        Assert.All(actual, v => Assert.True(float.IsFinite(v), $"{what}: {v}"));
        for (int i = 0; i < expected.Length; i++)
        {
            double bound = Tolerance * (1 + Math.Abs(expected[i]));
            Assert.True(Math.Abs(actual[i] - expected[i]) <= bound,
                $"{what}[{i}]: packed {actual[i]}, unpacked {expected[i]}");
        }
    }
}
