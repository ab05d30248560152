using ZeTT.Ops;
using ZeTT.Ops.Cpu;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.Models;
using ZeTT.Runtime.Tensors;
using ZeTT.Runtime.Tests.Models;
using ZeTT.Runtime.Tests.Tokenizers;
using ZeTT.Runtime.Tokenizers;
using ZeTT.Runtime.Training;
using ZeTT.Runtime.Transfer;

namespace ZeTT.Runtime.Tests.Training;

/// <summary>The main-stage loss (LM loss through the frozen tiny llama with predicted
/// embeddings, plus the lexical loss) against finite differences in float64.</summary>
public sealed class MainStageTests
{
    private static readonly CpuBackend Cpu = new();

    /// <summary>The batch of the finite-difference tests: ids and their next-token targets.</summary>
    private static readonly int[] Ids = [0, 3, 6, 9, 1, 2, 8, 4, 7, 5, 5, 3];

    private static readonly int[] Targets = [3, 6, 9, 1, 2, -1, 4, 7, -1, 5, 3, -1];

    /// <summary>Surface forms of its 10 target tokens (L 3): 6 single hn ids, then tokens of
    /// two or three ids, the last one ending in <paramref name="a"/>, <paramref name="b"/>.</summary>
    private static int[] SurfaceForms(int a, int b) =>
    [
        5, 2, 2, 17, 2, 2, 40, 2, 2, 95, 2, 2, 1, 2, 2, 60, 2, 2,
        7, 9, 2, 11, 12, 13, 97, 3, 2, a, b, 2,
    ];

    /// <summary>The rescaled weights, the float64 LM of <paramref name="dir"/> and a trainer
    /// over them.</summary>
    private static (LanguageModel Lm, HypernetTrainer Trainer) Build(string dir, HostTensor e,
        HypernetConfig c, Dictionary<string, HostTensor> w)
    {
        HypernetInit.InitInScaler(w, e);
        var lm = LanguageModel.Open(dir, Cpu, DType.F64);
        var settings = new TrainSettings(new LearningRateSchedule(0, 0, 2, 1e-3, 40, 0.1));
        return (lm, new HypernetTrainer(c, w, e, Cpu, settings, DType.F64));
    }

    /// <summary>The llama fixture, its E, and a small hypernetwork config for it (the
    /// fixture is untied: n_embd 32, 96 tokens; hn pad id 2, L 3).</summary>
    private static (string Dir, HostTensor E, HypernetConfig Config) UntiedLlama(
        IReadOnlyList<string>? langs = null)
    {
        string dir = GoldenLogitsTests.FixtureDir("llama");
        using HfModelDirectory model = HfModelDirectory.Open(dir);
        HostTensor e = SourceEmbeddings.ReadStacked(model, withOutput: true);
        HypernetConfig c = HypernetInit.Config(32, untied: true, originalVocab: 96,
            extraTokens: 3, padId: 2, predictBias: false, new HypernetShape(16, 24, 2, 2, 3),
            langs: langs);
        return (dir, e, c);
    }

    [Fact]
    public void Main_step_gradients_match_finite_differences()
    {
        (string dir, HostTensor e, HypernetConfig c) = UntiedLlama();
        Dictionary<string, HostTensor> w = HypernetInit.RandomWeights(c, 5);
        (LanguageModel model, HypernetTrainer built) = Build(dir, e, c, w);
        using LanguageModel lm = model;
        using HypernetTrainer trainer = built;

        // 10 target tokens: 6 single hn ids (they carry the lexical loss), 4 of two or three.
        const int Rows = 10;
        int[] sf = SurfaceForms(30, 31);
        int[] ids = Ids, targets = Targets;
        var batch = new MainBatch(sf, Rows, ids, targets, 2);

        trainer.Gradients.Clear();
        (double loss0, double lm0, double lex0) = trainer.MainLossAndGradients(lm, batch, 0.5);
        Assert.Equal(lm0 + (0.5 * lex0), loss0, 12);
        Assert.True(lex0 > 0 && lm0 > 0, $"lm {lm0}, lexical {lex0}");
        var analytic = trainer.Gradients.Names.ToDictionary(n => n, n => trainer.Gradients.ToDoubles(n));
        const double H = 1e-5;
        int count = 0;
        double largest = 0;
        foreach (string name in trainer.Gradients.Names)
        {
            Span<double> x = trainer.Parameters[name].AsSpan<double>();
            int step = Math.Max(1, x.Length / 3);
            for (int i = name.Length % step; i < x.Length; i += step)
            {
                double saved = x[i];
                x[i] = saved + H;
                double plus = trainer.MainLossAndGradients(lm, batch, 0.5).Loss;
                x[i] = saved - H;
                double minus = trainer.MainLossAndGradients(lm, batch, 0.5).Loss;
                x[i] = saved;
                double fd = (plus - minus) / (2 * H);
                double a = analytic[name][i];
                largest = Math.Max(largest, Math.Abs(fd));
                Assert.True(Math.Abs(a - fd) <= 1e-8 + 1e-5 * Math.Abs(fd),
                    $"{name}[{i}]: backward {a:R}, finite difference {fd:R}");
                count++;
            }
        }
        Assert.True(count > 80, $"{count} elements checked");
        Assert.True(largest > 1e-3, "the sampled gradients are all ≈ 0");
    }

