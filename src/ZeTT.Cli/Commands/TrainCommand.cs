using System.CommandLine;
using ZeTT.Runtime.Training;

namespace ZeTT.Cli;

/// <summary><c>zett train</c>: train a hypernetwork for a base model.</summary>
internal sealed class TrainCommand : ZettCommand
{
    private static string Inv(FormattableString text) => FormattableString.Invariant(text);

    private readonly Option<string> _model = CommonOptions.Required("--model", "DIR",
        "the base model (Hugging Face directory with tokenizer.json)");

    private readonly Option<string> _out = CommonOptions.Required("--out", "DIR",
        "output: the final hypernetwork, checkpoints/step-N, train_log.jsonl");

    private readonly Option<int> _steps = CommonOptions.Integer("--steps",
        "updates to run (default 1000)", 1);

    private readonly Option<double[]> _maxMinutes = CommonOptions.Numbers("--max-minutes",
        "time budget: the schedule is laid out for the updates that fit");

    private readonly Option<double[]> _lr = CommonOptions.Numbers("--lr",
        "peak learning rate (default 3e-4, the reference's identity stage)");

    private readonly Option<int> _batch = CommonOptions.Integer("--batch",
        "tokens per micro-batch (default 16384, at most the vocabulary)", 1);

    private readonly Option<int> _accumulation = CommonOptions.Integer("--accumulation",
        "micro-batches per update (default 1)", 1);

    private readonly Option<double[]> _clip = CommonOptions.Numbers("--max-grad-norm",
        "global-norm clip of the hypernetwork's gradients (default 0.1)");

    private readonly Option<int> _seed = CommonOptions.Integer("--seed",
        "seed of the initialisation and the batches (default 0)", 0);

    private readonly Option<int> _saveEvery = CommonOptions.Integer("--save-every",
        "checkpoint every N updates (default: at the end only)", 1);

    private readonly Option<string> _resume = CommonOptions.Optional("--resume", "DIR",
        "continue from a checkpoint (OUT/checkpoints/step-N) with the same options");

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

    public TrainCommand() : base("train",
        "train a hypernetwork for a model (identity stage: its own embeddings from single ids)")
    {
        foreach (Option option in (Option[])[_model, _out, _steps, _maxMinutes, _lr, _batch,
            _accumulation, _clip, _seed, _saveEvery, _resume, _hidden, _intermediate, _layers,
            _heads, _maxLen])
        {
            Options.Add(option);
        }
    }

    protected override int Run(ParseResult parse, CliConsole console)
    {
        static double One(double[]? values, double fallback) =>
            values is { Length: > 0 } ? values[0] : fallback;
        static int Or(int value, int fallback) => value > 0 ? value : fallback;
        var options = new TrainOptions
        {
            ModelDirectory = parse.GetRequiredValue(_model),
            OutputDirectory = parse.GetRequiredValue(_out),
            Steps = Or(parse.GetValue(_steps), 1000),
            MaxMinutes = One(parse.GetValue(_maxMinutes), 0),
            LearningRate = One(parse.GetValue(_lr), 3e-4),
            IdentityBatch = Or(parse.GetValue(_batch), 16384),
            Accumulation = Or(parse.GetValue(_accumulation), 1),
            MaxGradNorm = One(parse.GetValue(_clip), 0.1),
            Seed = parse.GetValue(_seed),
            SaveEvery = parse.GetValue(_saveEvery),
            Resume = parse.GetValue(_resume),
            Shape = new HypernetShape(parse.GetValue(_hidden), parse.GetValue(_intermediate),
                parse.GetResult(_layers) is null ? 3 : parse.GetValue(_layers),
                parse.GetValue(_heads), Or(parse.GetValue(_maxLen), 7)),
        };
        TrainResult r = HypernetTraining.Run(options, line => console.Error.WriteLine(line));
        console.Out.WriteLine(Inv($"wrote {options.OutputDirectory}: {r.Steps} updates, loss {r.FirstLoss:G4} → ")
            + Inv($"{r.LastLoss:G4}, {r.TokensPerSecond:F0} tokens/s over {r.Seconds:F1} s"));
        return 0;
    }
}
