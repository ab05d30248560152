using System.CommandLine;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.Training;

namespace ZeTT.Cli;

/// <summary><c>zett train</c>: train a hypernetwork for a base model.</summary>
internal sealed class TrainCommand : ZettCommand
{
    private static string Inv(FormattableString text) => FormattableString.Invariant(text);

    private readonly Option<string> _model = CommonOptions.Required("--model", "DIR",
        "the base model (Hugging Face directory with tokenizer.json)");

    private readonly Option<string> _out = CommonOptions.Required("--out", "DIR",
        "output: the final hypernetwork, checkpoints/step-N, train_log.jsonl, loss.png");

    private readonly Option<string[]> _data = new("--data")
    {
        Description = "training text for the main stage: .txt, .jsonl (\"text\" field) or "
            + ".parquet (a text column), FILE:WEIGHT for a mixture, :lang=CODE for its language "
            + "(default en; one language per batch, drawn by the summed weights, or without "
            + "weights by (bytes/total)^alpha); repeat for more [default: none, the identity "
            + "stage only]",
        HelpName = "FILE[:WEIGHT][:lang=CODE]",
    };

    private readonly Option<double[]> _alpha = CommonOptions.Numbers("--language-sampling-alpha",
        "without --data weights, language l is drawn with p ∝ (bytes_l/total)^alpha (default 0.3)");

    private readonly Option<bool> _mix = new("--mix-languages")
    {
        Description = "mix the languages within each batch (one tokenizer sampler over all; "
            + "language \"all\") instead of one language per batch with its own sampler",
    };

    private readonly Option<bool> _embedLang = new("--embed-lang-id")
    {
        Description = "give the hypernetwork a learned embedding per language, appended to each "
            + "surface form (hn_embed_lang_id; zett transfer --lang CODE picks the row)",
    };

    private readonly Option<string[]> _trainTokenizer = new("--train-tokenizer")
    {
        Description = "a fixed target tokenizer of the main stage (name or path); repeat for "
            + "several, one drawn per update [default: a tokenizer sampled per batch]",
        HelpName = "NAME|PATH",
    };

    private readonly Option<int> _pieces = CommonOptions.Integer("--pieces",
        "pieces of the tokenizer sampled per batch when no --train-tokenizer is given (default "
        + "32768; a multiple of 128)", 1);

    private readonly Option<int> _vocabSubsample = CommonOptions.Integer("--vocab-subsample",
        "main stage: at most N vocabulary rows per batch, the batch's own tokens plus random "
        + "others [default: the whole vocabulary]", 1);

    private readonly Option<int> _steps = CommonOptions.Integer("--steps",
        "updates to run, both stages (default 1000)", 1);

    private readonly Option<int> _identitySteps = CommonOptions.Integer("--identity-steps",
        "identity-stage updates before the main stage [default: steps/20, at most 10000]", 0);

    private readonly Option<double[]> _maxMinutes = CommonOptions.Numbers("--max-minutes",
        "time budget: the schedule is laid out for the updates that fit");

    private readonly Option<double[]> _lr = CommonOptions.Numbers("--lr",
        "peak learning rate of the identity stage (default 3e-4)");

    private readonly Option<double[]> _mainLr = CommonOptions.Numbers("--main-lr",
        "peak learning rate of the main stage (default 6e-5)");

    private readonly Option<double[]> _lrAlpha = CommonOptions.Numbers("--learning-rate-alpha",
        "the main stage's learning rate at the end of its cosine, as a fraction of its peak "
        + "(default 0.1; 1: constant, as the reference's n-shot runs)");

    private readonly Option<string> _backbone = CommonOptions.Choice("--backbone-training",
        "full: train the language model's weights too (fp32; the embeddings stay the "
        + "hypernetwork's): n-shot continued training from --init-from; writes OUT/full_model and, "
        + "with one --train-tokenizer, OUT/model", "no", "no", "full");

    private readonly Option<bool> _lexicalToInit = new("--lexical-loss-to-init")
    {
        Description = "the lexical loss pulls every row towards the hypernetwork's initial "
            + "prediction (n-shot runs; one --train-tokenizer, no --vocab-subsample)",
    };

    private readonly Option<int> _warmup = CommonOptions.Integer("--warmup-steps",
        "main-stage warm-up updates [default: 1/19 of the main updates]", 0);

    private readonly Option<int> _identityBatch = CommonOptions.Integer("--identity-batch",
        "tokens per identity micro-batch (default 16384, at most the vocabulary)", 1);

    private readonly Option<int> _batch = CommonOptions.Integer("--batch",
        "sequences per main-stage micro-batch (default 128)", 1);

    private readonly Option<int> _blockSize = CommonOptions.Integer("--block-size",
        "tokens per sequence (default 128)", 2);

    private readonly Option<double[]> _lexical = CommonOptions.Numbers("--lexical-weight",
        "weight of the lexical loss (default 0.5)");

