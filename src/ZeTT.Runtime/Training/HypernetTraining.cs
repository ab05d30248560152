using System.Diagnostics;
using System.Text.Json.Nodes;
using ZeTT.Ops;
using ZeTT.Ops.Cpu;
using ZeTT.Ops.Cuda;
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

    /// <summary>Output directory: the final hypernetwork, checkpoints/step-N, train_log.jsonl,
    /// loss.png.</summary>
    public required string OutputDirectory { get; init; }

    /// <summary>Training text (<c>--data FILE[:WEIGHT][:lang=CODE]</c>); none: the identity
    /// stage only.</summary>
    public IReadOnlyList<TextSource> Data { get; init; } = [];

    /// <summary>The exponent of the language probabilities when no source has a weight:
    /// p ∝ (n_bytes / N)^α (the reference's language_sampling_alpha, 0.3).</summary>
    public double LanguageSamplingAlpha { get; init; } = 0.3;

    /// <summary>Mix the languages within a batch (the reference's mix_languages; one sampler
    /// over all of them, language "all"); false: each batch is one language's, with that
    /// language's sampler.</summary>
    public bool MixLanguages { get; init; }

    /// <summary>Give the hypernetwork a language embedding (hn_embed_lang_id): one row per
    /// language (with "all" first when mixing), appended as the last sequence element; the
    /// codes are saved as the config's <c>langs</c> for <c>zett transfer --lang</c>.</summary>
    public bool EmbedLangId { get; init; }

    /// <summary>Fixed target tokenizers of the main stage (names or paths), one drawn per
    /// update.</summary>
    public IReadOnlyList<string> TrainTokenizers { get; init; } = [];

    /// <summary>Pieces of the tokenizer sampled per batch when no <see cref="TrainTokenizers"/>
    /// are given (32 768 in the reference; a multiple of 128 above 391).</summary>
    public int SampledPieces { get; init; } = 32768;

    /// <summary>Main stage with fixed tokenizers: rows of the vocabulary per batch at most (the
    /// batch's own ids plus random others; 0: the whole vocabulary).</summary>
    public int VocabularySubsample { get; init; }

    /// <summary>Updates to run (the schedule's length), at most.</summary>
    public int Steps { get; init; } = 1000;

    /// <summary>Identity-stage updates before the main stage (null: the reference's share,
    /// 10 000 of 200 000 steps, at most 10 000). Without <see cref="Data"/> every update is an
    /// identity update.</summary>
    public int? IdentitySteps { get; init; }

    /// <summary>Wall-clock budget in minutes (0: none): the schedule is laid out for the
    /// updates that fit, measured on the first micro-batches of each stage.</summary>
    public double MaxMinutes { get; init; }

    /// <summary>Peak learning rate of the identity ramp (3e-4 in the reference).</summary>
    public double LearningRate { get; init; } = 3e-4;

    /// <summary>Peak learning rate of the main stage (6e-5 in the reference).</summary>
    public double MainLearningRate { get; init; } = 6e-5;

    /// <summary>Warm-up updates of the main stage (null: 1/19 of its updates, the reference's
    /// 10 000 of 190 000).</summary>
    public int? WarmupSteps { get; init; }

    /// <summary>Final fraction of the main peak at the end of the cosine (0.1).</summary>
    public double Alpha { get; init; } = 0.1;

    /// <summary>Tokens per identity micro-batch.</summary>
    public int IdentityBatch { get; init; } = 16384;

    /// <summary>Sequences per main-stage micro-batch (128).</summary>
    public int BatchSize { get; init; } = 128;

    /// <summary>Tokens per sequence (128); texts are cropped to 16 characters per token.
    /// </summary>
    public int BlockSize { get; init; } = 128;

    /// <summary>Weight of the lexical loss (0.5).</summary>
    public double LexicalWeight { get; init; } = 0.5;

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

    /// <summary>A fixed tokenizer to validate with (needs <see cref="ValidData"/>).</summary>
    public string? ValidTokenizer { get; init; }

    /// <summary>Validation texts, read as <c>zett eval</c> reads them, each for one training
    /// language (reported as <c>valid/{lang}_bpb</c>).</summary>
    public IReadOnlyList<ValidSet> ValidData { get; init; } = [];

    /// <summary>Validate every this many main-stage updates (and when the identity stage ends
    /// and at the end).</summary>
    public int ValidEvery { get; init; } = 10000;

    /// <summary>A checkpoint directory (checkpoints/step-N) to continue from.</summary>
    public string? Resume { get; init; }

    /// <summary>A hypernetwork directory whose parameters start the run (the reference's
    /// <c>init_from_params</c>): any hypernetwork <c>zett transfer</c> loads (a
    /// <c>zett train</c> output, a released PyTorch-port or Flax checkpoint) made for this model.
    /// Its shape and rescalers are kept; the optimiser, the update count and the schedule start
    /// afresh.</summary>
    public string? InitFrom { get; init; }

    /// <summary>The hypernetwork's compute precision (fp32 by default; bf16: TRAINING.md §7.7's
    /// bf16 compute over fp32 masters).</summary>
    public HypernetPrecision Precision { get; init; } = HypernetPrecision.Float32;

    /// <summary>Hypernetwork sizes (zeros: the reference's defaults for the model).</summary>
    public HypernetShape Shape { get; init; } = new();

    /// <summary>Where the step runs: <c>cpu</c> (here the default), <c>cuda</c> or
    /// <c>auto</c> (cuda when a usable device is found; <c>zett train</c>'s default). The
    /// hypernetwork, its gradients and optimiser state and the frozen LM live on that backend;
    /// the rescaler initialisation and validation run on the CPU.</summary>
    public string Device { get; init; } = "cpu";

    /// <summary>CUDA device ordinal (with <see cref="Device"/> cuda or auto).</summary>
    public int Gpu { get; init; }

    /// <summary>Train the language model's backbone (every weight but the embeddings, fp32
    /// masters) with the hypernetwork, which still produces the embeddings every step: the
    /// reference's <c>backbone_training="full"</c>, its n-shot continued training (TRAINING.md
    /// §12.2). The trained model is written to <c>full_model/</c> (the base model's
    /// tokenizer and embeddings, the new backbone), and with one fixed
    /// <see cref="TrainTokenizers"/> the transferred model to <c>model/</c>.</summary>
    public bool BackboneTraining { get; init; }

    /// <summary>The lexical loss pulls every row's prediction towards the hypernetwork's
    /// initial prediction (the reference's <c>apply_lexical_loss_to_init</c>, n-shot runs);
    /// needs one fixed <see cref="TrainTokenizers"/> without a subsample.</summary>
    public bool LexicalLossToInit { get; init; }

    /// <summary>Data parallelism (null: one process): this process is one rank of the job;
    /// every rank runs with the same options, only rank 0 writes the output.</summary>
    public DistributedOptions? Distributed { get; init; }
}

