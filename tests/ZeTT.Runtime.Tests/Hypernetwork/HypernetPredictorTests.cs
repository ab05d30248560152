using ZeTT.Ops;
using ZeTT.Ops.Cpu;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.Tensors;

namespace ZeTT.Runtime.Tests.Hypernetwork;

/// <summary>The predictor (HypernetGraph on the CPU backend): input validation, options and
/// batching, checked without fixtures or against the graph itself.</summary>
public sealed class HypernetPredictorTests
{
    private static readonly CpuBackend Cpu = new();

    private static HypernetFixture Fixture(string name) =>
        HypernetFixture.LoadOrSkip(HypernetFixture.ReconstructionSet, name);

    private static HypernetPredictor Predictor(HypernetFixture f, int batch = 0) =>
        new(Cpu, f.Weights, f.SourceEmbeddings, HypernetPrecision.Float32, batch);

    /// <summary>Two submissions may be outstanding (their outputs in alternating workspaces):
    /// each completes to exactly what Predict gives for its batch, whatever was submitted
    /// after it; a third is refused until one is completed or disposed; a failed submission
    /// holds no slot.</summary>
    [Fact]
    public void Submissions_queue_two_deep_and_complete_to_what_predict_gives()
    {
        var o = new TinyOptions(Separate: true, Lang: false);
        var (weights, source) = TinyHypernet.Create(o, 21);
        int l = o.MaxLen;
        int[] ids = CpuPaddingSkipTests.MixedRows(o, 30, seed: 9);
        ReadOnlySpan<int> Batch(int r0, int rows) => ids.AsSpan(r0 * l, rows * l);
        using var p = new HypernetPredictor(Cpu, weights, source, HypernetPrecision.Float32, 16);
        HypernetOutput a = p.Predict(Batch(0, 16), 16, -1), b = p.Predict(Batch(16, 14), 14, -1);
        HypernetOutput c = p.Predict(Batch(5, 9), 9, -1);

        HypernetSubmission s1 = p.Submit(Batch(0, 16), 16, -1);
        HypernetSubmission s2 = p.Submit(Batch(16, 14), 14, -1);
        var e = Assert.Throws<InvalidOperationException>(() => p.Submit(Batch(5, 9), 9, -1));
        Assert.Contains("two submissions are outstanding", e.Message, StringComparison.Ordinal);
        Same(a, s1.Complete());
        Assert.Throws<ObjectDisposedException>(() => s1.Complete());
        HypernetSubmission s3 = p.Submit(Batch(5, 9), 9, -1);
        var eIn = new float[14 * o.NEmbd];
        var eOut = new float[14 * o.NEmbd];
        var bias = new float[14];
        s2.Complete(eIn, eOut, bias);
        Same(b, new HypernetOutput(eIn, eOut, bias));
        s3.Dispose(); // dropped without waiting for it: its slot is free again
        int[] bad = Batch(0, 2).ToArray();
        bad[1] = -1;
        Assert.Throws<ZettException>(() => p.Submit(bad, 2, -1));
        using HypernetSubmission s4 = p.Submit(Batch(5, 9), 9, -1);
        using HypernetSubmission s5 = p.Submit(Batch(0, 16), 16, -1);
        Same(c, s4.Complete());
        Same(a, s5.Complete());
        Assert.Throws<ArgumentOutOfRangeException>(() => p.Submit([], 0, -1));

        static void Same(HypernetOutput want, HypernetOutput got)
        {
            Assert.Equal(want.EmbeddingsIn, got.EmbeddingsIn);
            Assert.Equal(want.EmbeddingsOut, got.EmbeddingsOut);
            Assert.Equal(want.Bias, got.Bias);
        }
    }

    /// <summary>Inference storage: each layer's q, k, v and the two heads' first dense layers
    /// back to back (one GEMM each in the graph), the values unchanged.</summary>
    [Fact]
    public void Fused_parameters_store_linears_that_share_an_input_back_to_back()
    {
        var (weights, _) = TinyHypernet.Create(new TinyOptions(Separate: true, Lang: false), 4);
        using HypernetParameters p = HypernetParameters.FromWeights(weights, Cpu, DType.F32,
            DType.F32, consume: false, fuseAttention: true);
        string[][] groups =
        [
            ["model.encoder.layer.1.attention.self.query", "model.encoder.layer.1.attention.self.key",
                "model.encoder.layer.1.attention.self.value"],
            ["output_projection.0.dense1", "output_projection_out.0.dense1"],
        ];
        foreach (string[] group in groups)
        {
            foreach (string part in new[] { ".weight", ".bias" })
            {
                for (int k = 1; k < group.Length; k++)
                {
                    Tensor a = p[group[k - 1] + part], b = p[group[k] + part];
                    Assert.Same(a.Storage, b.Storage);
                    Assert.Equal(a.Offset + a.Count, b.Offset);
                }
                foreach (string name in group)
                {
                    Assert.Equal(weights.Tensors[name + part].Data, p.ToDoubles(name + part)
                        .Select(v => (float)v));
                }
            }
        }
    }

