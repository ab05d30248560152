using System.Text.Json.Nodes;
using ZeTT.Kernels;
using ZeTT.Ops.Cpu;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.Models;
using ZeTT.Runtime.Tensors;
using ZeTT.Runtime.Tests.Hypernetwork;
using ZeTT.Runtime.Tests.Models;
using ZeTT.Runtime.Tokenizers;
using ZeTT.Runtime.Training;
using ZeTT.Runtime.Transfer;

namespace ZeTT.Runtime.Tests.Training;

/// <summary>The main stage wired into training: the per-batch vocabulary, the step's time split
/// and NaN stop, and whole runs of both stages on stories260K (log, validation, checkpoints,
/// loss curve, bit-identical resume).</summary>
public sealed class MainTrainingTests : IDisposable
{
    private static readonly CpuBackend Cpu = new();
    private readonly string _dir = Directory.CreateTempSubdirectory("zett-maintrain-").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    private static string Repo(string relative) => Path.Combine(HypernetFixture.RepoRoot, relative);

    private static readonly string[] Texts =
    [
        "Once upon a time, there was a little girl named Lily. She loved to play outside.",
        "Tom had a red ball. He threw it high and his dog ran after it.",
    ];

    [Fact]
    public void A_large_fixed_vocabulary_is_cut_to_the_batch_tokens_plus_others()
    {
        HfTokenizer baseTok = HfTokenizer.Load(Repo("assets/stories260K"));
        HfTokenizer hn = ByteLevelConverter.Convert(baseTok, matchSpecialTokensTo: baseTok);
        var full = new FixedTargetVocabulary(["gpt2"], baseTok, hn, 7, 24, 0, 3);
        var cut = new FixedTargetVocabulary(["gpt2"], baseTok, hn, 7, 24, 300, 3);
        MainBatch f = full.Batch(Texts, 5), c = cut.Batch(Texts, 5);
        Assert.True(f.Rows > 50000, $"{f.Rows} rows");
        Assert.Equal(300, c.Rows);
        Assert.Equal(300 * 7, c.SurfaceForms.Length);
        Assert.Equal(f.Batch, c.Batch);
        // Every position keeps its token: the renumbered row has the original's surface form.
        for (int i = 0; i < f.Ids.Length; i++)
        {
            Assert.Equal(f.SurfaceForms.AsSpan(f.Ids[i] * 7, 7).ToArray(),
                c.SurfaceForms.AsSpan(c.Ids[i] * 7, 7).ToArray());
            Assert.Equal(f.Targets[i] < 0, c.Targets[i] < 0);
            if (f.Targets[i] >= 0)
            {
                Assert.Equal(f.SurfaceForms.AsSpan(f.Targets[i] * 7, 7).ToArray(),
                    c.SurfaceForms.AsSpan(c.Targets[i] * 7, 7).ToArray());
            }
        }
        // The other rows depend on (seed, update) only.
        Assert.Equal(c.SurfaceForms, cut.Batch(Texts, 5).SurfaceForms);
        Assert.NotEqual(c.SurfaceForms, cut.Batch(Texts, 6).SurfaceForms);
    }

    [Fact]
    public void Update_streams_are_seeded_the_same_in_every_process()
    {
        // Constants from an independent evaluation of SplitMix64 (Python); HashCode.Combine,
        // seeded per process, would fail this in a new process.
        Assert.Equal(275347894, SeedMix.Of(0, 0, 0x1d));
        Assert.Equal(1017840116, SeedMix.Of(4, 123, 0x7a));
        Assert.Equal(691647363, SeedMix.Of(-1, 5, 1));
    }

