using System.Text.Json.Nodes;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.Tensors;
using ZeTT.Runtime.Tests.Hypernetwork;
using ZeTT.Runtime.Tokenizers;
using ZeTT.Runtime.Training;
using ZeTT.Runtime.Transfer;

namespace ZeTT.Runtime.Tests.Training;

/// <summary>Multilingual training on stories260K with the UDHR's English and German text
/// (tests/fixtures/train/udhr): one language per batch drawn from (seed, index), language
/// embeddings saved for <c>zett transfer --lang</c>, per-language validation, bit-identical
/// resume, and the train → transfer round trip selecting the language's row.</summary>
public sealed class MultilingualTrainingTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zett-multiling-").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    private static string Repo(string relative) => Path.Combine(HypernetFixture.RepoRoot, relative);

    private static string Udhr(string name) => Repo($"tests/fixtures/train/udhr/{name}.jsonl");

    private static TextSource[] TwoLanguages =>
        [new TextSource(Udhr("eng-train"), null, "en"), new TextSource(Udhr("deu-train"), null, "de")];

    private TrainOptions Options(string outDir, int steps, string? resume = null,
        bool validate = false, bool mix = false, bool embed = true, string? initFrom = null,
        double lr = 1e-3, TextSource[]? data = null) => new()
        {
            SampledPieces = 512,
            ModelDirectory = Repo("assets/stories260K"),
            OutputDirectory = outDir,
            Data = data ?? TwoLanguages,
            MixLanguages = mix,
            EmbedLangId = embed,
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
            ValidData = validate
                ? [new ValidSet(Udhr("eng-valid"), "en"), new ValidSet(Udhr("deu-valid"), "de")]
                : [],
            ValidEvery = 100,
            Resume = resume,
            InitFrom = initFrom,
            Shape = initFrom is null ? new HypernetShape(0, 0, 1, 0, 7) : new HypernetShape(),
        };

    /// <summary>The reference's multilingual recipe: <c>--init-from</c> a hypernetwork without
    /// language ids plus <c>--embed-lang-id</c> gives it a fresh language table and keeps every
    /// other parameter (learning rate 0: bit for bit); from one with languages, each run
    /// language keeps the row of its code (de) and a new code (fr) gets a fresh row; a
    /// hypernetwork with languages is refused by a run without them.</summary>
    [Fact]
    public void Init_from_keeps_language_rows_by_code_and_adds_fresh_ones()
    {
        string mono = Path.Combine(_dir, "mono"), two = Path.Combine(_dir, "two");
        string moved = Path.Combine(_dir, "moved");
        HypernetTraining.Run(Options(mono, 4, embed: false));
        HypernetTraining.Run(Options(two, 3, initFrom: mono, lr: 0));
        HypernetConfig c = HypernetConfig.Load(two);
        Assert.True(c.EmbedLangId);
        Assert.Equal(["en", "de"], c.Langs);
        Dictionary<string, HostTensor> a = TrainingCheckpoint.ReadParameters(mono);
        Dictionary<string, HostTensor> b = TrainingCheckpoint.ReadParameters(two);
        Assert.Equal(a.Keys.Append("lang_embeddings.weight").Order(), b.Keys.Order());
        foreach ((string name, HostTensor t) in a)
        {
            Assert.Equal(t.Data, b[name].Data);
        }
        float[] table = b["lang_embeddings.weight"].Data;
        int h = c.HiddenSize;
        Assert.Equal(2 * h, table.Length);
        double std = Math.Sqrt(table.Average(x => (double)x * x));
        Assert.InRange(std, 0.01, 0.04);

        TextSource[] deFr = [new TextSource(Udhr("deu-train"), null, "de"),
            new TextSource(Udhr("eng-train"), null, "fr")];
        HypernetTraining.Run(Options(moved, 3, initFrom: two, lr: 0, data: deFr));
        HypernetConfig m = HypernetConfig.Load(moved);
        Assert.Equal(["de", "fr"], m.Langs);
        float[] movedTable = TrainingCheckpoint.ReadParameters(moved)["lang_embeddings.weight"].Data;
        Assert.Equal(table.AsSpan(h, h).ToArray(), movedTable.AsSpan(0, h).ToArray());
        Assert.NotEqual(table.AsSpan(0, h).ToArray(), movedTable.AsSpan(h, h).ToArray());

        ZettException e = Assert.Throws<ZettException>(() => HypernetTraining.Run(
            Options(Path.Combine(_dir, "refused"), 3, initFrom: two, embed: false)));
        Assert.Contains("embeds language ids (en, de)", e.Message);
    }

    [Fact]
    public void Two_languages_train_one_per_batch_with_language_rows_and_validate_each()
    {
        string outDir = Path.Combine(_dir, "run");
        var lines = new List<string>();
        TrainResult r = HypernetTraining.Run(Options(outDir, 8, validate: true), lines.Add);
        Assert.Equal(8, r.Steps);
        // No weights: p ∝ (bytes / N)^0.3 of the two files' text.
        var languages = new TrainLanguages(TwoLanguages);
        Assert.Contains(lines, l => l.StartsWith(FormattableString.Invariant(
            $"en p={languages.Probabilities[0]:F4} ({languages.Bytes["en"]} bytes), de p="),
            StringComparison.Ordinal));
        JsonNode[] log = [.. File.ReadAllLines(Path.Combine(outDir, "train_log.jsonl"))
            .Select(l => JsonNode.Parse(l)!)];
        JsonNode[] main = [.. log.Where(l => (string)l["stage"]! == "main")];
        Assert.Equal(6, main.Length);
        string[] langs = [.. main.Select(m => (string)m["lang"]!)];
        // Update s (accumulation 1) draws its language from (seed 4, s).
        Assert.Equal(main.Select(m => languages.Codes[languages.Draw(4, (long)m["step"]!)]), langs);
        Assert.Contains("en", langs);
        Assert.Contains("de", langs);
        // Per-language validation: before the main stage and at the end, one line per language.
        JsonNode[] valid = [.. log.Where(l => (string)l["stage"]! == "valid")];
        Assert.Equal(["en", "de", "en", "de"], valid.Select(v => (string)v["lang"]!));
        foreach (JsonNode v in valid)
        {
            double bpb = (double)v[$"valid/{(string)v["lang"]!}_bpb"]!;
            Assert.Equal((double)v["bits_per_byte"]!, bpb);
            Assert.True(bpb > 0.5 && bpb < 30, $"{bpb} bits/byte");
        }
        Assert.Equal(["de", "en"], r.ValidByLang!.Keys.Order(StringComparer.Ordinal));
        Assert.Equal((double)valid[2]["bits_per_byte"]!, r.ValidByLang["en"]);
        Assert.Equal((double)valid[3]["bits_per_byte"]!, r.ValidByLang["de"]);
        // The language rows of the English and German hypernetworks differ already at the
        // first validation (the same identity-stage weights, rows initialised apart).
        Assert.NotEqual((double)valid[0]["bits_per_byte"]!, (double)valid[1]["bits_per_byte"]!);

        // The saved hypernetwork: hn_embed_lang_id, its languages for zett transfer --lang.
        HypernetConfig c = HypernetConfig.Load(outDir);
        Assert.True(c.EmbedLangId);
        Assert.Equal(2, c.NumLangs);
        Assert.Equal(["en", "de"], c.Langs);
        JsonObject config = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "config.json")))!.AsObject();
        Assert.True((bool)config["hn_embed_lang_id"]!);
        Assert.Equal(["en", "de"], config["langs"]!.AsArray().Select(x => (string)x!));
        using SafetensorsFile w = SafetensorsFile.Open(Path.Combine(outDir, "model.safetensors"));
        Assert.Equal([2L, c.HiddenSize], w.GetInfo("lang_embeddings.weight").Shape);
    }

    /// <summary>Each language has its own tokenizer sampler (its own window): German batches
    /// under the German sampler come out the same whether or not English batches went through
    /// the English sampler in between; an English batch through the German sampler does change
    /// them (so a shared window would be seen).</summary>
    [Fact]
    public void Each_language_has_its_own_sampler_window()
    {
        HfTokenizer baseTok = HfTokenizer.Load(Repo("assets/stories260K"));
        HfTokenizer hn = ByteLevelConverter.Convert(baseTok, matchSpecialTokensTo: baseTok);
        TrainOptions o = Options(Path.Combine(_dir, "unused"), 10);
        var languages = new TrainLanguages(o.Data);
        string eos = baseTok.SpecialTokens.Eos ?? "";
        IMainVocabulary[] Make() => HypernetTraining.MainVocabularies(o, languages, baseTok, hn,
            7, maskedLm: false, eos);
        var batches = new List<(string[] Texts, int Lang)>();
        using (var text = new MultilingualText(languages, o.BatchSize, o.BlockSize * 16, eos,
            o.Seed, mix: false))
        {
            for (long i = 0; i < 8; i++)
            {
                batches.Add(text.Next(i));
            }
        }
        Assert.Contains(batches, b => b.Lang == 0);
        Assert.Contains(batches, b => b.Lang == 1);
        IMainVocabulary[] both = Make(), germanOnly = Make(), polluted = Make();
        Assert.Equal(2, both.Length);
        var withEnglish = new List<MainBatch>();
        var alone = new List<MainBatch>();
        var afterEnglish = new List<MainBatch>();
        for (int k = 0; k < batches.Count; k++)
        {
            (string[] texts, int lang) = batches[k];
            MainBatch b = both[lang].Batch(texts, k);
            if (lang == 1)
            {
                withEnglish.Add(b);
                alone.Add(germanOnly[1].Batch(texts, k));
                afterEnglish.Add(polluted[1].Batch(texts, k));
            }
            else
            {
                polluted[1].Batch(texts, k);
            }
        }
        for (int i = 0; i < alone.Count; i++)
        {
            Assert.Equal(alone[i].Ids, withEnglish[i].Ids);
            Assert.Equal(alone[i].SurfaceForms, withEnglish[i].SurfaceForms);
        }
        Assert.Contains(Enumerable.Range(0, alone.Count), i =>
            !alone[i].SurfaceForms.AsSpan().SequenceEqual(afterEnglish[i].SurfaceForms));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_resumed_two_language_run_continues_bit_identically(bool mix)
    {
        string straight = Path.Combine(_dir, $"straight-{mix}");
        string split = Path.Combine(_dir, $"split-{mix}");
        HypernetTraining.Run(Options(straight, 7, mix: mix));
        HypernetTraining.Run(Options(split, 7, mix: mix,
            resume: Path.Combine(straight, "checkpoints", "step-3")));
        MainTrainingTests.AssertSameState(straight, split);
        string[] Langs(string dir) => [.. File.ReadAllLines(Path.Combine(dir, "train_log.jsonl"))
            .Select(l => JsonNode.Parse(l)!).Where(l => (string)l["stage"]! == "main"
                && (long)l["step"]! >= 3).Select(l => (string)l["lang"]!)];
        Assert.Equal(Langs(straight), Langs(split));
        if (mix)
        {
            // Mixed: "all" is row 0 and every batch uses it.
            Assert.Equal(["all", "en", "de"], HypernetConfig.Load(straight).Langs);
            Assert.All(Langs(straight), l => Assert.Equal("all", l));
        }
        // A checkpoint resumed without its languages is refused.
        var e = Assert.Throws<ZettException>(() => HypernetTraining.Run(Options(
            Path.Combine(_dir, $"other-{mix}"), 7, mix: mix, embed: false,
            resume: Path.Combine(straight, "checkpoints", "step-3"))));
        Assert.Contains("the checkpoint's languages", e.Message, StringComparison.Ordinal);
    }

    /// <summary>Train, then <c>zett transfer --lang</c>: the English and German transfers
    /// differ, and the German one is the English transfer of a copy of the hypernetwork whose
    /// two language rows are swapped — the output is exactly the chosen row's prediction.
    /// </summary>
    [Fact]
    public void Transfer_with_lang_uses_that_languages_row()
    {
        string hnDir = Path.Combine(_dir, "hn");
        HypernetTraining.Run(Options(hnDir, 5));
        string swapped = Path.Combine(_dir, "hn-swapped");
        Directory.CreateDirectory(swapped);
        foreach (string f in Directory.EnumerateFiles(hnDir))
        {
            if (Path.GetFileName(f) != "model.safetensors")
            {
                File.Copy(f, Path.Combine(swapped, Path.GetFileName(f)));
            }
        }
        using (SafetensorsFile w = SafetensorsFile.Open(Path.Combine(hnDir, "model.safetensors")))
        {
            HostTensor lang = w.ReadFloat32("lang_embeddings.weight");
            int h = lang.Shape[1];
            float[] rows = [.. lang.Data.AsSpan(h, h), .. lang.Data.AsSpan(0, h)];
            Assert.NotEqual(rows[..h], rows[h..]);
            SafetensorsWriter.Write(Path.Combine(swapped, "model.safetensors"), [.. w.Tensors
                .Select(t => t.Name == "lang_embeddings.weight"
                    ? SafetensorsEntry.FromFloat32(t.Name, [2, h], rows)
                    : SafetensorsEntry.CopyOf(w, t.Name))]);
        }
        byte[] Transfer(string hypernet, string? lang, string name)
        {
            string outDir = Path.Combine(_dir, name);
            TokenizerTransfer.Run(new TransferOptions
            {
                ModelDirectory = Repo("assets/stories260K"),
                HypernetDirectory = hypernet,
                Tokenizer = "gpt2",
                OutputDirectory = outDir,
                Device = "cpu",
                Language = lang,
            });
            return File.ReadAllBytes(Path.Combine(outDir, "model.safetensors"));
        }
        byte[] en = Transfer(hnDir, "en", "to-en"), de = Transfer(hnDir, "de", "to-de");
        Assert.NotEqual(en, de);
        Assert.Equal(de, Transfer(swapped, "en", "swapped-en"));
        Assert.Equal(en, Transfer(swapped, "de", "swapped-de"));
        var e = Assert.Throws<ZettException>(() => Transfer(hnDir, "fr", "to-fr"));
        Assert.Contains("--lang fr: unknown language; valid: en, de", e.Message,
            StringComparison.Ordinal);
        e = Assert.Throws<ZettException>(() => Transfer(hnDir, null, "to-none"));
        Assert.Contains("choose --lang from en, de", e.Message, StringComparison.Ordinal);
    }
}