/// <summary>A validation text and its language (<c>--valid-data FILE[:lang=CODE]</c>).</summary>
/// <param name="File">The text, read as <c>zett eval</c> reads it.</param>
/// <param name="Lang">Its language (null: the first training language); with language
/// embeddings the model is transferred with that language's row.</param>
public sealed record ValidSet(string File, string? Lang = null)
{
    /// <summary>Parses <c>FILE[:lang=CODE]</c>.</summary>
    public static ValidSet Parse(string spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        int at = spec.LastIndexOf(":lang=", StringComparison.Ordinal);
        if (at <= 0)
        {
            return new ValidSet(spec);
        }
        string lang = spec[(at + 6)..];
        if (lang.Length == 0 || !lang.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))
        {
            throw new ZettException($"{spec[..at]}: lang='{lang}' is not a language code "
                + "(letters, digits, '-' and '_'; --valid-data FILE[:lang=CODE])");
        }
        return new ValidSet(spec[..at], lang);
    }
}

/// <summary>The outcome of a run.</summary>
/// <param name="Steps">Updates done in total (with the resumed ones).</param>
/// <param name="FirstLoss">Loss of the run's first update.</param>
/// <param name="LastLoss">Loss of its last update.</param>
/// <param name="TokensPerSecond">Tokens per second over the run (identity: target tokens;
/// main stage: LM tokens).</param>
/// <param name="Seconds">Wall time of the updates.</param>
/// <param name="ValidBitsPerByte">The last validation's bits per byte on the first validation
/// set (null: none).</param>
/// <param name="ValidByLang">The last validation's bits per byte per language (null: none).
/// </param>
public sealed record TrainResult(long Steps, double FirstLoss, double LastLoss,
    double TokensPerSecond, double Seconds, double? ValidBitsPerByte = null,
    IReadOnlyDictionary<string, double>? ValidByLang = null)
{
    /// <summary>Data parallelism: SHA-256 digests of the final parameters and AdamW moments
    /// (and backbone), which every rank has checked to be the same on all ranks (null in one
    /// process).</summary>
    public string? StateDigest { get; init; }
}

/// <summary>
/// <c>zett train</c>: a new hypernetwork for a base model, trained on the CPU op backend: the
/// identity stage (TRAINING.md §7.1: the model's own embeddings from single-token surface
/// forms), then, with training text, the main stage (§7.2–7.3: each batch's texts encoded
/// under a target tokenizer, the frozen LM's loss with the hypernetwork's embeddings for that
/// vocabulary plus the lexical loss). One AdamW state and one schedule run through both.
/// </summary>
public static class HypernetTraining
{
    private static string Inv(FormattableString text) => FormattableString.Invariant(text);

    /// <summary>Runs training; <paramref name="log"/> gets progress lines.</summary>
    public static TrainResult Run(TrainOptions o, Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(o);
        log ??= _ => { };
        CheckOptions(o);
        bool main = o.Data.Count > 0;
        // Continued training starts from a trained hypernetwork: no identity stage (the n-shot
        // configs' identity_steps 0).
        int identitySteps = main
            ? o.IdentitySteps ?? (o.BackboneTraining ? 0 : Math.Min(10000, o.Steps / 20))
            : o.Steps;
        if (main && identitySteps >= o.Steps)
        {
            throw new ZettException($"--identity-steps {identitySteps} leaves no main-stage "
                + $"update in --steps {o.Steps}");
        }
        OutputTarget.RequireApart(o.OutputDirectory, [o.ModelDirectory]);
        if (o.Distributed is { Rank: > 0 } d)
        {
            Action<string> inner = log;
            log = line => inner($"rank {d.Rank}: {line}");
        }
        // The device first: a missing CUDA device is an error before any work.
        using IOpBackend backend = HypernetPredictor.OpenBackend(o.Device, o.Gpu, out string why);
        // Then the other ranks: they meet and compare their options before any input is read.
        using IGradientReducer? reducer = o.Distributed is null ? null
            : GradientReducer.Open(o.Distributed, backend, OptionsFingerprint(o));
        if (reducer is null)
        {
            return Train(o, log, backend, why, null, main, identitySteps);
        }
        log($"rank {reducer.Rank} of {reducer.WorldSize}, gradients summed by {reducer.Transport}");
        try
        {
            return Train(o, log, backend, why, reducer, main, identitySteps);
        }
        catch (Exception e)
        {
            // The others stop at their next collective with this message instead of waiting.
            reducer.Abort(e.Message);
            throw;
        }
    }

