using ZeTT.Kernels;
using ZeTT.Runtime.Hypernetwork;

namespace ZeTT.Runtime.Tests.Hypernetwork;

/// <summary>
/// Whole-model parity of <see cref="CudaHypernetBackend"/> against
/// <see cref="TwinHypernetForward"/> (skipped without a device), and the backend's host-side
/// logic (runs everywhere). Tolerances: fp32 |gpu − ref| ≤ 1e-4·(|ref| + rms(ref)) (cuBLAS fp32
/// without TF32 vs double-accumulated twins); bf16 relative Frobenius error ≤ 3e-2 per output
/// (bf16 GEMM inputs carry 2⁻⁹ relative error each, through two projector blocks and the
/// encoder; LayerNorms keep it from growing).
/// </summary>
public sealed class CudaHypernetBackendTests
{
    public static TheoryData<string> Configs => new()
    {
        "xlmr-like", "untied-separate-heads", "untied-single-head", "plain", "tied-single-head",
    };

    internal static TinyOptions Options(string name) => name switch
    {
        "xlmr-like" => new TinyOptions(),
        "untied-separate-heads" => new TinyOptions(Separate: true, Lang: false),
        "untied-single-head" => new TinyOptions(Separate: true, SingleHead: true, Lang: false),
        "plain" => new TinyOptions(Rescale: false, Bias: false, Lang: false, Layers: 1),
        "tied-single-head" => new TinyOptions(SingleHead: true, Heads: 2, MaxLen: 16),
        _ => throw new ArgumentOutOfRangeException(nameof(name)),
    };

    [Theory]
    [MemberData(nameof(Configs))]
    public void Fp32_matches_the_twin_forward(string config)
    {
        Assert.SkipUnless(Cuda.IsAvailable, Cuda.UnavailableReason);
        TinyOptions o = Options(config);
        var (weights, source) = TinyHypernet.Create(o, 11);
        int rows = 37, lang = o.Lang ? 2 : -1;
        int[] ids = TinyHypernet.SurfaceForms(o, rows, 5);
        var notes = new List<string>();
        // A batch of 16 forces three chunks for 37 rows.
        using var backend = new CudaHypernetBackend(weights, source, HypernetPrecision.Float32,
            maxBatchSize: 16, log: notes.Add);
        Assert.Throws<ArgumentOutOfRangeException>(() => backend.Predict(ids, rows, lang));
        var expected = TwinHypernetForward.Run(weights, source, ids, rows, lang);
        var actual = new List<HypernetOutput>();
        for (int start = 0; start < rows; start += 16)
        {
            int n = Math.Min(16, rows - start);
            actual.Add(backend.Predict(ids.AsSpan(start * o.MaxLen, n * o.MaxLen), n, lang));
        }
        Compare(expected.EmbeddingsIn, [.. actual.SelectMany(a => a.EmbeddingsIn)], "e_in");
        Assert.Equal(expected.EmbeddingsOut is null, actual[0].EmbeddingsOut is null);
        if (expected.EmbeddingsOut is not null)
        {
            Compare(expected.EmbeddingsOut, [.. actual.SelectMany(a => a.EmbeddingsOut!)],
                "e_out");
        }
        Assert.Equal(expected.Bias is null, actual[0].Bias is null);
        if (expected.Bias is not null)
        {
            Compare(expected.Bias, [.. actual.SelectMany(a => a.Bias!)], "bias");
        }
    }

