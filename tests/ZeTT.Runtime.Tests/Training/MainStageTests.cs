using ZeTT.Ops;
using ZeTT.Ops.Cpu;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.Models;
using ZeTT.Runtime.Tensors;
using ZeTT.Runtime.Tests.Models;
using ZeTT.Runtime.Tokenizers;
using ZeTT.Runtime.Training;
using ZeTT.Runtime.Transfer;

namespace ZeTT.Runtime.Tests.Training;

/// <summary>The main-stage loss (LM loss through the frozen tiny llama with predicted
/// embeddings, plus the lexical loss) against finite differences in float64.</summary>
public sealed class MainStageTests
{
    private static readonly CpuBackend Cpu = new();

    [Fact]
    public void Main_step_gradients_match_finite_differences()
    {
        string dir = GoldenLogitsTests.FixtureDir("llama");
        HostTensor e;
        using (HfModelDirectory model = HfModelDirectory.Open(dir))
        {
            e = SourceEmbeddings.ReadStacked(model, withOutput: true);
        }
        // The fixture is untied: n_embd 32, 96 tokens; hn pad id 2, L 3.
        HypernetConfig c = HypernetInit.Config(32, untied: true, originalVocab: 96,
            extraTokens: 3, padId: 2, predictBias: false, new HypernetShape(16, 24, 2, 2, 3));
        Dictionary<string, HostTensor> w = HypernetInit.RandomWeights(c, 5);
        HypernetInit.InitInScaler(w, e);
        using var lm = LanguageModel.Open(dir, Cpu, DType.F64);
        var settings = new TrainSettings(new LearningRateSchedule(0, 0, 2, 1e-3, 40, 0.1));
        using var trainer = new HypernetTrainer(c, w, e, Cpu, settings, DType.F64);

        // 10 target tokens: 6 single hn ids (they carry the lexical loss), 4 of two or three.
        const int Rows = 10;
        int[] sf =
        [
            5, 2, 2, 17, 2, 2, 40, 2, 2, 95, 2, 2, 1, 2, 2, 60, 2, 2,
            7, 9, 2, 11, 12, 13, 97, 3, 2, 30, 31, 2,
        ];
        int[] ids = [0, 3, 6, 9, 1, 2, 8, 4, 7, 5, 5, 3];
        int[] targets = [3, 6, 9, 1, 2, -1, 4, 7, -1, 5, 3, -1];
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