    /// <summary>What must be the same on every rank: every option but the output directory,
    /// the rank, the device ordinal and the logging period.</summary>
    internal static string OptionsFingerprint(TrainOptions o)
    {
        static string Inv(FormattableString t) => FormattableString.Invariant(t);
        var lines = new List<string>
        {
            $"model {Path.GetFullPath(o.ModelDirectory)}",
            $"world-size {o.Distributed?.WorldSize ?? 1}",
        };
        lines.AddRange(o.Data.Select(t => Inv($"data {t.File} weight {t.Weight} lang {t.Lang}")));
        lines.AddRange(o.TrainTokenizers.Select(t => $"train-tokenizer {t}"));
        lines.AddRange(o.ValidData.Select(v => $"valid-data {v.File} lang {v.Lang}"));
        lines.AddRange(
        [
            Inv($"language-sampling-alpha {o.LanguageSamplingAlpha}"),
            $"mix-languages {o.MixLanguages}",
            $"embed-lang-id {o.EmbedLangId}",
            Inv($"pieces {o.SampledPieces}"),
            Inv($"vocab-subsample {o.VocabularySubsample}"),
            Inv($"steps {o.Steps}"),
            Inv($"identity-steps {o.IdentitySteps}"),
            Inv($"max-minutes {o.MaxMinutes}"),
            Inv($"lr {o.LearningRate}"),
            Inv($"main-lr {o.MainLearningRate}"),
            Inv($"warmup-steps {o.WarmupSteps}"),
            Inv($"learning-rate-alpha {o.Alpha}"),
            Inv($"identity-batch {o.IdentityBatch}"),
            Inv($"batch {o.BatchSize}"),
            Inv($"block-size {o.BlockSize}"),
            Inv($"lexical-weight {o.LexicalWeight}"),
            Inv($"accumulation {o.Accumulation}"),
            Inv($"max-grad-norm {o.MaxGradNorm}"),
            Inv($"seed {o.Seed}"),
            Inv($"save-every {o.SaveEvery}"),
            $"valid-tokenizer {o.ValidTokenizer}",
            Inv($"valid-every {o.ValidEvery}"),
            $"resume {o.Resume is not null}",
            $"init-from {o.InitFrom is not null}",
            $"precision {o.Precision}",
            $"shape {o.Shape}",
            $"device {o.Device}",
            $"backbone-training {o.BackboneTraining}",
            $"lexical-loss-to-init {o.LexicalLossToInit}",
            Inv($"dist-timeout {o.Distributed?.TimeoutSeconds}"),
        ]);
        return string.Join('\n', lines);
    }