    private static (HypernetTrainer Trainer, LanguageModel Lm) TinyLlama(bool nan)
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
        if (nan)
        {
            w["output_projection.1.bias"].Data[0] = float.NaN;
        }
        var settings = new TrainSettings(new LearningRateSchedule(0, 0, 2, 1e-3, 40, 0.1),
            Accumulation: 2);
        return (new HypernetTrainer(c, w, e, Cpu, settings), LanguageModel.Open(dir, Cpu));
    }

    private static MainBatch Batch(long index)
    {
        int[] sf = [.. Enumerable.Range(0, 12).SelectMany(i => new[] { 3 + (7 * i), 2, 2 })];
        int[] ids = [.. Enumerable.Range(0, 16).Select(i => (int)((i * 5) + index) % 12)];
        return new MainBatch(sf, 12, ids, [.. ids.Skip(1).Append(-1)], 2);
    }

    [Fact]
    public void A_main_step_reports_its_parts_and_its_time_split()
    {
        (HypernetTrainer trainer, LanguageModel lm) = TinyLlama(nan: false);
        using (trainer)
        using (lm)
        {
            var seen = new List<long>();
            StepReport r = trainer.MainStep(lm, i =>
            {
                seen.Add(i);
                return Batch(i);
            }, 0.5);
            // Two micro-batches of update 0, averaged.
            Assert.Equal([0L, 1L], seen);
            Assert.Equal(0, r.Step);
            Assert.Equal(r.LmLoss + (0.5 * r.LexicalLoss), r.Loss, 9);
            Assert.True(r.LmLoss > 0 && r.LexicalLoss > 0, $"{r.LmLoss} {r.LexicalLoss}");
            Assert.Equal(32, r.Tokens);
            Assert.Equal(12, r.VocabularyRows);
            Assert.True(r.HypernetSeconds > 0 && r.LmSeconds > 0 && r.OptimizerSeconds > 0);
            Assert.Equal(1, trainer.Step);
        }
    }

    [Fact]
    public void A_nan_main_loss_stops_naming_the_step()
    {
        (HypernetTrainer trainer, LanguageModel lm) = TinyLlama(nan: true);
        using (trainer)
        using (lm)
        {
            trainer.Step = 7;
            var e = Assert.Throws<ZettException>(() => trainer.MainStep(lm, Batch, 0.5));
            Assert.Contains("step 7", e.Message, StringComparison.Ordinal);
            Assert.Equal(7, trainer.Step);
        }
    }

    private TrainOptions Options(string outDir, int steps, string? resume = null,
        bool validate = false, bool sampled = false, string? initFrom = null, double lr = 1e-3,
        string device = "cpu") => new()
        {
            TrainTokenizers = sampled ? [] : ["gpt2"],
            VocabularySubsample = sampled ? 0 : 256,
            SampledPieces = 512,
            ModelDirectory = Repo("assets/stories260K"),
            OutputDirectory = outDir,
            Data = [new TextSource(Repo("tests/fixtures/lm/eval/tinystories-dev-25.jsonl"), 1)],
            Steps = steps,
            IdentitySteps = 2,
            IdentityBatch = 64,
            BatchSize = 2,
            BlockSize = 24,
            LearningRate = lr,
            MainLearningRate = lr,
            WarmupSteps = 1,
            Seed = 4,
            SaveEvery = 3,
            ValidTokenizer = validate ? "gpt2" : null,
            ValidData = validate ? [new ValidSet(ValidFile())] : [],
            ValidEvery = 2,
            Resume = resume,
            InitFrom = initFrom,
            Device = device,
            // An initialised run takes the hypernetwork's shape.
            Shape = initFrom is null ? new HypernetShape(0, 0, 1, 0, 7) : new HypernetShape(),
        };

    private string ValidFile()
    {
        string path = Path.Combine(_dir, "valid.jsonl");
        File.WriteAllLines(path, Texts.Select(t => new JsonObject { ["text"] = t }.ToJsonString()));
        return path;
    }

    [Fact]
    public void A_run_trains_both_stages_validates_and_writes_the_curve()
    {
        string outDir = Path.Combine(_dir, "run");
        var lines = new List<string>();
        TrainResult r = HypernetTraining.Run(Options(outDir, 5, validate: true), lines.Add);
        Assert.Equal(5, r.Steps);
        JsonNode[] log = [.. File.ReadAllLines(Path.Combine(outDir, "train_log.jsonl"))
            .Select(l => JsonNode.Parse(l)!)];
        string[] stages = [.. log.Select(l => (string)l["stage"]!)];
        // Validation before the main stage, after its second update, and at the end.
        Assert.Equal(["identity", "identity", "valid", "main", "main", "valid", "main", "valid"],
            stages);
        JsonNode[] main = [.. log.Where(l => (string)l["stage"]! == "main")];
        foreach (JsonNode m in main)
        {
            double loss = (double)m["loss"]!, lm = (double)m["lm_loss"]!;
            double lex = (double)m["lexical_loss"]!;
            Assert.Equal(lm + (0.5 * lex), loss, 9);
            Assert.True((double)m["vocabulary_rows"]! >= 256);
            Assert.True((double)m["lm_s"]! > 0 && (double)m["hypernet_s"]! > 0);
        }
        // The main ramp starts from 0 (the schedule is evaluated before the update).
        Assert.Equal(0.0, (double)main[0]["lr"]!);
        Assert.Equal(1e-3, (double)main[1]["lr"]!, 12);
        double[] bpb = [.. log.Where(l => (string)l["stage"]! == "valid")
            .Select(l => (double)l["bits_per_byte"]!)];
        Assert.All(bpb, b => Assert.True(b > 0.5 && b < 30, $"{b} bits/byte"));
        Assert.Equal(bpb[^1], r.ValidBitsPerByte);
        Assert.Contains(lines, l => l.StartsWith("step 5/5 main", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Contains("lexical", StringComparison.Ordinal));
        byte[] png = File.ReadAllBytes(Path.Combine(outDir, "loss.png"));
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, png[..4]);
        Assert.True(png.Length > 2000, $"{png.Length} bytes");
        Assert.True(File.Exists(Path.Combine(outDir, "model.safetensors")));
        Assert.True(Directory.Exists(Path.Combine(outDir, "checkpoints", "step-3")));
        Assert.False(Directory.EnumerateDirectories(outDir, ".validation*").Any());
    }

    [Fact]
    public void A_sampled_tokenizer_per_batch_trains_the_main_stage()
    {
        string outDir = Path.Combine(_dir, "sampled");
        var lines = new List<string>();
        HypernetTraining.Run(Options(outDir, 4, sampled: true), lines.Add);
        Assert.Contains(lines, l => l.Contains("a tokenizer sampled per batch (512 pieces, 640 rows",
            StringComparison.Ordinal));
        JsonNode[] main = [.. File.ReadAllLines(Path.Combine(outDir, "train_log.jsonl"))
            .Select(l => JsonNode.Parse(l)!).Where(l => (string)l["stage"]! == "main")];
        Assert.Equal(2, main.Length);
        foreach (JsonNode m in main)
        {
            // Every padded row is predicted; the LM loss is over the sampled vocabulary.
            Assert.Equal(640.0, (double)m["vocabulary_rows"]!);
            double lm = (double)m["lm_loss"]!;
            Assert.True(lm > 1 && lm < 20, $"lm loss {lm}");
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_resumed_main_stage_continues_bit_identically(bool sampled)
    {
        string straight = Path.Combine(_dir, $"straight-{sampled}");
        string split = Path.Combine(_dir, $"split-{sampled}");
        // An interrupted run keeps its checkpoint at update 3 (saved every 3 updates); a run
        // resumed from it with the same options ends where the uninterrupted one does (the
        // sampler's window replayed).
        HypernetTraining.Run(Options(straight, 5, sampled: sampled));
        HypernetTraining.Run(Options(split, 5, sampled: sampled,
            resume: Path.Combine(straight, "checkpoints", "step-3")));
        AssertSameState(straight, split);
    }

    /// <summary><c>--device auto</c> names the backend it chose and why (here the CPU: no
    /// CUDA device).</summary>
    [Fact]
    public void Auto_device_names_the_backend_it_chose()
    {
        var lines = new List<string>();
        HypernetTraining.Run(Options(Path.Combine(_dir, "auto"), 3, device: "auto"), lines.Add);
        Assert.Contains(lines, l => l.StartsWith(Cuda.IsAvailable ? "backend: cuda: " :
            "backend: cpu (auto: no usable CUDA device", StringComparison.Ordinal));
    }

    /// <summary>On a GPU, a run with <c>--device cuda</c> follows the CPU run: every logged
    /// loss within 1e-3 relative (both compute in fp32; sums in other orders).</summary>
    [Fact]
    public void Cuda_training_follows_the_cpu_run()
    {
        Assert.SkipUnless(Cuda.IsAvailable, Cuda.UnavailableReason);
        string cpu = Path.Combine(_dir, "cpu"), cuda = Path.Combine(_dir, "cuda");
        HypernetTraining.Run(Options(cpu, 5));
        HypernetTraining.Run(Options(cuda, 5, device: "cuda"));
        double[] Losses(string dir) => [.. File.ReadAllLines(Path.Combine(dir, "train_log.jsonl"))
            .Select(l => JsonNode.Parse(l)!).Where(l => l["loss"] is not null).Select(l => (double)l["loss"]!)];
        double[] a = Losses(cpu), b = Losses(cuda);
        Assert.Equal(a.Length, b.Length);
        for (int i = 0; i < a.Length; i++)
        {
            Assert.True(Math.Abs(a[i] - b[i]) <= 1e-3 * Math.Abs(a[i]), $"update {i + 1}: cpu {a[i]}, cuda {b[i]}");
        }
    }

    /// <summary>Two runs ended with the same parameters and optimiser state, byte for byte.</summary>
    internal static void AssertSameState(string a, string b)
    {
        foreach (string f in new[] { "model.safetensors", "optimizer.safetensors" })
        {
            Assert.Equal(File.ReadAllBytes(Path.Combine(a, f)), File.ReadAllBytes(Path.Combine(b, f)));
        }
    }

    /// <summary><c>--init-from</c> (the reference's init_from_params): a run started from a
    /// trained hypernetwork holds exactly its parameters (learning rate 0 keeps them: the
    /// written hypernetwork equals the one it started from, tensor by tensor, bit for bit), and
    /// with a learning rate it starts where that one ended: its first losses are those of the
    /// trained parameters, below a fresh run's with the same seed and batches.</summary>
    [Fact]
    public void Init_from_a_trained_hypernetwork_starts_from_its_parameters()
    {
        string trained = Path.Combine(_dir, "trained");
        string frozen = Path.Combine(_dir, "frozen");
        string continued = Path.Combine(_dir, "continued");
        string fresh = Path.Combine(_dir, "fresh");
        HypernetTraining.Run(Options(trained, 8));
        var lines = new List<string>();
        HypernetTraining.Run(Options(frozen, 3, initFrom: trained, lr: 0), lines.Add);
        Assert.Contains(lines, l => l.StartsWith($"parameters from {trained}", StringComparison.Ordinal));
        using (SafetensorsFile a = SafetensorsFile.Open(Path.Combine(trained, "model.safetensors")))
        using (SafetensorsFile b = SafetensorsFile.Open(Path.Combine(frozen, "model.safetensors")))
        {
            Assert.Equal(a.Tensors.Select(t => t.Name), b.Tensors.Select(t => t.Name));
            foreach (SafetensorsTensorInfo t in a.Tensors)
            {
                Assert.Equal(a.ReadFloat32(t.Name).Data, b.ReadFloat32(t.Name).Data);
            }
        }
        Assert.Equal(File.ReadAllText(Path.Combine(trained, "config.json")),
            File.ReadAllText(Path.Combine(frozen, "config.json")));
        // The optimiser starts afresh: update 1 of 3, not 9.
        JsonObject state = JsonNode.Parse(File.ReadAllText(Path.Combine(frozen, "trainer_state.json")))!.AsObject();
        Assert.Equal(3, (int)state["step"]!);

        TrainResult init = HypernetTraining.Run(Options(continued, 3, initFrom: trained));
        TrainResult scratch = HypernetTraining.Run(Options(fresh, 3));
        Assert.True(init.FirstLoss < scratch.FirstLoss * 0.9,
            $"first loss from the trained hypernetwork {init.FirstLoss}, from scratch {scratch.FirstLoss}");
    }

    [Fact]
    public void Init_from_refuses_another_models_hypernetwork_and_conflicting_options()
    {
        string xlmr = Path.Combine(_dir, "xlmr-hn");
        HypernetTraining.Run(MaskedOptions(xlmr, 3));
        ZettException e = Assert.Throws<ZettException>(() =>
            HypernetTraining.Run(Options(Path.Combine(_dir, "a"), 3, initFrom: xlmr)));
        Assert.StartsWith(xlmr + ": --init-from: the hypernetwork ", e.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(Path.Combine(_dir, "a")));

        e = Assert.Throws<ZettException>(() => HypernetTraining.Run(Options(Path.Combine(_dir, "b"), 3,
            initFrom: xlmr, resume: Path.Combine(xlmr, "checkpoints", "step-3"))));
        Assert.Contains("--init-from", e.Message);
        Assert.Contains("--resume", e.Message);
        TrainOptions shaped = Options(Path.Combine(_dir, "c"), 3, initFrom: xlmr);
        e = Assert.Throws<ZettException>(() => HypernetTraining.Run(new TrainOptions
        {
            ModelDirectory = shaped.ModelDirectory,
            OutputDirectory = shaped.OutputDirectory,
            InitFrom = xlmr,
            Shape = new HypernetShape(0, 0, 1, 0, 7),
        }));
        Assert.Contains("shape", e.Message);
        Assert.Throws<ZettException>(() => HypernetTraining.Run(Options(Path.Combine(_dir, "d"), 3,
            initFrom: Path.Combine(_dir, "missing"))));
    }

    /// <summary>The tiny XLM-R fixture with a Unigram / Metaspace tokenizer of its 96 rows in
    /// XLM-R's layout (&lt;s&gt; &lt;pad&gt; &lt;/s&gt; &lt;unk&gt; first, &lt;mask&gt; last,
    /// RoBERTa's post-processor): a masked LM that <c>zett train</c> can open.</summary>
    private string TinyXlmRoberta()
    {
        string dir = Path.Combine(_dir, "xlm-roberta");
        if (Directory.Exists(dir))
        {
            return dir;
        }
        Directory.CreateDirectory(dir);
        string fixture = GoldenLogitsTests.FixtureDir("xlm-roberta");
        foreach (string f in new[] { "config.json", "model.safetensors" })
        {
            File.Copy(Path.Combine(fixture, f), Path.Combine(dir, f));
        }
        string[] specials = ["<s>", "<pad>", "</s>", "<unk>"];
        var pieces = new List<string> { "▁" };
        for (char c = 'a'; c <= 'z'; c++)
        {
            pieces.Add(c.ToString());
            pieces.Add("▁" + c);
        }
        pieces.AddRange(["▁the", "▁and", "▁was", "▁to", "▁she", "▁he",
            "▁her", "▁his", "▁with", ".", ",", "▁Lily", "▁Tom",
            "▁Once", "▁upon", "▁time", "▁there", "▁little", "▁girl",
            "▁named", "▁loved", "▁play", "▁outside", "▁had", "▁red",
            "▁ball", "▁He", "▁She", "▁it", "▁high", "▁dog", "▁ran",
            "▁after", "▁threw", "▁big", "in", "ed", "▁T"]);
        var vocab = new JsonArray();
        foreach (string t in specials)
        {
            vocab.Add(new JsonArray(t, 0.0));
        }
        for (int i = 0; i < pieces.Count; i++)
        {
            vocab.Add(new JsonArray(pieces[i], -2.0 - (pieces[i].Length == 1 ? 3 : 0) - (0.001 * i)));
        }
        vocab.Add(new JsonArray("<mask>", 0.0));
        Assert.Equal(96, vocab.Count);
        var added = new JsonArray();
        foreach ((string t, int id) in specials.Select((t, i) => (t, i)).Append(("<mask>", 95)))
        {
            added.Add(new JsonObject
            {
                ["id"] = id,
                ["content"] = t,
                ["single_word"] = false,
                ["lstrip"] = t == "<mask>",
                ["rstrip"] = false,
                ["normalized"] = false,
                ["special"] = true,
            });
        }
        JsonNode Meta() => new JsonObject
        {
            ["type"] = "Metaspace",
            ["replacement"] = "▁",
            ["prepend_scheme"] = "always",
            ["split"] = true,
        };
        var root = new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = added,
            ["normalizer"] = null,
            ["pre_tokenizer"] = Meta(),
            ["post_processor"] = new JsonObject
            {
                ["type"] = "RobertaProcessing",
                ["sep"] = new JsonArray("</s>", 2),
                ["cls"] = new JsonArray("<s>", 0),
                ["trim_offsets"] = true,
                ["add_prefix_space"] = true,
            },
            ["decoder"] = Meta(),
            ["model"] = new JsonObject
            {
                ["type"] = "Unigram",
                ["unk_id"] = 3,
                ["vocab"] = vocab,
                ["byte_fallback"] = false,
            },
        };
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), root.ToJsonString());
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"),
            new JsonObject { ["tokenizer_class"] = "XLMRobertaTokenizer" }.ToJsonString());
        return dir;
    }

    private TrainOptions MaskedOptions(string outDir, int steps, string? resume = null,
        bool validate = false) => new()
        {
            TrainTokenizers = ["gpt2"],
            VocabularySubsample = 256,
            ModelDirectory = TinyXlmRoberta(),
            OutputDirectory = outDir,
            Data = [new TextSource(RepeatedText(), 1)],
            Steps = steps,
            IdentitySteps = 2,
            IdentityBatch = 64,
            BatchSize = 4,
            BlockSize = 16,
            LearningRate = 1e-3,
            MainLearningRate = 3e-3,
            WarmupSteps = 1,
            Seed = 4,
            SaveEvery = 3,
            ValidTokenizer = validate ? "gpt2" : null,
            ValidData = validate ? [new ValidSet(ValidFile())] : [],
            ValidEvery = 4,
            Resume = resume,
            Shape = new HypernetShape(0, 0, 1, 0, 7),
        };

    /// <summary>The two texts over and over: every batch holds the same texts.</summary>
    private string RepeatedText()
    {
        string path = Path.Combine(_dir, "repeated.jsonl");
        if (File.Exists(path))
        {
            return path;
        }
        File.WriteAllLines(path, Enumerable.Repeat(Texts, 40).SelectMany(t => t)
            .Select(t => new JsonObject { ["text"] = t }.ToJsonString()));
        return path;
    }

    [Fact]
    public void A_masked_lm_trains_its_mlm_loss_and_predicted_bias()
    {
        string outDir = Path.Combine(_dir, "mlm");
        var lines = new List<string>();
        TrainResult r = HypernetTraining.Run(MaskedOptions(outDir, 12, validate: true), lines.Add);
        JsonNode[] log = [.. File.ReadAllLines(Path.Combine(outDir, "train_log.jsonl"))
            .Select(l => JsonNode.Parse(l)!)];
        double[] lm = [.. log.Where(l => (string)l["stage"]! == "main")
            .Select(l => (double)l["lm_loss"]!)];
        Assert.Equal(12, r.Steps);
        Assert.Equal(10, lm.Length);
        Assert.Contains(lines, l => l.StartsWith("step 12/12 main", StringComparison.Ordinal));
        Assert.All(lm, x => Assert.True(double.IsFinite(x) && x > 0, $"lm loss {x}"));
        double first = lm[..3].Average(), last = lm[^3..].Average();
        Assert.True(last < first - 0.05, $"MLM loss {string.Join(", ", lm)}");
        double[] bpb = [.. log.Where(l => (string)l["stage"]! == "valid")
            .Select(l => (double)l["bits_per_byte"]!)];
        Assert.NotEmpty(bpb);
        Assert.All(bpb, b => Assert.True(double.IsFinite(b) && b > 0, $"{b} bits/byte"));
        // The released format: the predicted bias's projection is in the checkpoint and the
        // config says so; zett transfer writes the masked LM's output bias from it.
        HypernetConfig c = HypernetConfig.Load(outDir);
        Assert.True(c.PredictBias);
        using (SafetensorsFile w = SafetensorsFile.Open(Path.Combine(outDir, "model.safetensors")))
        {
            Assert.True(w.Contains("bias_projection.weight"));
        }
        string transferred = Path.Combine(_dir, "mlm-gpt2");
        TokenizerTransfer.Run(new TransferOptions
        {
            ModelDirectory = TinyXlmRoberta(),
            HypernetDirectory = Path.Combine(outDir, "checkpoints", "step-12"),
            Tokenizer = "gpt2",
            OutputDirectory = transferred,
            Device = "cpu",
        });
        using HfModelDirectory m = HfModelDirectory.Open(transferred);
        Assert.Equal(HfTokenizer.Load(transferred).VocabSize, m.VocabSize);
        Assert.NotNull(m.OutputBiasName);
    }

    [Fact]
    public void A_resumed_masked_lm_run_continues_bit_identically()
    {
        string straight = Path.Combine(_dir, "mlm-straight");
        string split = Path.Combine(_dir, "mlm-split");
        HypernetTraining.Run(MaskedOptions(straight, 5));
        HypernetTraining.Run(MaskedOptions(split, 5,
            resume: Path.Combine(straight, "checkpoints", "step-3")));
        AssertSameState(straight, split);
    }
}
