using System.Diagnostics;
using System.Text.Json.Nodes;
using ZeTT.Ops.Cpu;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.IO;
using ZeTT.Runtime.Models;
using ZeTT.Runtime.Tensors;
using ZeTT.Runtime.Tokenizers;
using ZeTT.Runtime.Transfer;

namespace ZeTT.Runtime.Training;

/// <summary>What <c>zett train</c> does.</summary>
public sealed class TrainOptions
{
    /// <summary>The base model (a Hugging Face directory with tokenizer.json).</summary>
    public required string ModelDirectory { get; init; }

    /// <summary>Output directory: the final hypernetwork, checkpoints/step-N, train_log.jsonl.
    /// </summary>
    public required string OutputDirectory { get; init; }

    /// <summary>Updates to run (the schedule's length), at most.</summary>
    public int Steps { get; init; } = 1000;

    /// <summary>Wall-clock budget in minutes (0: none): the schedule is laid out for the
    /// updates that fit, measured on the first micro-batches.</summary>
    public double MaxMinutes { get; init; }

    /// <summary>Peak learning rate of the identity ramp (3e-4 in the reference).</summary>
    public double LearningRate { get; init; } = 3e-4;

    /// <summary>Tokens per identity micro-batch.</summary>
    public int IdentityBatch { get; init; } = 16384;

    /// <summary>Micro-batches per update.</summary>
    public int Accumulation { get; init; } = 1;

    /// <summary>Global-norm clip of the hypernetwork's gradients.</summary>
    public double MaxGradNorm { get; init; } = 0.1;

    /// <summary>Seed of the initialisation and the batches.</summary>
    public int Seed { get; init; }

    /// <summary>Checkpoint every this many updates (0: only at the end).</summary>
    public int SaveEvery { get; init; }

    /// <summary>Log every this many updates.</summary>
    public int LogEvery { get; init; } = 10;

    /// <summary>A checkpoint directory (checkpoints/step-N) to continue from.</summary>
    public string? Resume { get; init; }

    /// <summary>Hypernetwork sizes (zeros: the reference's defaults for the model).</summary>
    public HypernetShape Shape { get; init; } = new();
}

/// <summary>The outcome of a run.</summary>
/// <param name="Steps">Updates done in total (with the resumed ones).</param>
/// <param name="FirstLoss">Loss of the run's first update.</param>
/// <param name="LastLoss">Loss of its last update.</param>
/// <param name="TokensPerSecond">Target tokens per second over the run.</param>
/// <param name="Seconds">Wall time of the updates.</param>
public sealed record TrainResult(long Steps, double FirstLoss, double LastLoss,
    double TokensPerSecond, double Seconds);

/// <summary>
/// <c>zett train</c>: a new hypernetwork for a base model, trained on the CPU op backend. The
/// identity stage (TRAINING.md §7.1) is what runs today: the network learns to reproduce the
/// model's own embeddings from single-token surface forms, which is the reference's first
/// 10 000 steps and what every later stage starts from.
/// </summary>
public static class HypernetTraining
{
    private static string Inv(FormattableString text) => FormattableString.Invariant(text);

