using System.Text.Json.Nodes;
using ZeTT.Ops;
using ZeTT.Ops.Cpu;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Models;
using ZeTT.Runtime.Tests.Hypernetwork;
using ZeTT.Runtime.Training;

namespace ZeTT.Runtime.Tests.Training;

/// <summary>n-shot continued training (TRAINING.md §12.2) on stories260K: the backbone trained
/// with the hypernetwork from a trained hypernetwork (<c>--init-from</c>), the lexical loss
/// towards the initial predictions, the written models (<c>full_model/</c>, <c>model/</c>),
/// bit-identical resume and the refusals.</summary>
public sealed class BackboneTrainingTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zett-backbone-").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    private static string Repo(string relative) => Path.Combine(HypernetFixture.RepoRoot, relative);

    private static readonly string Stories = Repo("assets/stories260K");

    private static readonly string Text = Repo("tests/fixtures/lm/eval/tinystories-dev-25.jsonl");

    /// <summary>A hypernetwork trained for stories260K (a few updates of both stages), made once
    /// per test.</summary>
    private string Trained()
    {
        string dir = Path.Combine(_dir, "trained");
        if (!Directory.Exists(dir))
        {
            HypernetTraining.Run(new TrainOptions
            {
                ModelDirectory = Stories,
                OutputDirectory = dir,
                Data = [new TextSource(Text, 1)],
                TrainTokenizers = ["gpt2"],
                VocabularySubsample = 256,
                Steps = 4,
                IdentitySteps = 2,
                IdentityBatch = 64,
                BatchSize = 2,
                BlockSize = 24,
                LearningRate = 1e-3,
                MainLearningRate = 1e-3,
                WarmupSteps = 1,
                Seed = 4,
                Shape = new HypernetShape(0, 0, 1, 0, 7),
            });
        }
        return dir;
    }

    /// <summary>The n-shot run's options: the base model's own tokenizer as the fixed target
    /// (512 rows, no subsample), constant learning rate (warm-up 0, alpha 1).</summary>
    private TrainOptions NShot(string outDir, int steps, double lr = 1e-3, string? resume = null,
        bool validate = false) => new()
        {
            ModelDirectory = Stories,
            OutputDirectory = outDir,
            Data = [new TextSource(Text, 1)],
            TrainTokenizers = [Stories],
            Steps = steps,
            BatchSize = 2,
            BlockSize = 24,
            MainLearningRate = lr,
            WarmupSteps = 0,
            Alpha = 1,
            Seed = 7,
            SaveEvery = 3,
            InitFrom = resume is null ? Trained() : null,
            Resume = resume,
            BackboneTraining = true,
            LexicalLossToInit = true,
            ValidTokenizer = validate ? Stories : null,
            ValidData = validate ? [new ValidSet(Text)] : [],
            ValidEvery = 2,
        };

    private static Dictionary<string, double[]> Tensors(string path)
    {
        using SafetensorsFile f = SafetensorsFile.Open(path);
        return f.Tensors.ToDictionary(t => t.Name, t => f.ReadFloat32(t.Name).Data.Select(x => (double)x).ToArray());
    }

    [Fact]
    public void The_backbone_trains_with_the_hypernetwork_and_the_models_are_written()
    {
        string outDir = Path.Combine(_dir, "nshot");
        var lines = new List<string>();
        TrainResult r = HypernetTraining.Run(NShot(outDir, 4, validate: true), lines.Add);
        Assert.Equal(4, r.Steps);
        Assert.Contains(lines, l => l.StartsWith("backbone trained too: ", StringComparison.Ordinal));
        JsonNode[] log = [.. File.ReadAllLines(Path.Combine(outDir, "train_log.jsonl"))
            .Select(l => JsonNode.Parse(l)!)];
        JsonNode[] main = [.. log.Where(l => (string)l["stage"]! == "main")];
        // No identity stage; a constant learning rate from the first update.
        Assert.Equal(4, main.Length);
        Assert.DoesNotContain(log, l => (string)l["stage"]! == "identity");
        Assert.All(main, m => Assert.Equal(1e-3, (double)m["lr"]!, 15));
        // The lexical targets are the first batch's predictions: the distance is exactly 0 at
        // the start and grows as the hypernetwork moves.
        Assert.Equal(0.0, (double)main[0]["lexical_loss"]!);
        Assert.True((double)main[^1]["lexical_loss"]! > 0);
        Assert.True((double)main[^1]["lm_loss"]! < (double)main[0]["lm_loss"]!,
            $"lm loss {main[0]["lm_loss"]} → {main[^1]["lm_loss"]}");

        // full_model: the base model with the new backbone (fp32), its embeddings unchanged.
        string full = Path.Combine(outDir, "full_model");
        Dictionary<string, double[]> before = Tensors(Path.Combine(Stories, "model.safetensors"));
        Dictionary<string, double[]> after = Tensors(Path.Combine(full, "model.safetensors"));
        Assert.Equal(before.Keys.Order(), after.Keys.Order());
        using (var lm = LanguageModel.Open(Stories, new CpuBackend(), trainable: true))
        {
            var trainable = lm.TrainableWeights.Select(w => w.Name).ToHashSet();
            Assert.Equal(before.Count - 1, trainable.Count);   // all but the tied embeddings
            foreach ((string name, double[] values) in before)
            {
                if (trainable.Contains(name))
                {
                    Assert.False(values.SequenceEqual(after[name]), $"{name} did not change");
                }
                else
                {
                    Assert.Equal(values, after[name]);
                }
            }
        }
        using (SafetensorsFile f = SafetensorsFile.Open(Path.Combine(full, "model.safetensors")))
        {
            Assert.All(f.Tensors, t => Assert.Equal(DType.F32, t.DType));
        }
        Assert.Equal(File.ReadAllText(Path.Combine(Stories, "tokenizer.json")),
            File.ReadAllText(Path.Combine(full, "tokenizer.json")));
        // The last validation scored the model the run writes to model/ (the same hypernetwork
        // on the same backbone under the validation tokenizer).
        string made = Path.Combine(outDir, "model");
        LmEvalResult eval = LmEvaluation.Run([made], EvalText.Read([Text], null), null, 0,
            new CpuBackend())[0];
        Assert.Equal(r.ValidBitsPerByte!.Value, eval.BitsPerByte, 9);
        Assert.False(Directory.EnumerateDirectories(outDir, ".validation*").Any());
    }

    /// <summary>At learning rate 0 the backbone stays the base model's, bit for bit (AdamW's
    /// update and its decay are both scaled by the rate), through the fp32 masters and the
    /// writer.</summary>
    [Fact]
    public void At_learning_rate_zero_the_backbone_is_the_base_models()
    {
        string outDir = Path.Combine(_dir, "frozen");
        HypernetTraining.Run(NShot(outDir, 2, lr: 0));
        Assert.Equal(Tensors(Path.Combine(Stories, "model.safetensors")),
            Tensors(Path.Combine(outDir, "full_model", "model.safetensors")));
    }

    [Fact]
    public void A_resumed_backbone_run_continues_bit_identically()
    {
        string straight = Path.Combine(_dir, "straight");
        string split = Path.Combine(_dir, "split");
        HypernetTraining.Run(NShot(straight, 5));
        HypernetTraining.Run(NShot(split, 5, resume: Path.Combine(straight, "checkpoints", "step-3")));
        MainTrainingTests.AssertSameState(straight, split);
        foreach (string f in new[]
        {
            TrainingCheckpoint.BackboneFile, TrainingCheckpoint.BackboneOptimizerFile,
            TrainingCheckpoint.LexicalTargetsFile,
        })
        {
            Assert.Equal(File.ReadAllBytes(Path.Combine(straight, "checkpoints", "step-5", f)),
                File.ReadAllBytes(Path.Combine(split, "checkpoints", "step-5", f)));
        }
        Assert.Equal(File.ReadAllBytes(Path.Combine(straight, "full_model", "model.safetensors")),
            File.ReadAllBytes(Path.Combine(split, "full_model", "model.safetensors")));
    }

    [Fact]
    public void Conflicting_options_and_mismatched_checkpoints_are_refused()
    {
        string outDir = Path.Combine(_dir, "refused");
        string Refused(TrainOptions o) =>
            Assert.Throws<ZettException>(() => HypernetTraining.Run(o)).Message;
        TrainOptions o = NShot(outDir, 2);
        Assert.Contains("needs training text", Refused(new TrainOptions
        {
            ModelDirectory = Stories,
            OutputDirectory = outDir,
            BackboneTraining = true,
        }), StringComparison.Ordinal);
        Assert.Contains("--identity-steps 2", Refused(CopyWith(o, identitySteps: 2)), StringComparison.Ordinal);
        Assert.Contains("exactly one --train-tokenizer", Refused(CopyWith(o, subsample: 64)), StringComparison.Ordinal);
        Assert.Contains("exactly one --train-tokenizer",
            Refused(CopyWith(o, tokenizers: [Stories, "gpt2"])), StringComparison.Ordinal);
        Assert.Contains("--learning-rate-alpha 1.5", Refused(CopyWith(o, alpha: 1.5)), StringComparison.Ordinal);
        Assert.False(Directory.Exists(outDir));

        // A checkpoint with a backbone is resumed with one, and only with one.
        string run = Path.Combine(_dir, "run");
        HypernetTraining.Run(NShot(run, 3));
        string step = Path.Combine(run, "checkpoints", "step-3");
        TrainOptions resumed = NShot(Path.Combine(_dir, "resumed"), 4, resume: step);
        Assert.Contains("resume with --backbone-training full",
            Refused(CopyWith(resumed, backbone: false, lexical: false)), StringComparison.Ordinal);
        Assert.Contains("resume with --lexical-loss-to-init",
            Refused(CopyWith(resumed, lexical: false)), StringComparison.Ordinal);
    }

    private static TrainOptions CopyWith(TrainOptions o, int? identitySteps = null,
        int? subsample = null, string[]? tokenizers = null, double? alpha = null,
        bool? backbone = null, bool? lexical = null) => new()
        {
            ModelDirectory = o.ModelDirectory,
            OutputDirectory = o.OutputDirectory,
            Data = o.Data,
            TrainTokenizers = tokenizers ?? o.TrainTokenizers,
            VocabularySubsample = subsample ?? o.VocabularySubsample,
            Steps = o.Steps,
            IdentitySteps = identitySteps ?? o.IdentitySteps,
            BatchSize = o.BatchSize,
            BlockSize = o.BlockSize,
            MainLearningRate = o.MainLearningRate,
            WarmupSteps = o.WarmupSteps,
            Alpha = alpha ?? o.Alpha,
            Seed = o.Seed,
            SaveEvery = o.SaveEvery,
            InitFrom = o.InitFrom,
            Resume = o.Resume,
            BackboneTraining = backbone ?? o.BackboneTraining,
            LexicalLossToInit = lexical ?? o.LexicalLossToInit,
        };
}