    [Fact]
    public void Out_of_vocabulary_id_is_rejected_with_its_position()
    {
        HypernetFixture f = Fixture("lang_tied_rescale_bias");
        using HypernetPredictor p = Predictor(f);
        int[] ids = (int[])f.SurfaceForms.Clone();
        int l = f.Config.SurfaceMaxLen;
        ids[l + 2] = f.Config.OriginalVocabSize + f.Config.NumExtraTokens;
        var e = Assert.Throws<ZettException>(() => p.Predict(ids, f.Rows, f.LangIndex));
        Assert.Contains("row 1, position 2", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Language_index_is_required_exactly_when_the_model_embeds_one()
    {
        HypernetFixture multi = Fixture("lang_tied_rescale_bias");
        using HypernetPredictor a = Predictor(multi);
        Assert.Throws<ZettException>(() => a.Predict(multi.SurfaceForms, multi.Rows, -1));
        Assert.Throws<ZettException>(() => a.Predict(multi.SurfaceForms, multi.Rows,
            multi.Config.NumLangs));
        HypernetFixture mono = Fixture("untied_separate_heads_L16");
        using HypernetPredictor b = Predictor(mono);
        Assert.Throws<ZettException>(() => b.Predict(mono.SurfaceForms, mono.Rows, 0));
    }

    [Fact]
    public void Language_changes_the_prediction()
    {
        HypernetFixture f = Fixture("lang_tied_rescale_bias");
        using HypernetPredictor p = Predictor(f);
        float[] a = p.Predict(f.SurfaceForms, f.Rows, 0).EmbeddingsIn;
        float[] b = p.Predict(f.SurfaceForms, f.Rows, 1).EmbeddingsIn;
        Assert.True(a.Zip(b).Max(x => Math.Abs(x.First - x.Second)) > 1e-2f);
    }

    [Fact]
    public void Source_embeddings_of_the_wrong_width_or_too_few_rows_are_rejected()
    {
        HypernetFixture f = Fixture("untied_separate_heads_L16");
        int d = f.Config.SourceWidth;
        var narrow = new HostTensor("embeddings_in", [f.Config.OriginalVocabSize, f.Config.NEmbd],
            new float[f.Config.OriginalVocabSize * f.Config.NEmbd]);
        Assert.Contains("untied", Assert.Throws<ZettException>(() =>
            new HypernetPredictor(Cpu, f.Weights, narrow, HypernetPrecision.Float32)).Message,
            StringComparison.Ordinal);
        var few = new HostTensor("e", [3, d], new float[3 * d]);
        Assert.Contains("original_vocab_size", Assert.Throws<ZettException>(() =>
            new HypernetPredictor(Cpu, f.Weights, few, HypernetPrecision.Float32)).Message,
            StringComparison.Ordinal);
    }

    [Fact]
    public void Batch_larger_than_max_batch_size_is_rejected_and_empty_batch_is_empty()
    {
        HypernetFixture f = Fixture("single_head_tied_plain");
        using HypernetPredictor p = Predictor(f, batch: 4);
        Assert.Equal(4, p.MaxBatchSize);
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            p.Predict(f.SurfaceForms.AsSpan(0, 5 * f.Config.SurfaceMaxLen), 5, -1));
        Assert.Throws<ArgumentException>(() => p.Predict(f.SurfaceForms.AsSpan(0, 5), 1, -1));
        HypernetOutput empty = p.Predict([], 0, -1);
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
        using HypernetPredictor p = Predictor(f);
        float[] e = p.Predict(ids, 3, -1).EmbeddingsIn;
        int n = f.Config.NEmbd;
        Assert.All(e, v => Assert.True(float.IsFinite(v)));
        Assert.Equal(e.AsSpan(0, n).ToArray(), e.AsSpan(2 * n, n).ToArray());
        Assert.NotEqual(e.AsSpan(0, n).ToArray(), e.AsSpan(n, n).ToArray());
    }

    [Theory]
    [InlineData(HypernetPrecision.Float32)]
    [InlineData(HypernetPrecision.BFloat16)]
    public void Consuming_the_weights_changes_no_bit_and_releases_them(HypernetPrecision precision)
    {
        var o = new TinyOptions(Separate: true);
        var (kept, source) = TinyHypernet.Create(o, 29);
        var (consumed, _) = TinyHypernet.Create(o, 29);
        int[] ids = TinyHypernet.SurfaceForms(o, 19, 4);
        using var reference = new HypernetPredictor(Cpu, kept, source, precision);
        using var releasing = new HypernetPredictor(Cpu, consumed, source, precision,
            consumeWeights: true);
        HypernetOutput a = reference.Predict(ids, 19, 1), b = releasing.Predict(ids, 19, 1);
        Assert.Equal(a.EmbeddingsIn, b.EmbeddingsIn);
        Assert.Equal(a.EmbeddingsOut!, b.EmbeddingsOut!);
        Assert.Equal(a.Bias!, b.Bias!);
        Assert.All(consumed.Tensors.Values, t => Assert.True(t.Released, t.Name));
        Assert.All(kept.Tensors.Values, t => Assert.False(t.Released, t.Name));
        var e = Assert.Throws<InvalidOperationException>(() => consumed.InputProjection.Weight.Data);
        Assert.Contains("input_projection.0.weight", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Bf16_weights_are_stored_as_bf16_and_stay_close_to_fp32()
    {
        var o = new TinyOptions(Separate: true, Lang: false);
        var (weights, source) = TinyHypernet.Create(o, 31);
        int[] ids = CpuPaddingSkipTests.MixedRows(o, 25, seed: 3);
        using var fp32 = new HypernetPredictor(Cpu, weights, source, HypernetPrecision.Float32);
        using var bf16 = new HypernetPredictor(Cpu, weights, source, HypernetPrecision.BFloat16);
        HypernetOutput a = fp32.Predict(ids, 25, -1), b = bf16.Predict(ids, 25, -1);
        double worst = a.EmbeddingsIn.Zip(b.EmbeddingsIn, (x, y) => Math.Abs(x - y) / (1 + Math.Abs(x)))
            .Max();
        // bf16 weights carry 2⁻⁹ relative error each (see CpuHypernetParityTests.Bf16Tolerance);
        // a zero difference would mean the weights were not rounded at all.
        Assert.InRange(worst, 1e-6, CpuHypernetParityTests.Bf16Tolerance);
    }

    [Fact]
    public void Default_batch_follows_the_workspace_bound()
    {
        HypernetConfig mistral = HypernetConfig.Parse("""
            {"n_embd": 4096, "hn_hidden_size": 4096, "hn_intermediate_size": 8192,
             "hn_num_attention_heads": 32, "hn_surface_maxlen": 7, "original_vocab_size": 32000,
             "pad_token_id": 2, "separate_out_embeddings": true,
             "hn_embed_using_source_embeddings": true}
            """, "m.json");
        int rows = HypernetPredictor.DefaultBatchSize(mistral, HypernetPredictor.CpuWorkspaceBytes,
            HypernetPredictor.MaxDefaultBatch);
        Assert.InRange(rows, 2, HypernetPredictor.MaxDefaultBatch - 1);
        Assert.Equal(1, HypernetPredictor.DefaultBatchSize(mistral, 1 << 20, 512));
        Assert.Equal(512, HypernetPredictor.DefaultBatchSize(mistral, 1L << 40, 512));
        // bf16 activations take half the bytes: twice the rows in the same budget.
        int wide = HypernetPredictor.DefaultBatchSize(mistral, 1L << 30, 1 << 20);
        Assert.InRange(HypernetPredictor.DefaultBatchSize(mistral, 1L << 30, 1 << 20, 2),
            2 * wide, (2 * wide) + 1);
    }

    [Fact]
    public void Device_cpu_is_chosen_and_named()
    {
        var (weights, source) = TinyHypernet.Create(new TinyOptions(), 5);
        var log = new List<string>();
        using HypernetPredictor p = HypernetPredictor.Create("cpu", weights, source,
            HypernetPrecision.Float32, 0, log.Add);
        Assert.Equal("cpu", p.Name);
        Assert.StartsWith("backend: cpu (--device cpu)", Assert.Single(log), StringComparison.Ordinal);
        Assert.Contains("--device gpu", Assert.Throws<ZettException>(() => HypernetPredictor.Create(
            "gpu", weights, source, HypernetPrecision.Float32, 0, null)).Message,
            StringComparison.Ordinal);
    }
}