    /// <summary>A hypernetwork with language embeddings (hn_embed_lang_id): the batch's
    /// <see cref="MainBatch.LangIndex"/> row is appended as the last sequence element; its
    /// gradient equals float64 central differences in every element, the other rows get
    /// exactly none, and the loss depends on the row chosen. The identity stage uses row 0
    /// (the reference's langs[0]).</summary>
    [Fact]
    public void Language_embedding_gradients_match_finite_differences()
    {
        (string dir, HostTensor e, HypernetConfig c) = UntiedLlama(["en", "de", "fr"]);
        Assert.True(c.EmbedLangId);
        Assert.Equal(3, c.NumLangs);
        Assert.Equal(4, c.SequenceLength);
        Dictionary<string, HostTensor> w = HypernetInit.RandomWeights(c, 5);
        Assert.Equal([3, 16], w["lang_embeddings.weight"].Shape);
        (LanguageModel model, HypernetTrainer built) = Build(dir, e, c, w);
        using LanguageModel lm = model;
        using HypernetTrainer trainer = built;
        const int Rows = 10;
        int[] sf = SurfaceForms(2, 2);
        int[] ids = Ids, targets = Targets;
        var batch = new MainBatch(sf, Rows, ids, targets, 2) { LangIndex = 2 };

        trainer.Gradients.Clear();
        double loss = trainer.MainLossAndGradients(lm, batch, 0.5).Loss;
        double[] g = trainer.Gradients.ToDoubles("lang_embeddings.weight");
        Assert.All(g[..32], x => Assert.Equal(0.0, x));
        Assert.Contains(g[32..], x => Math.Abs(x) > 1e-4);
        Span<double> lang = trainer.Parameters["lang_embeddings.weight"].AsSpan<double>();
        const double H = 1e-5;
        for (int i = 0; i < lang.Length; i++)
        {
            double saved = lang[i];
            lang[i] = saved + H;
            double plus = trainer.MainLossAndGradients(lm, batch, 0.5).Loss;
            lang[i] = saved - H;
            double minus = trainer.MainLossAndGradients(lm, batch, 0.5).Loss;
            lang[i] = saved;
            double fd = (plus - minus) / (2 * H);
            Assert.True(Math.Abs(g[i] - fd) <= 1e-8 + 1e-5 * Math.Abs(fd),
                $"lang_embeddings.weight[{i}]: backward {g[i]:R}, finite difference {fd:R}");
        }
        double other = trainer.MainLossAndGradients(lm, batch with { LangIndex = 1 }, 0.5).Loss;
        Assert.True(Math.Abs(other - loss) > 1e-9, $"row 1 {other:R}, row 2 {loss:R}");
        Assert.Throws<ZettException>(() => trainer.MainLossAndGradients(lm, batch with
        {
            LangIndex = -1,
        }, 0.5));

        trainer.Gradients.Clear();
        trainer.IdentityLossAndGradients([3, 7, 20]);
        double[] gi = trainer.Gradients.ToDoubles("lang_embeddings.weight");
        Assert.Contains(gi[..16], x => Math.Abs(x) > 1e-6);
        Assert.All(gi[16..], x => Assert.Equal(0.0, x));
    }