    private readonly Option<int> _accumulation = CommonOptions.Integer("--accumulation",
        "micro-batches per update (default 1)", 1);

    private readonly Option<double[]> _clip = CommonOptions.Numbers("--max-grad-norm",
        "global-norm clip of the hypernetwork's gradients (default 0.1)");

    private readonly Option<int> _seed = CommonOptions.Integer("--seed",
        "seed of the initialisation and the batches (default 0)", 0);

    private readonly Option<int> _saveEvery = CommonOptions.Integer("--save-every",
        "checkpoint every N updates (default: at the end only)", 1);

    private readonly Option<int> _logEvery = CommonOptions.Integer("--log-every",
        "progress on stderr every N updates (default 10; the JSONL log has every update)", 1);

    private readonly Option<string> _validTokenizer = CommonOptions.Optional("--valid-tokenizer",
        "NAME|PATH", "validate by transferring the model to this tokenizer");

    private readonly Option<string[]> _validData = new("--valid-data")
    {
        Description = "validation text of a training language (default: the first): bits per "
            + "byte by zett eval's protocol, logged as valid/{lang}_bpb; repeat for more languages",
        HelpName = "FILE[:lang=CODE]",
    };

    private readonly Option<int> _validEvery = CommonOptions.Integer("--valid-every",
        "validate every N main-stage updates (default 10000; also before the main stage and "
        + "at the end)", 1);

    private readonly Option<string> _resume = CommonOptions.Optional("--resume", "DIR",
        "continue from a checkpoint (OUT/checkpoints/step-N) with the same options");

    private readonly Option<string> _initFrom = CommonOptions.Optional("--init-from", "DIR",
        "start from a hypernetwork made for this model (a zett train output or a released "
        + "checkpoint): its parameters and shape; optimiser and schedule start afresh");

    private readonly Option<int> _hidden = CommonOptions.Integer("--hn-hidden-size",
        "hypernetwork width H (default: the model's hidden size)", 1);

    private readonly Option<int> _intermediate = CommonOptions.Integer(
        "--hn-intermediate-size", "hypernetwork intermediate width (default 2H)", 1);

    private readonly Option<int> _layers = CommonOptions.Integer("--hn-layers",
        "hypernetwork encoder layers (default 3)", 0);

    private readonly Option<int> _heads = CommonOptions.Integer("--hn-heads",
        "hypernetwork attention heads (default H/64)", 1);

    private readonly Option<int> _maxLen = CommonOptions.Integer("--hn-surface-maxlen",
        "surface-form length L (default 7)", 1);

    // --device and --gpu read as in every command that computes (the training step, with the
    // frozen LM, runs where the hypernetwork runs).
    private readonly ComputeOptions _compute = new();

    private readonly Option<string> _precision = CommonOptions.Choice("--precision",
        "hypernetwork compute: fp32, or bf16 copies of the fp32 master weights (the reference's "
        + "mixed precision; gradients, masters and AdamW state stay fp32)", "fp32", "fp32",
        "bf16");

    private readonly Option<int> _worldSize = CommonOptions.Integer("--world-size",
        "data parallelism: ranks (processes, one device each) of the job; with --rank and "
        + "--dist-dir. Update s uses micro-batches s·k·R … s·k·R + k·R − 1, rank r every R-th "
        + "from r: the run of one process with --accumulation k·R", 1, "R");

    private readonly Option<int> _rank = CommonOptions.Integer("--rank",
        "this process's rank in [0, R); only rank 0 writes --out", 0, "r");

    private readonly Option<string> _distDir = CommonOptions.Optional("--dist-dir", "DIR",
        "the ranks' rendezvous directory (the same for every rank, one job at a time; the CPU "
        + "backend sums the gradients through it, CUDA with NCCL)");

    private readonly Option<double[]> _distTimeout = CommonOptions.Numbers("--dist-timeout",
        "seconds a rank waits for the others (default 1800; rank 0 validates while they wait)");

    public TrainCommand() : base("train",
        "train a hypernetwork for a model: the identity stage, then the main stage on --data")
    {
        foreach (Option option in (Option[])[_model, _out, _data, _alpha, _mix, _embedLang,
            _trainTokenizer, _pieces,
            _vocabSubsample, _steps, _identitySteps, _maxMinutes, _lr, _mainLr, _warmup, _lrAlpha,
            _identityBatch, _batch, _blockSize, _lexical, _accumulation, _clip, _seed,
            _saveEvery, _logEvery, _validTokenizer, _validData, _validEvery, _resume, _initFrom, _backbone, _lexicalToInit, _hidden,
            _intermediate, _layers, _heads, _maxLen, _precision, _worldSize, _rank, _distDir,
            _distTimeout])
        {
            Options.Add(option);
        }
        _compute.AddTo(this, [_compute.Device, _compute.Gpu]);
    }

