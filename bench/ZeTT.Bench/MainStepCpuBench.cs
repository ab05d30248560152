using System.Text.Json;
using ZeTT.Ops.Cpu;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.Models;
using ZeTT.Runtime.Tensors;
using ZeTT.Runtime.Training;
using ZeTT.Runtime.Transfer;

namespace ZeTT.Bench;

/// <summary>
/// <c>main-step-cpu</c>: one main-stage micro-batch (<see cref="HypernetTrainer.MainLossAndGradients"/>:
/// hypernetwork forward over the whole padded vocabulary, the frozen LM's forward and backward,
/// the head's cross-entropy over all rows, the lexical loss, the hypernetwork's backward) on the
/// CPU backend for the built-in stories260K (the hypernetwork of scripts/train-stories260k.sh:
/// H 64, I 128, 3 layers, L 7), 16 × 128 tokens, for a vocabulary of 4 096 + 128 rows and for
/// the reference's 32 768 + 128. Medians of 3 after a warm-up; target tokens/s.
/// </summary>
internal static class MainStepCpuBench
{
    public static int Run(BenchContext context)
    {
        const string Dir = "assets/stories260K";
        const int Batch = 16, Tokens = 128, L = 7;
        var cpu = new CpuBackend();
        HostTensor e;
        using (HfModelDirectory model = HfModelDirectory.Open(Dir))
        {
            e = SourceEmbeddings.ReadStacked(model, withOutput: false);
        }
        HypernetConfig c = HypernetInit.Config(64, untied: false, originalVocab: 512,
            extraTokens: 0, padId: 0, predictBias: false, new HypernetShape(64, 128, 3, 1, L));
        Dictionary<string, HostTensor> w = HypernetInit.RandomWeights(c, 1);
        HypernetInit.InitInScaler(w, e);
        using var lm = LanguageModel.Open(Dir, cpu);
        var settings = new TrainSettings(new LearningRateSchedule(0, 0, 2, 1e-3, 40, 0.1));
        using var trainer = new HypernetTrainer(c, w, e, cpu, settings);
        var results = new List<object>();
        foreach ((int real, int padded) in new[] { (4096, 4224), (32768, 32896) })
        {
            var rng = new Random(3);
            var sf = new int[padded * L];
            for (int r = 0; r < real; r++)
            {
                int used = 1 + rng.Next(L);
                for (int j = 0; j < L; j++)
                {
                    sf[(r * L) + j] = j < used ? 3 + rng.Next(509) : 0;
                }
            }
            int[] ids = [.. Enumerable.Range(0, Batch * Tokens).Select(_ => rng.Next(real))];
            int[] targets = [.. Enumerable.Range(0, ids.Length)
                .Select(i => i % Tokens == Tokens - 1 ? -1 : ids[i + 1])];
            var batch = new MainBatch(sf, padded, ids, targets, Batch)
            {
                Mask = [.. Enumerable.Range(0, padded).Select(r => r < real)],
                SpecialIds = [0, 1, 2],
                SpecialIdsInReference = [0, 1, 2],
            };
            double loss = 0;
            double s = BenchContext.MedianSeconds(() =>
            {
                trainer.Gradients.Clear();
                loss = trainer.MainLossAndGradients(lm, batch, 0.5).Loss;
            }, repeats: 3);
            long predicted = targets.Count(t => t >= 0);
            Console.WriteLine($"rows {padded} ({real} real), {Batch}×{Tokens} tokens: {s:F3} s, "
                + $"{predicted / s:F0} target tokens/s, loss {loss:F3}");
            results.Add(new
            {
                rows = padded,
                real_rows = real,
                batch = Batch,
                tokens = Tokens,
                median_s = Math.Round(s, 4),
                target_tokens_per_s = Math.Round(predicted / s),
            });
        }
        string path = Path.Combine(context.OutputDirectory, "main-step-cpu.json");
        File.WriteAllText(path, JsonSerializer.Serialize(new
        {
            benchmark = "main-step-cpu",
            model = Dir,
            hypernet = "H 64, I 128, 3 layers, 1 head, L 7",
            machine = $"{Environment.ProcessorCount} logical cores",
            results,
        }, new JsonSerializerOptions { WriteIndented = true }));
        Console.WriteLine($"wrote {path}");
        return 0;
    }
}