    /// <summary>The padded vocabulary (mask), the special-row replacement and, for the masked
    /// LM, the MLM loss with the predicted bias and RoBERTa's pad positions: every trainable
    /// parameter's gradient (sampled elements) against float64 central differences.</summary>
    [Theory]
    [InlineData("llama")]
    [InlineData("xlm-roberta")]
    public void Padded_special_and_masked_lm_gradients_match_finite_differences(string family)
    {
        (HypernetTrainer trainer, LanguageModel lm, MainBatch batch) = Setup(family, DType.F64);
        using (trainer)
        using (lm)
        {
            trainer.Gradients.Clear();
            (double loss0, double lm0, double lex0) = trainer.MainLossAndGradients(lm, batch, 0.5);
            Assert.Equal(lm0 + (0.5 * lex0), loss0, 12);
            Assert.True(lex0 > 0 && lm0 > 0, $"lm {lm0}, lexical {lex0}");
            var analytic = trainer.Gradients.Names.ToDictionary(n => n, n => trainer.Gradients.ToDoubles(n));
            if (family == "xlm-roberta")
            {
                Assert.Contains(analytic["bias_projection.weight"], g => Math.Abs(g) > 1e-4);
            }
            const double H = 1e-5;
            int count = 0;
            double largest = 0;
            foreach (string name in trainer.Gradients.Names)
            {
                Span<double> x = trainer.Parameters[name].AsSpan<double>();
                int step = Math.Max(1, x.Length / 3);
                for (int i = name.Length % step; i < x.Length; i += step)
                {
                    double saved = x[i];
                    x[i] = saved + H;
                    double plus = trainer.MainLossAndGradients(lm, batch, 0.5).Loss;
                    x[i] = saved - H;
                    double minus = trainer.MainLossAndGradients(lm, batch, 0.5).Loss;
                    x[i] = saved;
                    double fd = (plus - minus) / (2 * H);
                    double a = analytic[name][i];
                    largest = Math.Max(largest, Math.Abs(fd));
                    Assert.True(Math.Abs(a - fd) <= 1e-8 + 1e-5 * Math.Abs(fd),
                        $"{name}[{i}]: backward {a:R}, finite difference {fd:R}");
                    count++;
                }
            }
            Assert.True(count > 80, $"{count} elements checked");
            Assert.True(largest > 1e-3, "the sampled gradients are all ≈ 0");
        }
    }

    /// <summary>Masked rows take no probability: the LM loss over a vocabulary padded with
    /// masked rows equals the loss over the real rows alone (the hypernetwork predicts rows
    /// independently); unmasked, the padded rows change it.</summary>
    [Theory]
    [InlineData("llama")]
    [InlineData("xlm-roberta")]
    public void Masked_rows_do_not_change_the_lm_loss(string family)
    {
        (HypernetTrainer trainer, LanguageModel lm, MainBatch batch) = Setup(family, DType.F64);
        using (trainer)
        using (lm)
        {
            int real = batch.Mask!.Count(m => m), l = trainer.Config.SurfaceMaxLen;
            Assert.True(real < batch.Rows);
            MainBatch cut = batch with
            {
                SurfaceForms = batch.SurfaceForms[..(real * l)],
                Rows = real,
                Mask = null,
            };
            double padded = trainer.MainLossAndGradients(lm, batch, 0).LmLoss;
            Assert.Equal(trainer.MainLossAndGradients(lm, cut, 0).LmLoss, padded, 12);
            double unmasked = trainer.MainLossAndGradients(lm, batch with { Mask = null }, 0).LmLoss;
            Assert.True(Math.Abs(unmasked - padded) > 1e-3, $"{unmasked} vs {padded}");
        }
    }