    [Theory]
    [InlineData(HypernetPrecision.Float32)]
    [InlineData(HypernetPrecision.BFloat16)]
    public void PredictAll_pipelines_batches_and_equals_them_one_by_one(HypernetPrecision precision)
    {
        Assert.SkipUnless(Cuda.IsAvailable, Cuda.UnavailableReason);
        var o = new TinyOptions(Separate: true, Lang: true);
        var (weights, source) = TinyHypernet.Create(o, 17);
        const int rows = 71, batch = 8;  // nine batches through two staging slots, a short last one
        int[] ids = TinyHypernet.SurfaceForms(o, rows, 3);
        using var backend = new CudaHypernetBackend(weights, source, precision, maxBatchSize: batch);
        var progress = new List<int>();
        HypernetOutput all = HypernetBatching.PredictAll(backend, ids, rows, 1, weights.Config,
            progress.Add);
        Assert.Equal([8, 16, 24, 32, 40, 48, 56, 64, 71], progress);
        for (int start = 0; start < rows; start += batch)
        {
            int n = Math.Min(batch, rows - start);
            HypernetOutput one = backend.Predict(ids.AsSpan(start * o.MaxLen, n * o.MaxLen), n, 1);
            // Same batch, same workspace, same algorithms: the same bits.
            Assert.Equal(one.EmbeddingsIn, all.EmbeddingsIn.AsSpan(start * o.NEmbd, n * o.NEmbd).ToArray());
            Assert.Equal(one.EmbeddingsOut!, all.EmbeddingsOut!.AsSpan(start * o.NEmbd, n * o.NEmbd).ToArray());
            Assert.Equal(one.Bias!, all.Bias!.AsSpan(start, n).ToArray());
        }
    }

    internal static void Compare(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double rms = Math.Sqrt(expected.Average(v => (double)v * v));
        for (int i = 0; i < expected.Length; i++)
        {
            double tol = 1e-4 * (Math.Abs(expected[i]) + rms);
            Assert.True(Math.Abs(actual[i] - expected[i]) <= tol,
                $"{what}[{i}]: {actual[i]} vs {expected[i]} (tolerance {tol:E2})");
        }
    }

    [Theory]
    [MemberData(nameof(Configs))]
    public void Bf16_stays_within_its_stated_tolerance(string config)
    {
        Assert.SkipUnless(Cuda.IsAvailable, Cuda.UnavailableReason);
        TinyOptions o = Options(config);
        var (weights, source) = TinyHypernet.Create(o, 12);
        int rows = 23, lang = o.Lang ? 0 : -1;
        int[] ids = TinyHypernet.SurfaceForms(o, rows, 6);
        using var backend = new CudaHypernetBackend(weights, source, HypernetPrecision.BFloat16,
            maxBatchSize: 0);
        Assert.True(backend.MaxBatchSize >= rows);
        HypernetOutput actual = backend.Predict(ids, rows, lang);
        HypernetOutput expected = TwinHypernetForward.Run(weights, source, ids, rows, lang);
        RelativeError(expected.EmbeddingsIn, actual.EmbeddingsIn, "e_in");
        if (expected.EmbeddingsOut is not null)
        {
            RelativeError(expected.EmbeddingsOut, actual.EmbeddingsOut!, "e_out");
        }
        if (expected.Bias is not null)
        {
            RelativeError(expected.Bias, actual.Bias!, "bias");
        }
    }