    /// <summary>Runs training; <paramref name="log"/> gets progress lines.</summary>
    public static TrainResult Run(TrainOptions o, Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(o);
        log ??= _ => { };
        if (o.Steps < 1)
        {
            throw new ZettException($"--steps {o.Steps}: at least one update is needed");
        }
        OutputTarget.RequireApart(o.OutputDirectory, [o.ModelDirectory]);
        if (File.Exists(o.OutputDirectory))
        {
            throw new ZettException($"{o.OutputDirectory}: is a file, not an output directory");
        }
        using HfModelDirectory model = HfModelDirectory.Open(o.ModelDirectory);
        // The architecture check names an unsupported family before any work.
        LmArchitecture.FromConfig(model);
        string tokPath = Path.Combine(model.Directory, "tokenizer.json");
        if (!File.Exists(tokPath))
        {
            throw new ZettException($"{tokPath}: file not found (the hypernetwork's tokenizer is "
                + "the model's own, converted to byte level)");
        }
        HfTokenizer baseTok = HfTokenizer.Load(model.Directory);
        HfTokenizer hn = ByteLevelConverter.Convert(baseTok, matchSpecialTokensTo: baseTok);
        int v0 = baseTok.VocabSize;
        if (model.VocabSize < v0)
        {
            throw new ZettException($"{model.ConfigPath}: the model has {model.VocabSize} "
                + $"embedding rows but its tokenizer {v0} tokens");
        }
        bool untied = model.OutputEmbeddingName is not null && !model.TieWordEmbeddings;
        HostTensor e = SourceEmbeddings.ReadStacked(model, untied);
        using var cpu = new CpuBackend();

        HypernetConfig config;
        Dictionary<string, HostTensor> weights;
        if (o.Resume is not null)
        {
            config = HypernetConfig.Load(o.Resume);
            weights = TrainingCheckpoint.ReadParameters(o.Resume);
        }
        else
        {
            int pad = hn.PadTokenId ?? hn.EosTokenId ?? 0;
            config = HypernetInit.Config(model.HiddenSize, untied, v0, hn.VocabSize - v0, pad,
                predictBias: model.OutputBiasName is not null, o.Shape);
            weights = HypernetInit.RandomWeights(config, o.Seed);
            HypernetInit.InitInScaler(weights, e);
            int anchors = Math.Min(HypernetInit.Anchors, v0);
            var tokens = new string[anchors];
            for (int id = 0; id < anchors; id++)
            {
                tokens[id] = hn.TryIdToToken(id) ?? "";
            }
            SurfaceFormMatrix sf = SurfaceFormMatrix.BuildForTokens(tokens, hn,
                config.SurfaceMaxLen);
            HypernetInit.InitOutputScalers(config, weights, e, sf.Ids, cpu);
        }
        log(Inv($"hypernetwork for {model.Directory}: H {config.HiddenSize}, I ")
            + Inv($"{config.IntermediateSize}, {config.NumLayers} layers, {config.NumAttentionHeads} ")
            + Inv($"heads, L {config.SurfaceMaxLen}, {v0} + {config.NumExtraTokens} tokens, ")
            + (untied ? "untied" : "tied"));

        var provisional = new LearningRateSchedule(o.Steps, o.LearningRate, 0, o.LearningRate,
            o.Steps, 1);
        var settings = new TrainSettings(provisional, o.IdentityBatch, o.Accumulation,
            o.MaxGradNorm, Seed: o.Seed);
        using var trainer = new HypernetTrainer(config, weights, e, cpu, settings);
        if (o.Resume is not null)
        {
            TrainingCheckpoint.RestoreOptimizer(o.Resume, trainer);
        }
        long total = o.Steps;
        if (o.MaxMinutes > 0)
        {
            // Probe two micro-batches (no update) to size the schedule to the budget.
            var probe = Stopwatch.StartNew();
            for (int k = 0; k < 2; k++)
            {
                trainer.IdentityLossAndGradients(trainer.IdentityIds(k));
            }
            double perStep = probe.Elapsed.TotalSeconds / 2 * o.Accumulation * 1.05;
            total = Math.Clamp((long)(o.MaxMinutes * 60 / perStep), trainer.Step + 1, o.Steps);
            log(Inv($"budget {o.MaxMinutes} min at {perStep:F3} s/update: {total} updates"));
        }
        trainer.Settings = settings with
        {
            Schedule = new LearningRateSchedule(total, o.LearningRate, 0, o.LearningRate, total, 1),
        };
        HypernetTrainer run = trainer;
        Directory.CreateDirectory(o.OutputDirectory);
        string logPath = Path.Combine(o.OutputDirectory, "train_log.jsonl");
        using var logFile = new StreamWriter(logPath, append: o.Resume is not null);
        var clock = Stopwatch.StartNew();
        double first = double.NaN, last = double.NaN;
        long tokensSeen = 0;
        double sample = 0, hnTime = 0, opt = 0;
        while (run.Step < total)
        {
            StepReport r = run.IdentityStep();
            if (double.IsNaN(first))
            {
                first = r.Loss;
            }
            last = r.Loss;
            tokensSeen += r.Tokens;
            sample += r.SampleSeconds;
            hnTime += r.HypernetSeconds;
            opt += r.OptimizerSeconds;
            var line = new JsonObject
            {
                ["step"] = r.Step,
                ["stage"] = "identity",
                ["loss"] = r.Loss,
                ["grad_norm"] = r.GradNorm,
                ["lr"] = r.LearningRate,
                ["tokens"] = r.Tokens,
                ["sample_s"] = r.SampleSeconds,
                ["hypernet_s"] = r.HypernetSeconds,
                ["lm_s"] = r.LmSeconds,
                ["optimizer_s"] = r.OptimizerSeconds,
            };
            logFile.WriteLine(line.ToJsonString());
            if (run.Step % Math.Max(1, o.LogEvery) == 0 || run.Step == total)
            {
                logFile.Flush();
                double s = clock.Elapsed.TotalSeconds;
                log(Inv($"step {run.Step}/{total}  loss {r.Loss:F5}  |g| {r.GradNorm:G3}  lr ")
                    + Inv($"{r.LearningRate:G3}  {tokensSeen / s:F0} tok/s  (sample {sample:F1}s, ")
                    + Inv($"hypernet {hnTime:F1}s, optimizer {opt:F1}s)"));
            }
            if (o.SaveEvery > 0 && run.Step % o.SaveEvery == 0 && run.Step < total)
            {
                TrainingCheckpoint.Save(Path.Combine(o.OutputDirectory, "checkpoints",
                    $"step-{run.Step}"), run, hn);
            }
        }
        double seconds = clock.Elapsed.TotalSeconds;
        TrainingCheckpoint.Save(Path.Combine(o.OutputDirectory, "checkpoints", $"step-{run.Step}"),
            run, hn);
        TrainingCheckpoint.SaveFiles(o.OutputDirectory, run, hn);
        return new TrainResult(run.Step, first, last, tokensSeen / Math.Max(seconds, 1e-9),
            seconds);
    }
}