    /// <summary>The special tokens' rows are the base model's: what the hypernetwork would
    /// predict for them (their surface forms) does not change the LM loss; without the
    /// replacement it does. (The predicted bias of a special row is not replaced, as in the
    /// reference; its weights are zeroed here so that only the embeddings are compared.)
    /// </summary>
    [Theory]
    [InlineData("llama")]
    [InlineData("xlm-roberta")]
    public void Special_rows_are_the_base_models_embeddings(string family)
    {
        (HypernetTrainer trainer, LanguageModel lm, MainBatch batch) = Setup(family, DType.F64);
        using (trainer)
        using (lm)
        {
            if (trainer.Parameters.Find("bias_projection.weight") is { } bw)
            {
                bw.AsSpan<double>().Clear();
            }
            int l = trainer.Config.SurfaceMaxLen;
            int[] other = (int[])batch.SurfaceForms.Clone();
            foreach (int id in batch.SpecialIds!)
            {
                other[id * l] = 40 + id;
                other[(id * l) + 1] = 7;
            }
            MainBatch changed = batch with { SurfaceForms = other };
            double a = trainer.MainLossAndGradients(lm, batch, 0).LmLoss;
            Assert.Equal(a, trainer.MainLossAndGradients(lm, changed, 0).LmLoss, 12);
            MainBatch plain = batch with { SpecialIds = null, SpecialIdsInReference = null };
            MainBatch plainChanged = plain with { SurfaceForms = other };
            double b = trainer.MainLossAndGradients(lm, plain, 0).LmLoss;
            double c = trainer.MainLossAndGradients(lm, plainChanged, 0).LmLoss;
            Assert.True(Math.Abs(b - c) > 1e-4 && Math.Abs(a - b) > 1e-4, $"{a} {b} {c}");
        }
    }

    [Fact]
    public void Bad_vocabulary_arguments_are_rejected()
    {
        (HypernetTrainer trainer, LanguageModel lm, MainBatch batch) = Setup("llama", DType.F64);
        using (trainer)
        using (lm)
        {
            Assert.Throws<ArgumentException>(() => trainer.MainLossAndGradients(lm,
                batch with { Mask = new bool[batch.Rows - 1] }, 0.5));
            Assert.Throws<ArgumentException>(() => trainer.MainLossAndGradients(lm,
                batch with { SpecialIdsInReference = [0, 1] }, 0.5));
            Assert.Throws<ArgumentException>(() => trainer.MainLossAndGradients(lm,
                batch with { SpecialIds = [0, 1, 2, batch.Rows] }, 0.5));
            Assert.Throws<ArgumentException>(() => trainer.MainLossAndGradients(lm,
                batch with { SpecialIdsInReference = [0, 1, 2, 96] }, 0.5));
        }
    }

    [Fact]
    public void Roberta_positions_count_non_pad_ids_from_padding_idx()
    {
        int[] ids = [0, 9, 4, 2, 1, 1, 0, 1, 5, 2, 1, 1];
        Assert.Equal([2, 3, 4, 5, 1, 1, 2, 1, 3, 4, 1, 1],
            HypernetTrainer.PaddedPositionRows(ids, 2, 1));
    }

    /// <summary>A trainer, the frozen tiny model and a batch of 2 × 6 ids over 16 rows: 3 of
    /// them masked padding (surface forms zeros), special rows replaced (one of them at a row
    /// whose reference id differs), 10 single-id rows carrying the lexical loss. Causal:
    /// shifted targets; masked (XLM-R): &lt;mask&gt; ids, a random replacement, original ids as
    /// targets and pads (id 1) at the end.</summary>
    private static (HypernetTrainer, LanguageModel, MainBatch) Setup(string family, DType dtype)
    {
        string dir = GoldenLogitsTests.FixtureDir(family);
        bool masked = family != "llama";
        HostTensor e;
        using (HfModelDirectory model = HfModelDirectory.Open(dir))
        {
            e = SourceEmbeddings.ReadStacked(model, withOutput: !masked);
        }
        int pad = masked ? 1 : 2;
        HypernetConfig c = HypernetInit.Config(32, untied: !masked, originalVocab: 96,
            extraTokens: 3, padId: pad, predictBias: masked, new HypernetShape(16, 24, 2, 2, 3));
        Dictionary<string, HostTensor> w = HypernetInit.RandomWeights(c, 5);
        HypernetInit.InitInScaler(w, e);
        if (masked)
        {
            // Zero-initialised biases would leave bias_projection's weight without gradient.
            float[] b = w["bias_projection.bias"].Data;
            b[0] = 0.3f;
        }
        var lm = LanguageModel.Open(dir, Cpu, dtype);
        var settings = new TrainSettings(new LearningRateSchedule(0, 0, 2, 1e-3, 40, 0.1));
        var trainer = new HypernetTrainer(c, w, e, Cpu, settings, dtype);
        const int Rows = 16;
        var sf = new int[Rows * 3];
        int[] special = masked ? [0, 1, 2, 3, 4] : [0, 1, 2, 11];
        int[] inRef = masked ? [0, 1, 2, 3, 95] : [0, 1, 2, 90];
        for (int r = 0; r < 13; r++)
        {
            // Specials: [their hn id, pad, pad]; others: one id, or two or three.
            int[] row = special.Contains(r) ? [inRef[Array.IndexOf(special, r)], pad, pad]
                : r % 4 == 1 ? [10 + r, 20 + r, pad] : r == 9 ? [97, 30, 31] : [5 + (7 * r), pad, pad];
            row.CopyTo(sf, r * 3);
        }
        bool[] mask = [.. Enumerable.Range(0, Rows).Select(r => r < 13)];
        int[] ids, targets;
        if (masked)
        {
            ids = [0, 6, 4, 8, 12, 2, 0, 4, 9, 2, 1, 1];
            targets = [-1, -1, 7, -1, 5, -1, -1, 10, -1, -1, -1, -1];
        }
        else
        {
            ids = [1, 3, 6, 9, 5, 2, 1, 8, 12, 7, 2, 2];
            targets = [3, 6, 9, 5, 2, 2, 8, 12, 7, 2, 2, -1];
        }
        var batch = new MainBatch(sf, Rows, ids, targets, 2)
        {
            Mask = mask,
            SpecialIds = special,
            SpecialIdsInReference = inRef,
        };
        return (trainer, lm, batch);
    }