    private static TrainResult Train(TrainOptions o, Action<string> log, IOpBackend backend,
        string why, IGradientReducer? reducer, bool main, int identitySteps)
    {
        bool writes = reducer is null || reducer.Rank == 0;
        using HfModelDirectory model = HfModelDirectory.Open(o.ModelDirectory);
        // The architecture check names an unsupported family before any work.
        LmArchitecture arch = LmArchitecture.FromConfig(model);
        bool maskedLm = !arch.Causal;
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
        // Every input is opened before any work: data files, tokenizers, validation text.
        string eos = baseTok.SpecialTokens.Eos ?? "";
        int span = o.BlockSize * TrainText.MaxCharsPerToken;
        using MultilingualText? text = main
            ? new MultilingualText(new TrainLanguages(o.Data, o.LanguageSamplingAlpha),
                o.BatchSize, span, eos, o.Seed, o.MixLanguages)
            : null;
        TrainLanguages? languages = text?.Languages;
        if (o.MixLanguages && languages!.Codes.Count < 2)
        {
            throw new ZettException($"--mix-languages needs training text of at least two "
                + $"languages (--data FILE:lang=CODE); there is only {languages.Codes[0]}");
        }
        // The hypernetwork's languages: the reference puts "all" first when mixing.
        string[]? hnLangs = o.EmbedLangId
            ? [.. (o.MixLanguages ? [TextSource.MixedLang] : Array.Empty<string>()), .. languages!.Codes]
            : null;
        var validSets = new List<(string Lang, IReadOnlyList<EvalDocument> Docs)>();
        foreach (ValidSet v in o.ValidData)
        {
            string lang = v.Lang ?? languages!.Codes[0];
            languages!.IndexOf(lang, $"--valid-data {v.File}");
            if (validSets.Any(x => x.Lang == lang))
            {
                throw new ZettException($"--valid-data {v.File}: a second validation set for "
                    + $"language {lang}");
            }
            validSets.Add((lang, EvalText.Read([v.File], null)));
        }
        if (o.ValidTokenizer is not null)
        {
            HfTokenizer.Load(o.ValidTokenizer);
        }
        if (languages is not null && languages.Codes.Count > 1)
        {
            log(string.Join(", ", languages.Codes.Select((c, l) =>
                Inv($"{c} p={languages.Probabilities[l]:F4}")
                + (languages.Bytes.TryGetValue(c, out long b) ? Inv($" ({b} bytes)") : "")))
                + (o.MixLanguages ? "; mixed within batches" : "; one language per batch"));
        }
        bool untied = model.OutputEmbeddingName is not null && !model.TieWordEmbeddings;
        HostTensor e = SourceEmbeddings.ReadStacked(model, untied);
        using var cpu = new CpuBackend();

        HypernetConfig config;
        Dictionary<string, HostTensor> weights;
        if (o.Resume is not null)
        {
            config = HypernetConfig.Load(o.Resume);
            if (config.EmbedLangId != o.EmbedLangId
                || (hnLangs is not null && !config.Langs.SequenceEqual(hnLangs)))
            {
                throw new ZettException($"{o.Resume}: the checkpoint's languages ("
                    + (config.EmbedLangId ? string.Join(", ", config.Langs) : "none")
                    + ") are not this run's (" + (hnLangs is null ? "none" : string.Join(", ", hnLangs))
                    + "; --embed-lang-id and --data must be as before)");
            }
            weights = TrainingCheckpoint.ReadParameters(o.Resume);
        }
        else if (o.InitFrom is not null)
        {
            HypernetCheckpoint init = HypernetCheckpoint.Load(o.InitFrom);
            config = init.Config;
            CheckInitFits(config, init.Directory, model, v0, hn.VocabSize - v0, untied);
            weights = new Dictionary<string, HostTensor>(init.Weights.Tensors, StringComparer.Ordinal);
            config = InitLanguages(config, weights, hnLangs, init.Directory, o.Seed, log);
            log($"parameters from {init.Directory} ({init.Format}); optimiser and schedule start afresh");
        }
        else
        {
            int pad = hn.PadTokenId ?? hn.EosTokenId ?? 0;
            config = HypernetInit.Config(model.HiddenSize, untied, v0, hn.VocabSize - v0, pad,
                predictBias: model.OutputBiasName is not null, o.Shape, hnLangs);
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
        IMainVocabulary[] vocabularies = main
            ? MainVocabularies(o, languages!, baseTok, hn, config.SurfaceMaxLen, maskedLm, eos)
            : [];
        IMainVocabulary? vocabulary = vocabularies.Length > 0 ? vocabularies[0] : null;
        log(Inv($"hypernetwork for {model.Directory}: H {config.HiddenSize}, I ")
            + Inv($"{config.IntermediateSize}, {config.NumLayers} layers, {config.NumAttentionHeads} ")
            + Inv($"heads, L {config.SurfaceMaxLen}, {v0} + {config.NumExtraTokens} tokens, ")
            + (untied ? "untied" : "tied")
            + (o.Precision == HypernetPrecision.BFloat16 ? ", bf16 compute over fp32 masters"
                : ", fp32"));
        if (vocabulary is not null)
        {
            log(Inv($"main stage after {identitySteps} identity updates: {o.BatchSize} × ")
                + Inv($"{o.BlockSize} tokens per micro-batch under ") + vocabulary.Description
                + (vocabularies.Length > 1 && o.TrainTokenizers.Count == 0
                    ? Inv($", one sampler per language ({vocabularies.Length})") : ""));
        }

        // Logged once every input has been checked (a bad input is then the only stderr line).
        log($"backend: {(backend is CudaBackend gpu ? "cuda: " + gpu.DeviceName : backend.Name)} ({why})");
        var settings = new TrainSettings(Schedule(o, identitySteps, o.Steps), o.IdentityBatch,
            o.Accumulation, o.MaxGradNorm, Seed: o.Seed);
        using var trainer = new HypernetTrainer(config, weights, e, backend, settings,
            precision: o.Precision)
        {
            Reducer = reducer,
        };
        trainer.LexicalLossToInit = o.LexicalLossToInit;
        if (o.Resume is not null)
        {
            TrainingCheckpoint.RestoreOptimizer(o.Resume, trainer);
        }
        using LanguageModel? lm = !main ? null
            : o.BackboneTraining ? LanguageModel.CreateTrainable(model, backend)
            : LanguageModel.Create(model, backend);
        if (o.BackboneTraining)
        {
            trainer.AttachBackbone(lm!);
            log(Inv($"backbone trained too: {trainer.Backbone!.Count:N0} weights in ")
                + Inv($"{trainer.Backbone.Names.Count} tensors (fp32 masters)"));
        }
        if (o.Resume is not null)
        {
            TrainingCheckpoint.RestoreBackbone(o.Resume, trainer);
        }
        // Every rank starts from the same state: the config, the update count and the bits of
        // the parameters and moments (a fresh run's seeded initialisation, or the checkpoint).
        reducer?.Agree("initial state", TrainingCheckpoint.ConfigJson(config)
            + Inv($"\nstep {trainer.Step}\n") + GradientReducer.Digest(
            [
                ("parameters", trainer.Parameters), ("m", trainer.M), ("v", trainer.V),
                ("backbone", trainer.Backbone), ("backbone m", trainer.BackboneM),
                ("backbone v", trainer.BackboneV),
            ]));
        var run = new RunLog(o, trainer, hn, identitySteps, log, writes)
        {
            Model = model,
            LangOf = new Dictionary<long, string>(),
        };
        // At the end every rank checks that all hold the same state, bit for bit.
        string? FinalAgreement()
        {
            if (reducer is null)
            {
                return null;
            }
            string digest = GradientReducer.Digest(
            [
                ("parameters", trainer.Parameters), ("m", trainer.M), ("v", trainer.V),
                ("backbone", trainer.Backbone), ("backbone m", trainer.BackboneM),
                ("backbone v", trainer.BackboneV),
            ]);
            reducer.Agree("final state", digest);
            return digest;
        }
        // Decisions from a rank's clock (the time budget) are rank 0's on every rank.
        double FromRankZero(double value) => reducer?.FromRankZero(value)[0] ?? value;
        var budget = Stopwatch.StartNew();
        double budgetSeconds = o.MaxMinutes * 60;

        // Identity stage (all of a run without text). A time-boxed run measures it first; its
        // identity stage takes at most half the budget when a main stage follows.
        long total = o.Steps;
        if (trainer.Step < identitySteps)
        {
            if (budgetSeconds > 0)
            {
                var probe = Stopwatch.StartNew();
                for (int k = 0; k < 2; k++)
                {
                    trainer.IdentityLossAndGradients(trainer.IdentityIds(k));
                }
                double perStep = FromRankZero(
                    probe.Elapsed.TotalSeconds / 2 * o.Accumulation * 1.05);
                long fit = Math.Max(trainer.Step + 1,
                    (long)(budgetSeconds * (main ? 0.5 : 1) / perStep));
                if (fit < identitySteps)
                {
                    log(Inv($"budget {o.MaxMinutes} min at {perStep:F3} s/update: {fit} identity ")
                        + Inv($"updates instead of {identitySteps}"));
                    identitySteps = (int)fit;
                    run.IdentitySteps = identitySteps;
                }
                total = main ? o.Steps : identitySteps;
            }
            trainer.Settings = settings with { Schedule = Schedule(o, identitySteps, total) };
            while (trainer.Step < identitySteps)
            {
                run.Record(trainer.IdentityStep(), "identity", main ? identitySteps : total);
            }
        }
        if (!main)
        {
            string? end = FinalAgreement();
            return run.Finish(null, null) with { StateDigest = end };
        }

        // Main stage. The first micro-batches are made once and kept, so that the time probe
        // and the updates see the same batches (the stream and the sampler stay functions of
        // the seed); a resumed run replays the stream (and the sampler) up to its step.
        // With R ranks every rank reads the whole stream and moves each vocabulary (a sampler's
        // window) past the other ranks' micro-batches without encoding them, so micro-batch i
        // has the texts and the vocabulary it has in one process.
        var pending = new Dictionary<long, MainBatch>();
        int all = trainer.GlobalMicroBatches;
        long mainBase = (long)identitySteps * all;
        long cursor = mainBase;
        void Advance(long index, bool record)
        {
            for (; cursor < index; cursor++)
            {
                (string[] skipped, int l) = text!.Next(cursor);
                vocabularies[Math.Max(l, 0)].Skip(skipped, cursor);
                if (record)
                {
                    run.LangOf![cursor] = l < 0 ? TextSource.MixedLang : languages!.Codes[l];
                }
            }
        }
        Advance(trainer.Step * all, record: false);
        // Micro-batch k: its language's texts (from (seed, k)) under that language's
        // vocabulary, with its row of the language embeddings ("all", row 0, when mixed).
        MainBatch Make(long index)
        {
            Advance(index, record: true);
            (string[] texts, int l) = text!.Next(index);
            cursor = index + 1;
            run.LangOf![index] = l < 0 ? TextSource.MixedLang : languages!.Codes[l];
            MainBatch b = vocabularies[Math.Max(l, 0)].Batch(texts, index);
            return o.EmbedLangId ? b with { LangIndex = o.MixLanguages ? 0 : l } : b;
        }
        MainBatch BatchFor(long index) => pending.Remove(index, out MainBatch? made) ? made
            : Make(index);
        IReadOnlyDictionary<string, double>? bpb = null;
        double validSeconds = 0;
        // Validation on rank 0 only; the others wait for it at the next sum.
        bool validate = validSets.Count > 0 && writes;
        if (validate)
        {
            var vclock = Stopwatch.StartNew();
            bpb = run.Validate(validSets, cpu);
            validSeconds = vclock.Elapsed.TotalSeconds;
        }
        if (budgetSeconds > 0)
        {
            var probe = Stopwatch.StartNew();
            // This rank's next two micro-batches (its c-th from here is first + c·R).
            long first = trainer.MicroBatchIndex(trainer.Step, 0);
            int stride = all / o.Accumulation;
            for (long k = first; k < first + (2 * stride); k += stride)
            {
                pending[k] = Make(k);
                trainer.MainLossAndGradients(lm!, pending[k], o.LexicalWeight);
            }
            double perStep = probe.Elapsed.TotalSeconds / 2 * o.Accumulation * 1.05;
            double perValid = validate ? validSeconds / Math.Max(1, o.ValidEvery) : 0;
            // The final validation and the checkpoints are paid for up front.
            double left = budgetSeconds - budget.Elapsed.TotalSeconds - validSeconds - 5;
            long fit = (long)(left / (perStep + perValid));
            total = (long)FromRankZero(Math.Clamp(trainer.Step + fit, trainer.Step + 1, o.Steps));
            log(Inv($"budget {o.MaxMinutes} min: {perStep:F2} s/update, validation ")
                + Inv($"{validSeconds:F1} s: {total - trainer.Step} main updates"));
        }
        trainer.Settings = settings with { Schedule = Schedule(o, identitySteps, total) };
        while (trainer.Step < total)
        {
            if (budgetSeconds > 0
                && FromRankZero(budget.Elapsed.TotalSeconds > budgetSeconds ? 1 : 0) > 0)
            {
                log(Inv($"time budget reached at update {trainer.Step} of {total}"));
                break;
            }
            run.Record(trainer.MainStep(lm!, BatchFor, o.LexicalWeight), "main", total);
            long mainDone = trainer.Step - identitySteps;
            if (validate && mainDone % Math.Max(1, o.ValidEvery) == 0 && trainer.Step < total)
            {
                bpb = run.Validate(validSets, cpu);
            }
        }
        string? digest = FinalAgreement();
        if (validate)
        {
            bpb = run.Validate(validSets, cpu);
        }
        return run.Finish(bpb, validate ? validSets[0].Lang : null) with { StateDigest = digest };
    }

    /// <summary>The main stage's vocabulary per stream of batches (indexed like the languages;
    /// one when mixing): a tokenizer sampler per language — the reference's one collator per
    /// language, its window primed from the first batches of that language's text — or one
    /// over the mixed stream; fixed tokenizers are one instance shared by the languages.
    /// </summary>
    internal static IMainVocabulary[] MainVocabularies(TrainOptions o, TrainLanguages languages,
        HfTokenizer baseTok, HfTokenizer hn, int surfaceMaxLen, bool maskedLm, string eos)
    {
        int span = o.BlockSize * TrainText.MaxCharsPerToken;
        // One vocabulary per stream of batches: a sampler per language (mix_languages false,
        // the reference's one collator per language), or one over the mixed batches; fixed
        // tokenizers are shared.
        IMainVocabulary[] vocabularies;
        if (o.TrainTokenizers.Count > 0)
        {
            var fixedVocabulary = new FixedTargetVocabulary(o.TrainTokenizers, baseTok, hn,
                surfaceMaxLen, o.BlockSize, o.VocabularySubsample, o.Seed)
            {
                MaskedLm = maskedLm,
            };
            vocabularies = [.. Enumerable.Repeat<IMainVocabulary>(fixedVocabulary,
                languages.Codes.Count)];
        }
        else
        {
            var samplerOptions = new TokenizerSamplerOptions(o.SampledPieces,
                SurfaceMaxLen: surfaceMaxLen);
            int streams = o.MixLanguages ? 1 : languages.Codes.Count;
            vocabularies = new IMainVocabulary[streams];
            for (int l = 0; l < streams; l++)
            {
                var sampled = new SampledVocabulary(samplerOptions, baseTok, hn, o.BlockSize,
                    l == 0 ? o.Seed : SeedMix.Of(o.Seed, l, 0x5b))
                {
                    MaskedLm = maskedLm,
                };
                // §4.1: the window starts full, from the first WindowBatches batches of texts
                // of a stream of their own (the reference reads the first 2048 training
                // texts of the language, or of the mixed stream).
                var texts = new List<string>();
                if (o.MixLanguages)
                {
                    using var prime = new MultilingualText(languages, o.BatchSize, span, eos,
                        SeedMix.Of(o.Seed, 0, 0x5a), mix: true);
                    for (int b = 0; b < samplerOptions.WindowBatches; b++)
                    {
                        texts.AddRange(prime.Next(b).Texts);
                    }
                }
                else
                {
                    using var prime = new TrainText(languages.Sources[l], o.BatchSize, span, eos,
                        SeedMix.Of(o.Seed, l, 0x5a));
                    for (int b = 0; b < samplerOptions.WindowBatches; b++)
                    {
                        texts.AddRange(prime.Next().Texts);
                    }
                }
                sampled.Prime(texts);
                vocabularies[l] = sampled;
            }
        }
        return vocabularies;
    }

    /// <summary>Throws, naming the hypernetwork directory, unless the hypernetwork was made for
    /// this model: the same width, vocabulary, extra tokens and tying, and a bias head where the
    /// model has an output bias.</summary>
    private static void CheckInitFits(HypernetConfig c, string dir, HfModelDirectory model, int v0,
        int extra, bool untied)
    {
        string? wrong =
            c.NEmbd != model.HiddenSize
                ? $"predicts embeddings of width {c.NEmbd} (n_embd) but the model's hidden size is {model.HiddenSize}"
            : c.OriginalVocabSize != v0
                ? $"was made for a vocabulary of {c.OriginalVocabSize} (original_vocab_size) but the model's tokenizer has {v0} tokens"
            : c.NumExtraTokens != extra
                ? $"has {c.NumExtraTokens} extra tokens (hn_n_extra_tokens) but the model's tokenizer converted to byte level adds {extra}"
            : c.SeparateOutEmbeddings != untied
                ? $"has separate_out_embeddings {(c.SeparateOutEmbeddings ? "true" : "false")} but the model is {(untied ? "untied" : "tied")}"
            : model.OutputBiasName is not null && !c.PredictBias
                ? $"does not predict a bias (hn_predict_bias false) but the model has an output bias ('{model.OutputBiasName}')"
            : null;
        if (wrong is not null)
        {
            throw new ZettException($"{dir}: --init-from: the hypernetwork {wrong}");
        }
    }

    /// <summary>The language rows of a run started from a hypernetwork: with
    /// <c>--embed-lang-id</c>, each of the run's languages keeps the hypernetwork's row of the
    /// same code and gets a fresh N(0, 0.02) row otherwise — a hypernetwork without language
    /// ids gets a new table (the reference's multilingual runs start from its en+code
    /// hypernetwork this way). A hypernetwork with language ids needs them in the run.</summary>
    private static HypernetConfig InitLanguages(HypernetConfig config,
        Dictionary<string, HostTensor> weights, string[]? runLangs, string dir, int seed,
        Action<string> log)
    {
        const string Table = "lang_embeddings.weight";
        if (runLangs is null)
        {
            return config.EmbedLangId
                ? throw new ZettException($"{dir}: --init-from: the hypernetwork embeds language ids "
                    + $"({string.Join(", ", config.Langs)}); give --embed-lang-id and the languages "
                    + "with --data FILE:lang=CODE")
                : config;
        }
        HypernetConfig run = config.WithLanguages(runLangs);
        HostTensor fresh = HypernetInit.LangEmbeddings(runLangs.Length, config.HiddenSize, seed);
        HostTensor? old = config.EmbedLangId ? weights[Table] : null;
        int h = config.HiddenSize;
        var kept = new List<string>();
        for (int l = 0; l < runLangs.Length; l++)
        {
            int from = config.EmbedLangId ? IndexOf(config.Langs, runLangs[l]) : -1;
            if (from >= 0)
            {
                old!.Data.AsSpan(from * h, h).CopyTo(fresh.Data.AsSpan(l * h, h));
                kept.Add(runLangs[l]);
            }
        }
        weights[Table] = fresh;
        log($"language rows: {(kept.Count == 0 ? "none" : string.Join(", ", kept))} from {dir}, "
            + $"{runLangs.Length - kept.Count} new");
        return run;
    }

    private static int IndexOf(IReadOnlyList<string> list, string item)
    {
        for (int i = 0; i < list.Count; i++)
        {
            if (list[i] == item)
            {
                return i;
            }
        }
        return -1;
    }

    private static void CheckOptions(TrainOptions o)
    {
        o.Distributed?.Validate();
        if (o.Distributed is { WorldSize: > 1 } && o.LexicalLossToInit && o.EmbedLangId
            && o.Data.Select(d => d.Lang).Distinct().Count() > 1)
        {
            // The targets are the predictions of the stage's first micro-batch, with its
            // language's row; a rank whose first micro-batch is another language's would keep
            // other targets.
            throw new ZettException("--lexical-loss-to-init with --embed-lang-id and several "
                + "languages runs in one process only (not with --world-size above 1)");
        }
        if (o.InitFrom is not null && o.Resume is not null)
        {
            throw new ZettException("--init-from starts a new run from a hypernetwork's parameters, "
                + "--resume continues a run: give one of them");
        }
        if (!(o.Alpha is >= 0 and <= 1))
        {
            throw new ZettException(Inv($"--learning-rate-alpha {o.Alpha}: the final fraction of ")
                + "the peak must be in [0, 1]");
        }
        if (o.BackboneTraining && o.Data.Count == 0)
        {
            throw new ZettException("--backbone-training full trains the language model in the "
                + "main stage, which needs training text: give --data FILE[:WEIGHT][:lang=CODE]");
        }
        if (o.BackboneTraining && o.IdentitySteps is > 0)
        {
            throw new ZettException($"--identity-steps {o.IdentitySteps}: with --backbone-training "
                + "full the run is continued training from a trained hypernetwork (--init-from); "
                + "train the hypernetwork's identity stage in a run of its own");
        }
        if (o.LexicalLossToInit && (o.TrainTokenizers.Count != 1 || o.VocabularySubsample > 0))
        {
            throw new ZettException("--lexical-loss-to-init pulls each row towards its initial "
                + "prediction, so the vocabulary must stay the same: give exactly one "
                + "--train-tokenizer and no --vocab-subsample");
        }
        if (o.InitFrom is not null && o.Shape != new HypernetShape())
        {
            throw new ZettException("--init-from: the hypernetwork's shape is its own; leave out "
                + "--hn-hidden-size, --hn-intermediate-size, --hn-layers, --hn-heads and --hn-surface-maxlen");
        }
        if (o.Steps < 1)
        {
            throw new ZettException($"--steps {o.Steps}: at least one update is needed");
        }
        if (File.Exists(o.OutputDirectory))
        {
            throw new ZettException($"{o.OutputDirectory}: is a file, not an output directory");
        }
        if (o.Data.Count == 0)
        {
            string? needs = o.TrainTokenizers.Count > 0 ? "--train-tokenizer"
                : o.ValidTokenizer is not null || o.ValidData.Count > 0 ? "validation"
                : o.IdentitySteps is not null ? "--identity-steps"
                : o.MixLanguages ? "--mix-languages"
                : o.EmbedLangId ? "--embed-lang-id" : null;
            if (needs is not null)
            {
                throw new ZettException($"{needs} is for the main stage, which needs training "
                    + "text: give --data FILE[:WEIGHT][:lang=CODE]");
            }
        }
        else if (o.TrainTokenizers.Count == 0 && (o.SampledPieces <= 391 || o.SampledPieces % 128 != 0))
        {
            throw new ZettException($"--pieces {o.SampledPieces}: a sampled tokenizer needs a "
                + "multiple of 128 above its 391 byte and whitespace pieces");
        }
        else if (o.TrainTokenizers.Count == 0 && o.VocabularySubsample > 0)
        {
            throw new ZettException("--vocab-subsample cuts fixed vocabularies "
                + "(--train-tokenizer); a sampled tokenizer has --pieces rows");
        }
        if ((o.ValidTokenizer is null) != (o.ValidData.Count == 0))
        {
            throw new ZettException("validation needs both --valid-tokenizer and --valid-data");
        }
    }

    /// <summary>The schedule of a run of <paramref name="total"/> updates: with training text,
    /// the identity ramp, the main ramp (1/19 of the main updates unless given, the
    /// reference's 10 000 of 190 000) and the cosine; without, the identity ramp over the whole
    /// run.</summary>
    private static LearningRateSchedule Schedule(TrainOptions o, int identitySteps, long total)
    {
        if (o.Data.Count == 0)
        {
            return new LearningRateSchedule(total, o.LearningRate, 0, o.LearningRate, total, 1);
        }
        long mainSteps = total - identitySteps;
        long warmup = o.WarmupSteps ?? Math.Max(1, mainSteps / 19);
        return new LearningRateSchedule(identitySteps, o.LearningRate, Math.Min(warmup,
            mainSteps), o.MainLearningRate, total, o.Alpha);
    }

    /// <summary>A run's bookkeeping: the JSONL log, stderr progress, checkpoints, validation,
    /// the loss curve.</summary>
    private sealed class RunLog(TrainOptions o, HypernetTrainer trainer, HfTokenizer hn,
        int identitySteps, Action<string> log, bool writes)
    {
        // Ranks other than 0 write nothing to the output directory.
        private readonly StreamWriter _log = writes ? OpenLog(o) : StreamWriter.Null;
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private readonly List<LossPoint> _points = [];
        private double _first = double.NaN, _last = double.NaN;
        private long _tokens;
        private double _sample, _hn, _lm, _opt;
        private long _stageTokens;
        private string _stage = "";

        public int IdentitySteps { get; set; } = identitySteps;

        /// <summary>The base model (its files and embeddings go into the backbone's model
        /// directories).</summary>
        public required HfModelDirectory Model { get; init; }

        /// <summary>The language of each main-stage micro-batch made (logged with its update,
        /// then forgotten).</summary>
        public Dictionary<long, string>? LangOf { get; init; }

        private static StreamWriter OpenLog(TrainOptions o)
        {
            Directory.CreateDirectory(o.OutputDirectory);
            return new StreamWriter(Path.Combine(o.OutputDirectory, "train_log.jsonl"),
                append: o.Resume is not null);
        }

        public void Record(StepReport r, string stage, long total)
        {
            if (stage != _stage)
            {
                _stage = stage;
                _stageTokens = 0;
                _sample = _hn = _lm = _opt = 0;
            }
            if (double.IsNaN(_first))
            {
                _first = r.Loss;
            }
            _last = r.Loss;
            _tokens += r.Tokens;
            _stageTokens += r.Tokens;
            _sample += r.SampleSeconds;
            _hn += r.HypernetSeconds;
            _lm += r.LmSeconds;
            _opt += r.OptimizerSeconds;
            _points.Add(new LossPoint(r.Step + 1, stage, r.Loss, r.LmLoss));
            var line = new JsonObject
            {
                ["step"] = r.Step,
                ["stage"] = stage,
                ["loss"] = r.Loss,
                ["grad_norm"] = r.GradNorm,
                ["lr"] = r.LearningRate,
                ["tokens"] = r.Tokens,
                ["sample_s"] = r.SampleSeconds,
                ["hypernet_s"] = r.HypernetSeconds,
                ["lm_s"] = r.LmSeconds,
                ["optimizer_s"] = r.OptimizerSeconds,
                ["elapsed_s"] = Math.Round(_clock.Elapsed.TotalSeconds, 3),
            };
            if (stage == "main")
            {
                line["lm_loss"] = r.LmLoss;
                line["lexical_loss"] = r.LexicalLoss;
                line["vocabulary_rows"] = r.VocabularyRows;
                if (LangOf is not null)
                {
                    var langs = new List<string>();
                    int all = trainer.GlobalMicroBatches;
                    for (long i = r.Step * all; i < (r.Step + 1) * all; i++)
                    {
                        if (LangOf.Remove(i, out string? code) && !langs.Contains(code))
                        {
                            langs.Add(code);
                        }
                    }
                    line["lang"] = string.Join("+", langs);
                }
            }
            _log.WriteLine(line.ToJsonString());
            long step = trainer.Step;
            if (step % Math.Max(1, o.LogEvery) == 0 || step == total || step == IdentitySteps)
            {
                _log.Flush();
                // Tokens per second of the updates themselves (validations and checkpoints
                // between them are not counted).
                double s = Math.Max(_sample + _hn + _lm + _opt, 1e-9);
                string losses = stage == "main"
                    ? Inv($"loss {r.Loss:F4} (lm {r.LmLoss:F4}, lexical {r.LexicalLoss:F4})")
                    : Inv($"loss {r.Loss:F5}");
                log(Inv($"step {step}/{total} {stage}  {losses}  |g| {r.GradNorm:G3}  lr ")
                    + Inv($"{r.LearningRate:G3}  {_stageTokens / s:F0} tok/s  (sample {_sample:F1}s, ")
                    + Inv($"hypernet {_hn:F1}s, lm {_lm:F1}s, optimizer {_opt:F1}s)"));
            }
            if (writes && o.SaveEvery > 0 && step % o.SaveEvery == 0 && step < total)
            {
                TrainingCheckpoint.Save(Path.Combine(o.OutputDirectory, "checkpoints",
                    $"step-{step}"), trainer, hn);
                LossCurve.Write(Path.Combine(o.OutputDirectory, "loss.png"), _points);
            }
        }

        /// <summary>Bits per byte of the model transferred to the validation tokenizer with
        /// the current hypernetwork, by <c>zett eval</c>'s protocol, per validation set: the
        /// hypernetwork is written as a checkpoint, <c>zett transfer</c>'s pipeline makes the
        /// model directory (with the set's language row, <c>--lang</c>, when the hypernetwork
        /// embeds language ids; once for all sets otherwise), <see cref="LmEvaluation"/> scores
        /// it; both are removed afterwards. One log line per set, with
        /// <c>valid/{lang}_bpb</c> (the reference's <c>eval/{name}_{lang}_bpb</c>).</summary>
        public Dictionary<string, double> Validate(
            IReadOnlyList<(string Lang, IReadOnlyList<EvalDocument> Docs)> sets, IOpBackend cpu)
        {
            var result = new Dictionary<string, double>(StringComparer.Ordinal);
            string dir = Path.Combine(o.OutputDirectory, $".validation-{Environment.ProcessId}");
            try
            {
                string hnDir = Path.Combine(dir, "hypernet");
                TrainingCheckpoint.SaveFiles(hnDir, trainer, hn);
                // A trained backbone is validated as it is now: the transfer starts from it.
                string baseDir = o.ModelDirectory;
                if (trainer.Backbone is not null)
                {
                    baseDir = Path.Combine(dir, "backbone");
                    TrainingCheckpoint.WriteBackboneModel(Model, baseDir, trainer);
                }
                bool perLang = trainer.Config.EmbedLangId;
                string? made = null;
                for (int k = 0; k < sets.Count; k++)
                {
                    var clock = Stopwatch.StartNew();
                    (string lang, IReadOnlyList<EvalDocument> docs) = sets[k];
                    string modelDir = Path.Combine(dir, perLang ? $"model-{lang}" : "model");
                    if (made != modelDir)
                    {
                        TokenizerTransfer.Run(new TransferOptions
                        {
                            ModelDirectory = baseDir,
                            HypernetDirectory = hnDir,
                            Tokenizer = o.ValidTokenizer!,
                            OutputDirectory = modelDir,
                            Device = "cpu",
                            Overwrite = true,
                            Language = perLang ? lang : null,
                        });
                        if (made is not null)
                        {
                            Directory.Delete(made, recursive: true);
                        }
                        made = modelDir;
                    }
                    LmEvalResult r = LmEvaluation.Run([modelDir], docs, null, 0, cpu)[0];
                    double seconds = clock.Elapsed.TotalSeconds;
                    var line = new JsonObject
                    {
                        ["step"] = trainer.Step,
                        ["stage"] = "valid",
                        ["lang"] = lang,
                        ["valid_tokenizer"] = o.ValidTokenizer,
                        ["bits_per_byte"] = r.BitsPerByte,
                        [$"valid/{lang}_bpb"] = r.BitsPerByte,
                        ["tokens_per_byte"] = r.TokensPerByte,
                        ["seconds"] = Math.Round(seconds, 3),
                    };
                    _log.WriteLine(line.ToJsonString());
                    _log.Flush();
                    if (k == 0)
                    {
                        _points.Add(new LossPoint(trainer.Step, "valid", r.BitsPerByte, double.NaN));
                    }
                    log(Inv($"validation at update {trainer.Step}: {r.BitsPerByte:F4} bits/byte ")
                        + Inv($"on {lang} under {o.ValidTokenizer} ({seconds:F1} s)"));
                    result[lang] = r.BitsPerByte;
                }
                return result;
            }
            finally
            {
                if (Directory.Exists(dir))
                {
                    Directory.Delete(dir, recursive: true);
                }
            }
        }

        public TrainResult Finish(IReadOnlyDictionary<string, double>? bpb, string? firstLang)
        {
            double seconds = _clock.Elapsed.TotalSeconds;
            if (!writes)
            {
                return new TrainResult(trainer.Step, _first, _last,
                    _tokens / Math.Max(seconds, 1e-9), seconds);
            }
            TrainingCheckpoint.Save(Path.Combine(o.OutputDirectory, "checkpoints",
                $"step-{trainer.Step}"), trainer, hn);
            TrainingCheckpoint.SaveFiles(o.OutputDirectory, trainer, hn);
            if (trainer.Backbone is not null)
            {
                string full = Path.Combine(o.OutputDirectory, "full_model");
                TrainingCheckpoint.WriteBackboneModel(Model, full, trainer, overwrite: true);
                log($"trained model (base tokenizer, new backbone): {full}");
                if (o.TrainTokenizers.Count == 1)
                {
                    string made = Path.Combine(o.OutputDirectory, "model");
                    TokenizerTransfer.Run(new TransferOptions
                    {
                        ModelDirectory = full,
                        // The final checkpoint: the same hypernetwork, in a directory beside
                        // (not around) the output.
                        HypernetDirectory = Path.Combine(o.OutputDirectory, "checkpoints",
                            $"step-{trainer.Step}"),
                        Tokenizer = o.TrainTokenizers[0],
                        OutputDirectory = made,
                        Device = "cpu",
                        Overwrite = true,
                    });
                    log($"the model under {o.TrainTokenizers[0]} (the trained hypernetwork's "
                        + $"embeddings on the new backbone): {made}");
                }
            }
            _log.Dispose();
            LossCurve.Write(Path.Combine(o.OutputDirectory, "loss.png"), _points);
            return new TrainResult(trainer.Step, _first, _last,
                _tokens / Math.Max(seconds, 1e-9), seconds,
                bpb is not null && firstLang is not null ? bpb[firstLang] : null, bpb);
        }
    }
}