    internal static void RelativeError(float[] expected, float[] actual, string what)
    {
        double num = 0, den = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            num += (actual[i] - (double)expected[i]) * (actual[i] - expected[i]);
            den += (double)expected[i] * expected[i];
        }
        double rel = Math.Sqrt(num / den);
        Assert.True(rel <= 3e-2, $"{what}: bf16 relative error {rel:E2} exceeds 3e-2");
    }

    [Fact]
    public void Rejects_ids_outside_the_vocabulary_and_a_wrong_language()
    {
        Assert.SkipUnless(Cuda.IsAvailable, Cuda.UnavailableReason);
        var o = new TinyOptions();
        var (weights, source) = TinyHypernet.Create(o, 13);
        using var backend = new CudaHypernetBackend(weights, source, HypernetPrecision.Float32,
            maxBatchSize: 4);
        int[] ids = TinyHypernet.SurfaceForms(o, 2, 1);
        ids[3] = o.OriginalVocab + o.Extra;
        var e = Assert.Throws<ArgumentException>(() => backend.Predict(ids, 2, 0));
        Assert.Contains($"id {o.OriginalVocab + o.Extra}", e.Message, StringComparison.Ordinal);
        ids[3] = 2;
        Assert.Throws<ArgumentOutOfRangeException>(() => backend.Predict(ids, 2, 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => backend.Predict(ids, 2, -1));
        Assert.Equal(2 * o.NEmbd, backend.Predict(ids, 2, 1).EmbeddingsIn.Length);
    }

    [Fact]
    public void Concatenated_hidden_states_are_refused_before_touching_the_device()
    {
        HypernetConfig config = HypernetConfig.Parse("""
            {"hn_hidden_size": 64, "hn_intermediate_size": 96, "original_vocab_size": 10,
             "pad_token_id": 1, "hn_embed_using_source_embeddings": true,
             "hn_concat_last_hidden_state": true}
            """, "c.json");
        var e = Assert.Throws<NotSupportedException>(
            () => CudaHypernetBackend.CheckSupported(config));
        Assert.Contains("hn_concat_last_hidden_state", e.Message, StringComparison.Ordinal);
        HypernetConfig longSeq = HypernetConfig.Parse("""
            {"hn_hidden_size": 64, "hn_intermediate_size": 96, "original_vocab_size": 10,
             "pad_token_id": 1, "hn_embed_using_source_embeddings": true,
             "hn_surface_maxlen": 32, "hn_embed_lang_id": true, "n_langs": 2}
            """, "c.json");
        Assert.Throws<NotSupportedException>(() => CudaHypernetBackend.CheckSupported(longSeq));
    }

    [Fact]
    public void Without_cuda_construction_says_why()
    {
        Assert.SkipWhen(Cuda.IsAvailable, "CUDA is available here");
        var (weights, source) = TinyHypernet.Create(new TinyOptions(), 1);
        var e = Assert.Throws<CudaException>(() => new CudaHypernetBackend(weights, source,
            HypernetPrecision.Float32));
        Assert.Contains(Cuda.UnavailableReason, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Batch_size_follows_free_memory()
    {
        HypernetConfig mistral = HypernetConfig.Parse("""
            {"n_embd": 4096, "hn_hidden_size": 4096, "hn_intermediate_size": 8192,
             "hn_num_attention_heads": 32, "hn_surface_maxlen": 7, "original_vocab_size": 32000,
             "pad_token_id": 2, "separate_out_embeddings": true,
             "hn_embed_using_source_embeddings": true}
            """, "m.json");
        long perRow = CudaHypernetBackend.WorkspaceBytesPerRow(mistral, HypernetPrecision.BFloat16);
        // packed batch (ids, then source, position, id per sequence token, row start)
        // + gathered bf16 rows + 4 fp32 [7, 4096] + 2 bf16 [7, 4096] + [7, 12288] fp32
        // + [7, 8192] bf16 + head output + results and bias in each of two staging slots.
        long expected = (7 + 3 * 7 + 1) * 4 + 7 * 8192 * 2 + 4 * 7 * 4096 * 4 + 2 * 7 * 4096 * 2
            + 7 * 12288 * 4 + 7 * 8192 * 2 + 4096 * 4 + 2 * (2 * 4096 * 4 + 4);
        Assert.Equal(expected, perRow);
        Assert.Equal(CudaHypernetBackend.DefaultBatchCap,
            CudaHypernetBackend.BatchSizeFor(100L << 30, perRow));
        Assert.Equal(1, CudaHypernetBackend.BatchSizeFor(256L << 20, perRow));
        int mid = CudaHypernetBackend.BatchSizeFor(8L << 30, perRow);
        Assert.InRange(mid, 2, CudaHypernetBackend.DefaultBatchCap - 1);
        Assert.True((long)mid * perRow <= (8L << 30) * 4 / 5 - (512L << 20));
    }
}