    [Fact]
    public void Batches_are_encoded_padded_and_shifted_with_the_input_position_mask()
    {
        HfTokenizer gpt2 = HfTokenizer.Load("gpt2");
        string[] texts = ["Once upon a time there was a cat", "Hi"];
        MainBatch b = MainBatch.FromTexts(texts, gpt2, 6, 50256, [], 0);
        int[] a0 = gpt2.Encode(texts[0]).Ids, a1 = gpt2.Encode(texts[1]).Ids;
        Assert.True(a0.Length > 6 && a1.Length == 1);
        Assert.Equal(a0[..6], b.Ids[..6]);
        Assert.Equal([.. a0[1..6], -1], b.Targets[..6]);
        Assert.Equal([a1[0], 50256, 50256, 50256, 50256, 50256], b.Ids[6..]);
        // The first pad after "Hi" is a target; later positions are not.
        Assert.Equal([50256, -1, -1, -1, -1, -1], b.Targets[6..]);
        Assert.Equal(2, b.Batch);
    }

    /// <summary>Hugging Face truncation keeps the post-processor's tokens: RoBERTa's
    /// &lt;s&gt; … &lt;/s&gt; stays whole when the text is longer than the block.</summary>
    [Fact]
    public void Truncation_keeps_the_post_processors_trailing_token()
    {
        HfTokenizer roberta = TokenizerTestData.Load("roberta-base");
        string text = "Once upon a time there was a cat who liked to sit in the sun.";
        int[] full = roberta.Encode(text).Ids;
        Assert.True(full.Length > 8);
        MainBatch b = MainBatch.FromTexts([text, "Hi"], roberta, 8, 1, [], 0);
        Assert.Equal([.. full[..7], 2], b.Ids[..8]);
        int[] hi = [0, .. roberta.Encode("Hi", false).Ids, 2, 1, 1, 1, 1, 1, 1, 1, 1];
        Assert.Equal(hi[..8], b.Ids[8..]);
    }

