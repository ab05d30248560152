using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.Tensors;

namespace ZeTT.Runtime.Tests.Hypernetwork;

/// <summary>Input validation and options checked without fixtures.</summary>
public sealed class CpuHypernetBackendTests
{
    private static HypernetFixture Fixture(string name) =>
        HypernetFixture.LoadOrSkip(HypernetFixture.ReconstructionSet, name);

    [Fact]
    public void Out_of_vocabulary_id_is_rejected_with_its_position()
    {
        HypernetFixture f = Fixture("lang_tied_rescale_bias");
        using var backend = new CpuHypernetBackend(f.Weights, f.SourceEmbeddings, HypernetPrecision.Float32);
        int[] ids = (int[])f.SurfaceForms.Clone();
        int l = f.Config.SurfaceMaxLen;
        ids[l + 2] = f.Config.OriginalVocabSize + f.Config.NumExtraTokens;
        var e = Assert.Throws<ZettException>(() => backend.Predict(ids, f.Rows, f.LangIndex));
        Assert.Contains("row 1, position 2", e.Message);
    }

    [Fact]
    public void Language_index_is_required_exactly_when_the_model_embeds_one()
    {
        HypernetFixture multi = Fixture("lang_tied_rescale_bias");
        using var a = new CpuHypernetBackend(multi.Weights, multi.SourceEmbeddings, HypernetPrecision.Float32);
        Assert.Throws<ZettException>(() => a.Predict(multi.SurfaceForms, multi.Rows, -1));
        Assert.Throws<ZettException>(() => a.Predict(multi.SurfaceForms, multi.Rows, multi.Config.NumLangs));
        HypernetFixture mono = Fixture("untied_separate_heads_L16");
        using var b = new CpuHypernetBackend(mono.Weights, mono.SourceEmbeddings, HypernetPrecision.Float32);
        Assert.Throws<ZettException>(() => b.Predict(mono.SurfaceForms, mono.Rows, 0));
    }

    [Fact]
    public void Language_changes_the_prediction()
    {
        HypernetFixture f = Fixture("lang_tied_rescale_bias");
        using var backend = new CpuHypernetBackend(f.Weights, f.SourceEmbeddings, HypernetPrecision.Float32);
        float[] a = backend.Predict(f.SurfaceForms, f.Rows, 0).EmbeddingsIn;
        float[] b = backend.Predict(f.SurfaceForms, f.Rows, 1).EmbeddingsIn;
        Assert.True(a.Zip(b).Max(p => Math.Abs(p.First - p.Second)) > 1e-2f);
    }

    [Fact]
    public void Source_embeddings_of_the_wrong_width_or_too_few_rows_are_rejected()
    {
        HypernetFixture f = Fixture("untied_separate_heads_L16");
        int d = f.Config.SourceWidth;
        var narrow = new HostTensor("embeddings_in", [f.Config.OriginalVocabSize, f.Config.NEmbd],
            new float[f.Config.OriginalVocabSize * f.Config.NEmbd]);
        Assert.Contains("untied", Assert.Throws<ZettException>(() =>
            new CpuHypernetBackend(f.Weights, narrow, HypernetPrecision.Float32)).Message);
        var few = new HostTensor("e", [3, d], new float[3 * d]);
        Assert.Contains("original_vocab_size", Assert.Throws<ZettException>(() =>
            new CpuHypernetBackend(f.Weights, few, HypernetPrecision.Float32)).Message);
    }