    protected override int Run(ParseResult parse, CliConsole console)
    {
        static double One(double[]? values, double fallback) =>
            values is { Length: > 0 } ? values[0] : fallback;
        static int Or(int value, int fallback) => value > 0 ? value : fallback;
        DistributedOptions? distributed = null;
        int given = (parse.IsGiven(_worldSize) ? 1 : 0) + (parse.IsGiven(_rank) ? 1 : 0)
            + (parse.GetValue(_distDir) is null ? 0 : 1);
        if (given is 1 or 2)
        {
            throw new Runtime.ZettException("data parallelism needs --world-size, --rank and "
                + "--dist-dir together");
        }
        if (given == 3)
        {
            distributed = new DistributedOptions(parse.GetValue(_worldSize), parse.GetValue(_rank),
                parse.GetValue(_distDir)!, One(parse.GetValue(_distTimeout),
                    DistributedOptions.DefaultTimeoutSeconds));
        }
        else if (parse.IsGiven(_distTimeout))
        {
            throw new Runtime.ZettException("--dist-timeout is for data parallelism (--world-size, "
                + "--rank, --dist-dir)");
        }
        var options = new TrainOptions
        {
            ModelDirectory = parse.GetRequiredValue(_model),
            OutputDirectory = parse.GetRequiredValue(_out),
            Data = (parse.GetValue(_data) ?? []).Select(TextSource.Parse).ToArray(),
            LanguageSamplingAlpha = One(parse.GetValue(_alpha), 0.3),
            MixLanguages = parse.GetValue(_mix),
            EmbedLangId = parse.GetValue(_embedLang),
            TrainTokenizers = parse.GetValue(_trainTokenizer) ?? [],
            VocabularySubsample = parse.GetValue(_vocabSubsample),
            SampledPieces = Or(parse.GetValue(_pieces), 32768),
            Steps = Or(parse.GetValue(_steps), 1000),
            IdentitySteps = parse.IsGiven(_identitySteps) ? parse.GetValue(_identitySteps) : null,
            MaxMinutes = One(parse.GetValue(_maxMinutes), 0),
            LearningRate = One(parse.GetValue(_lr), 3e-4),
            MainLearningRate = One(parse.GetValue(_mainLr), 6e-5),
            WarmupSteps = parse.IsGiven(_warmup) ? parse.GetValue(_warmup) : null,
            Alpha = One(parse.GetValue(_lrAlpha), 0.1),
            BackboneTraining = parse.GetValue(_backbone) == "full",
            LexicalLossToInit = parse.GetValue(_lexicalToInit),
            IdentityBatch = Or(parse.GetValue(_identityBatch), 16384),
            BatchSize = Or(parse.GetValue(_batch), 128),
            BlockSize = Or(parse.GetValue(_blockSize), 128),
            LexicalWeight = One(parse.GetValue(_lexical), 0.5),
            Accumulation = Or(parse.GetValue(_accumulation), 1),
            MaxGradNorm = One(parse.GetValue(_clip), 0.1),
            Seed = parse.GetValue(_seed),
            SaveEvery = parse.GetValue(_saveEvery),
            LogEvery = Or(parse.GetValue(_logEvery), 10),
            ValidTokenizer = parse.GetValue(_validTokenizer),
            ValidData = (parse.GetValue(_validData) ?? []).Select(ValidSet.Parse).ToArray(),
            ValidEvery = Or(parse.GetValue(_validEvery), 10000),
            Resume = parse.GetValue(_resume),
            InitFrom = parse.GetValue(_initFrom),
            Device = parse.GetValue(_compute.Device)!,
            Gpu = parse.GetValue(_compute.Gpu),
            Precision = parse.GetValue(_precision) == "bf16" ? HypernetPrecision.BFloat16
                : HypernetPrecision.Float32,
            Shape = new HypernetShape(parse.GetValue(_hidden), parse.GetValue(_intermediate),
                parse.GetResult(_layers) is null ? 3 : parse.GetValue(_layers),
                parse.GetValue(_heads), Or(parse.GetValue(_maxLen), 7)),
            Distributed = distributed,
        };
        TrainResult r = HypernetTraining.Run(options, line => console.Error.WriteLine(line));
        string valid = r.ValidByLang is { Count: > 0 } byLang
            ? ", validation " + string.Join(", ", byLang.Select(kv => Inv($"{kv.Key} {kv.Value:F4}")))
                + " bits/byte"
            : "";
        if (distributed is { Rank: > 0 })
        {
            console.Out.WriteLine(Inv($"rank {distributed.Rank} of {distributed.WorldSize}: ")
                + Inv($"{r.Steps} updates, loss {r.FirstLoss:G4} → {r.LastLoss:G4} (rank 0 wrote ")
                + Inv($"{options.OutputDirectory})"));
            return 0;
        }
        console.Out.WriteLine(Inv($"wrote {options.OutputDirectory}: {r.Steps} updates, loss {r.FirstLoss:G4} → ")
            + Inv($"{r.LastLoss:G4}, {r.TokensPerSecond:F0} tokens/s over {r.Seconds:F1} s") + valid);
        return 0;
    }
}