    /// <summary>DataCollatorForLanguageModeling's masking: 15 % of the non-special ids
    /// selected, of those 80 % &lt;mask&gt;, 10 % a random id, 10 % kept (within 4σ over
    /// ~20 000 ids); specials and pads never selected; targets are the original ids at the
    /// selected positions only; the seed fixes the batch.</summary>
    [Fact]
    public void Masked_batches_mask_fifteen_percent_as_the_collator_does()
    {
        HfTokenizer roberta = TokenizerTestData.Load("roberta-base");
        string text = string.Join(' ', Enumerable.Range(0, 60).Select(i => $"word{i} the cat"));
        string[] texts = [.. Enumerable.Range(0, 160).Select(i => i % 9 == 0 ? "short" : text[(i % 40)..])];
        const int Block = 128, Vocab = 50265;
        MainBatch b = MainBatch.MaskedFromTexts(texts, roberta, Block, [], 0, Vocab, seed: 7);
        MainBatch plain = MainBatch.FromTexts(texts, roberta, Block, 1, [], 0);
        int maskId = roberta.TokenToId("<mask>")!.Value;
        var special = roberta.AllSpecialTokens.Select(t => t.Id).ToHashSet();
        int candidates = 0, selected = 0, masked = 0, kept = 0;
        for (int i = 0; i < b.Ids.Length; i++)
        {
            int original = plain.Ids[i];
            if (special.Contains(original))
            {
                Assert.Equal(-1, b.Targets[i]);
                Assert.Equal(original, b.Ids[i]);
                continue;
            }
            candidates++;
            if (b.Targets[i] < 0)
            {
                Assert.Equal(original, b.Ids[i]);
                continue;
            }
            Assert.Equal(original, b.Targets[i]);
            selected++;
            masked += b.Ids[i] == maskId ? 1 : 0;
            kept += b.Ids[i] == original ? 1 : 0;
        }
        Assert.True(candidates > 15000, $"{candidates} candidates");
        AssertRate(selected, candidates, 0.15, "selected");
        AssertRate(masked, selected, 0.8, "<mask>");
        AssertRate(kept, selected, 0.1 + (0.1 / Vocab), "kept");
        Assert.Equal(b.Ids, MainBatch.MaskedFromTexts(texts, roberta, Block, [], 0, Vocab, 7).Ids);
        Assert.NotEqual(b.Ids, MainBatch.MaskedFromTexts(texts, roberta, Block, [], 0, Vocab, 8).Ids);
        Assert.Throws<ZettException>(() => MainBatch.MaskedFromTexts(texts,
            HfTokenizer.Load("gpt2"), Block, [], 0, 50257, 7));
    }

    private static void AssertRate(int hits, int n, double p, string what)
    {
        double sigma = Math.Sqrt(n * p * (1 - p));
        Assert.True(Math.Abs(hits - (n * p)) <= 4 * sigma,
            $"{what}: {hits} of {n}, expected {n * p:F0} ± {4 * sigma:F0}");
    }

    [Fact]
    public void Special_rows_pair_the_target_and_reference_ids_by_token()
    {
        HfTokenizer roberta = TokenizerTestData.Load("roberta-base");
        (int[] ids, int[] inRef) = MainBatch.SpecialRows(roberta, roberta);
        Assert.Equal(ids, inRef);
        Assert.Contains(roberta.TokenToId("<mask>")!.Value, ids);
        Assert.Throws<ZettException>(() => MainBatch.SpecialRows(roberta, HfTokenizer.Load("gpt2")));
    }

    /// <summary>Main-stage updates (LM + lexical loss, AdamW) on a fixed batch through the
    /// frozen tiny llama lower the loss.</summary>
    [Fact]
    public void Main_stage_training_lowers_the_loss()
    {
        string dir = GoldenLogitsTests.FixtureDir("llama");
        HostTensor e;
        using (HfModelDirectory model = HfModelDirectory.Open(dir))
        {
            e = SourceEmbeddings.ReadStacked(model, withOutput: true);
        }
        HypernetConfig c = HypernetInit.Config(32, untied: true, originalVocab: 96,
            extraTokens: 3, padId: 2, predictBias: false, new HypernetShape(16, 24, 2, 2, 3));
        Dictionary<string, HostTensor> w = HypernetInit.RandomWeights(c, 5);
        HypernetInit.InitInScaler(w, e);
        using var lm = LanguageModel.Open(dir, Cpu, DType.F32);
        var settings = new TrainSettings(new LearningRateSchedule(0, 0, 2, 3e-3, 60, 0.1),
            MaxGradNorm: 1.0);
        using var trainer = new HypernetTrainer(c, w, e, Cpu, settings);
        int[] sf = [.. Enumerable.Range(0, 16).SelectMany(i => new[] { 3 + (5 * i), 2, 2 })];
        int[] ids = [.. Enumerable.Range(0, 32).Select(i => (i * 7) % 16)];
        int[] targets = [.. ids.Skip(1).Append(-1)];
        var batch = new MainBatch(sf, 16, ids, targets, 1);
        var losses = new List<double>();
        for (int s = 0; s < 60; s++)
        {
            trainer.Gradients.Clear();
            losses.Add(trainer.MainLossAndGradients(lm, batch, 0.5).Loss);
            trainer.Update(1);
        }
        Assert.True(losses[^1] < 0.7 * losses[0], $"loss {losses[0]} → {losses[^1]}");
    }
}