    [Fact]
    public void Batch_larger_than_max_batch_size_is_rejected_and_empty_batch_is_empty()
    {
        HypernetFixture f = Fixture("single_head_tied_plain");
        using var backend = new CpuHypernetBackend(f.Weights, f.SourceEmbeddings,
            HypernetPrecision.Float32, maxBatchSize: 4);
        Assert.Equal(4, backend.MaxBatchSize);
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            backend.Predict(f.SurfaceForms.AsSpan(0, 5 * f.Config.SurfaceMaxLen), 5, -1));
        HypernetOutput empty = backend.Predict([], 0, -1);
        Assert.Empty(empty.EmbeddingsIn);
        Assert.Null(empty.EmbeddingsOut);
        Assert.Null(empty.Bias);
    }

    [Fact]
    public void Fully_padded_row_attends_uniformly_and_differs_from_a_real_row()
    {
        // Without a language position an all-padding row has every key masked: Hugging Face adds
        // float.MinValue to every score, so the row attends uniformly. Its prediction must be
        // finite and equal for any two all-padding rows.
        HypernetFixture f = Fixture("single_head_tied_plain");
        int l = f.Config.SurfaceMaxLen, pad = f.Config.PadTokenId;
        int[] ids = Enumerable.Repeat(pad, 3 * l).ToArray();
        ids[l] = 5;
        using var backend = new CpuHypernetBackend(f.Weights, f.SourceEmbeddings, HypernetPrecision.Float32);
        float[] e = backend.Predict(ids, 3, -1).EmbeddingsIn;
        int n = f.Config.NEmbd;
        Assert.All(e, v => Assert.True(float.IsFinite(v)));
        Assert.Equal(e.AsSpan(0, n).ToArray(), e.AsSpan(2 * n, n).ToArray());
        Assert.NotEqual(e.AsSpan(0, n).ToArray(), e.AsSpan(n, n).ToArray());
    }

    [Fact]
    public void Flops_per_row_counts_the_xlmr_sized_network()
    {
        HypernetFixture f = Fixture("lang_tied_rescale_bias");
        using var backend = new CpuHypernetBackend(f.Weights, f.SourceEmbeddings, HypernetPrecision.Float32);
        double h = 48, i = 96, s = 8, l = 7, n = 32;
        double expected = (l * ((2 * n * h) + (4 * h * i)))
            + (2 * ((s * 4 * h * h) + (s * ((4 * h * h) + (4 * h * i))) + (s * s * 4 * h)))
            + ((s * 4 * h * h) + (4 * h * h) + (4 * h * i) + (s * 4 * h))
            + (4 * h * i) + (2 * h * n) + (2 * h);
        Assert.Equal(expected, backend.FlopsPerRow, 6);
    }

    [Theory]
    [InlineData(HypernetPrecision.Float32)]
    [InlineData(HypernetPrecision.BFloat16)]
    public void Releasing_the_unpacked_weights_changes_no_bit_and_frees_every_gemm_matrix(
        HypernetPrecision precision)
    {
        var o = new TinyOptions(Separate: true);
        var (kept, source) = TinyHypernet.Create(o, 29);
        var (consumed, _) = TinyHypernet.Create(o, 29);
        int[] ids = TinyHypernet.SurfaceForms(o, 19, 4);
        using var reference = new CpuHypernetBackend(kept, source, precision, maxBatchSize: 0);
        using var releasing = new CpuHypernetBackend(consumed, source, precision, maxBatchSize: 0,
            releaseUnpacked: true);
        HypernetOutput a = reference.Predict(ids, 19, 1), b = releasing.Predict(ids, 19, 1);
        Assert.Equal(a.EmbeddingsIn, b.EmbeddingsIn);
        Assert.Equal(a.EmbeddingsOut!, b.EmbeddingsOut!);
        Assert.Equal(a.Bias!, b.Bias!);
        Assert.All(consumed.Linears(), l => Assert.True(l.Weight.Released, l.Weight.Name));
        Assert.All(kept.Linears(), l => Assert.False(l.Weight.Released, l.Weight.Name));
        // Biases, norms and tables stay (the backend reads some of them per batch).
        Assert.False(consumed.PositionEmbeddings.Released);
        var e = Assert.Throws<InvalidOperationException>(() => consumed.InputProjection.Weight.Data);
        Assert.Contains("input_projection.0.weight", e.Message, StringComparison.Ordinal);
    }
}
