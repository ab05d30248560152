using ZeTT.Ops;
using ZeTT.Ops.Cpu;
using ZeTT.Runtime.Hypernetwork;

namespace ZeTT.Runtime.Tests.Hypernetwork;

/// <summary>
/// The layout that computes only what is read (HypernetGraph's remarks: attended positions,
/// the language position, a padding position 0; rows grouped by length): results do not
/// depend on the batch, and inference (<see cref="HypernetGraph.Predict"/>, workspaces reused
/// across batches) equals the training forward on every kind of row. That skipping padding is
/// exact is shown by the PyTorch fixtures, which compute every position and hold rows of
/// padding, padding between ids and padding at position 0 (CpuHypernetParityTests).
/// </summary>
public sealed class CpuPaddingSkipTests
{
    private static readonly CpuBackend Cpu = new();

    /// <summary>Both sides run the same fp32 ops on the same rows in a different grouping: the
    /// CPU GEMM's result per element depends on K only, attention and LayerNorm are per row,
    /// so they agree to the bit; the bound only leaves room for reordered fp32 sums.</summary>
    private const double Tolerance = 1e-6;

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
    public void Inference_equals_the_training_forward_in_any_batching(string name, int maxLen,
        bool lang, bool separate)
    {
        var o = new TinyOptions(Lang: lang, MaxLen: maxLen, Separate: separate, Layers: 3);
        var (weights, source) = TinyHypernet.Create(o, name.Length + maxLen);
        const int rows = 40;
        int[] ids = MixedRows(o, rows, seed: maxLen);
        int langIndex = lang ? 2 : -1;
        HypernetOutput expected;
        using (HypernetParameters p = HypernetParameters.FromWeights(weights, Cpu, DType.F32))
        using (Tensor e = Tensor.FromFloats(source.Data, source.Shape[0], source.Shape[1]))
        using (var graph = new HypernetGraph(weights.Config, p, e))
        using (HypernetPass pass = graph.Forward(ids, rows, langIndex))
        {
            expected = pass.Download();
        }
        foreach (int batch in new[] { rows, 7, 1 })
        {
            using var predictor = new HypernetPredictor(Cpu, weights, source,
                HypernetPrecision.Float32, batch);
            // Twice: the second run reuses the workspaces the first one sized.
            for (int round = 0; round < 2; round++)
            {
                HypernetOutput actual = HypernetBatching.PredictAll(predictor, ids, rows, langIndex);
                AssertClose(expected, actual, $"{name} batch {batch} round {round}");
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
        using var predictor = new HypernetPredictor(Cpu, weights, source,
            HypernetPrecision.Float32, rows);
        HypernetOutput whole = predictor.Predict(ids, rows, -1);
        // The same rows shuffled and batched with others of very different lengths.
        var rng = new Random(9);
        int[] order = Enumerable.Range(0, rows).OrderBy(_ => rng.Next()).ToArray();
        int[] shuffled = order.SelectMany(r => ids.AsSpan(r * l, l).ToArray()).ToArray();
        for (int split = 1; split < rows; split += 6)
        {
            HypernetOutput first = predictor.Predict(shuffled.AsSpan(0, split * l), split, -1);
            HypernetOutput rest = predictor.Predict(shuffled.AsSpan(split * l), rows - split, -1);
            for (int k = 0; k < rows; k++)
            {
                (HypernetOutput part, int at) = k < split ? (first, k) : (rest, k - split);
                AssertRowClose(whole, order[k], part, at, o.NEmbd, $"split {split}, row {order[k]}");
            }
        }
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
                $"{what}[{i}]: {actual[i]}, expected {expected[i]}");
        }
    }
}
