using ZeTT.Ops;
using ZeTT.Ops.Cpu;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Models;

namespace ZeTT.Runtime.Tests.Models;

/// <summary>
/// The language models' backward pass against central finite differences in float64 (the CPU
/// backend's F64 path, weights widened): ∂loss/∂(input embedding rows) and
/// ∂loss/∂(output embeddings) of loss = Σ r · cross-entropy over the tiny golden models of each
/// block arrangement (pre-norm, parallel residual, post-norm encoder with its masked-LM head).
/// </summary>
public class LmBackwardTests
{
    public static TheoryData<string> Families() =>
        ["llama", "mistral", "qwen2", "gemma", "gpt2", "gpt_neox", "roberta"];

    [Theory]
    [MemberData(nameof(Families))]
    public void Gradients_into_the_embeddings_match_finite_differences(string family)
    {
        using LanguageModel model = Open(family, trainable: false, out int[] ids);
        IOpBackend ops = model.Ops;
        int n = ids.Length, d = model.Architecture.Hidden, v = model.Architecture.Vocab;
        using Tensor idT = Tensor.FromInts(ids);
        using Tensor rows0 = ops.Empty(DType.F64, [n, d]);
        ops.EmbeddingForward(model.InputEmbeddings, idT, rows0);
        double[] rows = rows0.ToDoubles();
        double[] head = model.OutputEmbeddings.ToDoubles();
        int[] targets = ids.Skip(1).Append(-1).ToArray();
        targets[3] = -1;
        var rng = new Random(11);
        double[] r = Enumerable.Range(0, n).Select(_ => rng.NextDouble() + 0.5).ToArray();

        double Loss()
        {
            using Tensor x = Tensor.FromDoubles(rows, n, d);
            using Tensor w = Tensor.FromDoubles(head, v, d);
            using Tensor hidden = model.ForwardFromEmbeddings(x, 1);
            using Tensor hi = model.HeadInput(hidden);
            using Tensor losses = model.TokenLosses(hi, targets, w);
            return losses.ToDoubles().Select((l, i) => l * r[i]).Sum();
        }

        using Tensor xT = Tensor.FromDoubles(rows, n, d);
        using Tensor wT = Tensor.FromDoubles(head, v, d);
        using var tape = new ForwardTape();
        using var headTape = new HeadTape();
        using Tensor hidden0 = model.ForwardFromEmbeddings(xT, 1, tape: tape);
        using Tensor hi0 = model.HeadInput(hidden0, headTape);
        using Tensor lse = ops.Empty(DType.F64, [n]);
        using Tensor losses0 = model.TokenLosses(hi0, targets, wT, lse);
        using Tensor dLosses = Tensor.FromDoubles(r, n);
        using Tensor dW = ops.Zeros(DType.F64, [v, d]);
        using Tensor dHead = model.TokenLossesBackward(hi0, targets, lse, dLosses, dW, wT);
        using Tensor dHidden = model.HeadInputBackward(headTape, dHead);
        using Tensor dRows = model.Backward(tape, dHidden);
        Assert.Equal(Loss(), losses0.ToDoubles().Select((l, i) => l * r[i]).Sum(), 12);
        Check("d rows", rows, Loss, dRows.ToDoubles());
        Check("d output embeddings", head, Loss, dW.ToDoubles());
    }

    /// <summary>
    /// Backbone training: ∂loss/∂weight of every trainable weight (all but the embeddings:
    /// projections and their biases, norms, learned positions and token types, the masked-LM
    /// head's dense and norm) against central differences, 4 spread entries per tensor, in
    /// float64; each tensor's gradient must be nonzero somewhere (but a key bias without
    /// rotary positions, whose gradient is exactly zero).
    /// </summary>
    [Theory]
    [MemberData(nameof(Families))]
    public void Weight_gradients_match_finite_differences(string family)
    {
        using LanguageModel model = Open(family, trainable: true, out int[] ids);
        IOpBackend ops = model.Ops;
        int n = ids.Length;
        int[] targets = ids.Skip(1).Append(-1).ToArray();
        var rng = new Random(5);
        double[] r = Enumerable.Range(0, n).Select(_ => rng.NextDouble() + 0.5).ToArray();
        using Tensor idT = Tensor.FromInts(ids);
        IReadOnlyList<TrainableWeight> weights = model.TrainableWeights;
        Assert.NotEmpty(weights);
        Assert.DoesNotContain(weights, w => ReferenceEquals(w.Weight, model.InputEmbeddings)
            || ReferenceEquals(w.Weight, model.OutputEmbeddings));
        var grads = weights.ToDictionary(w => w.Name, w => ops.Zeros(DType.F64, w.Weight.Shape, w.Name));
        try
        {
            double Loss(ForwardTape? tape, HeadTape? headTape, Tensor? lse)
            {
                using Tensor x = ops.Empty(DType.F64, [n, model.Architecture.Hidden]);
                ops.EmbeddingForward(model.InputEmbeddings, idT, x);
                Tensor hidden = model.ForwardFromEmbeddings(x, 1, tape: tape);
                Tensor hi = model.HeadInput(hidden, headTape);
                using Tensor losses = model.TokenLosses(hi, targets, null, lse);
                double sum = losses.ToDoubles().Select((l, i) => l * r[i]).Sum();
                if (tape is null)
                {
                    hidden.Dispose();
                    hi.Dispose();
                    return sum;
                }
                using Tensor dLosses = Tensor.FromDoubles(r, n);
                using Tensor dHead = model.TokenLossesBackward(hi, targets, lse!, dLosses);
                using Tensor dHidden = model.HeadInputBackward(headTape!, dHead);
                using Tensor dRows = model.Backward(tape, dHidden);
                hidden.Dispose();
                hi.Dispose();
                return sum;
            }

            model.AccumulateWeightGradients(grads);
            using (var tape = new ForwardTape())
            using (var headTape = new HeadTape())
            using (Tensor lse = ops.Empty(DType.F64, [n]))
            {
                Loss(tape, headTape, lse);
            }
            model.AccumulateWeightGradients(null);
            const double H = 1e-6;
            foreach (TrainableWeight w in weights)
            {
                double[] analytic = grads[w.Name].ToDoubles();
                // Without rotary positions a key bias adds q·b to every score of a query: the
                // softmax does not see it, its gradient is exactly 0.
                bool invariant = w.Name.EndsWith("attention.self.key.bias", StringComparison.Ordinal);
                Assert.True(invariant || analytic.Any(g => Math.Abs(g) > 1e-6),
                    $"{family} {w.Name}: gradient ≈ 0");
                int step = Math.Max(1, analytic.Length / 4);
                for (int i = step / 2; i < analytic.Length; i += step)
                {
                    double saved = w.Weight.AsSpan<double>()[i];
                    w.Weight.AsSpan<double>()[i] = saved + H;
                    double plus = Loss(null, null, null);
                    w.Weight.AsSpan<double>()[i] = saved - H;
                    double minus = Loss(null, null, null);
                    w.Weight.AsSpan<double>()[i] = saved;
                    double fd = (plus - minus) / (2 * H);
                    Assert.True(Math.Abs(analytic[i] - fd) <= 1e-7 + 1e-5 * Math.Abs(fd),
                        $"{family} {w.Name}[{i}]: backward {analytic[i]:R}, finite difference {fd:R}");
                }
            }
        }
        finally
        {
            foreach (Tensor g in grads.Values)
            {
                g.Dispose();
            }
        }
    }

    /// <summary>AdamW's decay mask over a trainable backbone (decay_mask_fn): no decay for
    /// biases and normalisation weights, decay for projections and learned tables.</summary>
    [Theory]
    [InlineData("llama", "model.layers.0.self_attn.q_proj.weight", "model.norm.weight")]
    [InlineData("gemma", "model.layers.0.mlp.down_proj.weight", "model.layers.0.input_layernorm.weight")]
    [InlineData("gpt2", "transformer.wpe.weight", "transformer.h.0.ln_2.weight")]
    [InlineData("gpt_neox", "gpt_neox.layers.0.attention.query_key_value.weight", "gpt_neox.final_layer_norm.weight")]
    [InlineData("roberta", "roberta.embeddings.position_embeddings.weight", "roberta.embeddings.LayerNorm.weight")]
    [InlineData("roberta", "lm_head.dense.weight", "lm_head.layer_norm.weight")]
    public void Biases_and_norms_are_not_decayed(string family, string decayed, string norm)
    {
        using LanguageModel model = Open(family, trainable: true, out _);
        var byName = model.TrainableWeights.ToDictionary(w => w.Name);
        Assert.True(byName[decayed].Decayed, decayed);
        Assert.False(byName[norm].Decayed, norm);
        Assert.All(model.TrainableWeights.Where(w => w.Name.EndsWith(".bias", StringComparison.Ordinal)),
            w => Assert.False(w.Decayed, w.Name));
        Assert.All(model.TrainableWeights.Where(w => w.Weight.Rank == 2), w => Assert.True(w.Decayed, w.Name));
    }

    /// <summary>The family's tiny golden model on the CPU's float64 path and its golden input
    /// ids.</summary>
    private static LanguageModel Open(string family, bool trainable, out int[] ids)
    {
        string dir = GoldenLogitsTests.FixtureDir(family);
        using (SafetensorsFile golden = SafetensorsFile.Open(Path.Combine(dir, "golden.safetensors")))
        {
            ids = golden.ReadInt32("input_ids", out _);
        }
        return LanguageModel.Open(dir, new CpuBackend(), DType.F64, trainable);
    }

    /// <summary>h = 1e-6 central differences; |a − fd| ≤ 1e-7 + 1e-5·|fd| at 40 spread
    /// entries (the model composes ~40 ops, each exact to float64 rounding).</summary>
    private static void Check(string name, double[] x, Func<double> loss, double[] analytic)
    {
        const double H = 1e-6;
        int step = Math.Max(1, x.Length / 40);
        double largest = 0;
        for (int i = 0; i < x.Length; i += step)
        {
            double saved = x[i];
            x[i] = saved + H;
            double plus = loss();
            x[i] = saved - H;
            double minus = loss();
            x[i] = saved;
            double fd = (plus - minus) / (2 * H);
            largest = Math.Max(largest, Math.Abs(fd));
            Assert.True(Math.Abs(analytic[i] - fd) <= 1e-7 + 1e-5 * Math.Abs(fd),
                $"{name}[{i}]: backward {analytic[i]:R}, finite difference {fd:R}");
        }
        Assert.True(largest > 1e-4, $"{name}: the sampled gradients are all ≈ 0");
    }
}
