using System.CommandLine;
using System.CommandLine.Parsing;
using ZeTT.Runtime;
using ZeTT.Runtime.Hub;
using ZeTT.Runtime.Transfer;

namespace ZeTT.Cli;

/// <summary><c>zett transfer</c>: a model under a new tokenizer (ZETT.md §4).</summary>
internal sealed class TransferCommand : ZettCommand
{
    private readonly Option<string> _model = CommonOptions.Optional("--model", "DIR|NAME",
        "Hugging Face model directory (config.json, safetensors, tokenizer.json) or name "
        + "(org/name, from the Hugging Face cache)");

    private readonly Option<string?> _revision = CommonOptions.Revision();

    private readonly Option<string> _tokenizer = CommonOptions.Optional("--tokenizer", "PATH|NAME",
        "target tokenizer: tokenizer.json, a directory holding one, a built-in name (gpt2, "
        + "r50k_base, cl100k_base, o200k_base) or a Hugging Face name (org/name)");

    private readonly Option<string> _out = CommonOptions.Optional("--out", "DIR",
        "output directory (written atomically: it appears only when complete); with --format "
        + "gguf, the .gguf file");

    private readonly Option<string> _hypernet = CommonOptions.Optional("--hypernet", "DIR|NAME",
        "ZeTT hypernetwork directory (config.json, weights, tokenizer.json) or Hugging Face "
        + "name; required by --method hypernet");

    private readonly Option<string> _method = CommonOptions.Choice("--method",
        "hypernet: embeddings predicted by the hypernetwork; fvt: each token the mean of the "
        + "source embeddings of its pieces under the model's own tokenizer (no hypernetwork)",
        "hypernet", "hypernet", "fvt");

    private readonly Option<string?> _lang = CommonOptions.Language();

    private readonly ComputeOptions _compute = new();

    private readonly Option<string> _modelClass = CommonOptions.Choice("--model-class",
        "check the checkpoint kind: causal (a predicted bias is saved beside as "
        + "bias.safetensors), masked (bias into lm_head.bias), base [default: from the "
        + "directory]", null, "causal", "masked", "base");

    private readonly Option<bool> _overwrite = CommonOptions.Overwrite();

    private readonly Option<string> _format = CommonOptions.Choice("--format",
        "hf: a Hugging Face directory; gguf: --out is one .gguf file for llama.cpp; both: the "
        + "directory with model.gguf inside", "hf", "hf", "gguf", "both");

    private readonly Option<string> _ggufType = ExportGgufCommand.GgufTypeOption();

    private readonly Option<string[]> _evalData = new("--eval-data")
    {
        Description = "evaluate the base and the transferred model on this text as zett eval "
            + "does (.txt, .jsonl, .parquet; repeat for more): bits per byte in the summary and "
            + "the model card",
        HelpName = "FILE",
    };

    private readonly Option<long> _evalMaxBytes = new("--eval-max-bytes")
    {
        Description = "evaluate at most this many UTF-8 bytes of --eval-data",
        HelpName = "N",
    };

    private readonly Option<int> _evalContext = CommonOptions.Integer("--eval-context",
        "evaluation window in tokens [default: min(1024, max_position_embeddings)]", min: 2);

    public TransferCommand() : base("transfer", "transfer a model to a new tokenizer "
        + "(hypernetwork or FVT); with no options: the built-in default, assets/stories260K to "
        + "gpt2 with FVT, written to ./out/default")
    {
        Options.Add(_model);
        Options.Add(_revision);
        Options.Add(_tokenizer);
        Options.Add(_out);
        Options.Add(_hypernet);
        Options.Add(_method);
        Options.Add(_lang);
        _compute.AddTo(this);
        Options.Add(_modelClass);
        Options.Add(_overwrite);
        Options.Add(_format);
        Options.Add(_ggufType);
        Options.Add(_evalData);
        Options.Add(_evalMaxBytes);
        Options.Add(_evalContext);
        Validators.Add(result =>
        {
            if (result.GetValue(_method) != "fvt")
            {
                return;
            }
            foreach (Option option in _compute.All.Append(_hypernet).Append(_lang))
            {
                if (result.GetResult(option) is { Implicit: false })
                {
                    result.AddError($"{option.Name} does not apply to --method fvt (no hypernetwork "
                        + "runs: each token is a mean of the model's embeddings, on the cpu)");
                    return;
                }
            }
        });
    }

    protected override int Run(ParseResult parse, CliConsole console)
    {
        TransferOptions options;
        if (parse.CommandResult.Children.All(c => c is OptionResult { Implicit: true }))
        {
            options = DefaultTransfer.Options();
            console.Out.WriteLine($"zett transfer (built-in default): {options.ModelDirectory} -> "
                + $"tokenizer {options.Tokenizer}, method fvt, model class causal, out "
                + $"{DefaultTransfer.OutputPath}");
        }
        else
        {
            string? model = parse.GetValue(_model), tokenizer = parse.GetValue(_tokenizer),
                output = parse.GetValue(_out);
            if (model is null || tokenizer is null || output is null)
            {
                string missing = string.Join(", ", new[] { ("--model DIR", model), ("--tokenizer "
                    + "PATH|NAME", tokenizer), ("--out DIR", output) }
                    .Where(p => p.Item2 is null).Select(p => p.Item1));
                throw new ZettException($"transfer needs --model, --tokenizer and --out (missing "
                    + $"{missing}); run zett transfer with no options for the built-in default");
            }
            string? hypernet = parse.GetValue(_hypernet);
            string modelDirectory = CommonOptions.Locate(model, HubRepoKind.Model, console,
                parse.GetValue(_revision));
            options = new TransferOptions
            {
                ModelDirectory = modelDirectory,
                ModelLabel = modelDirectory == model ? null : model,
                Tokenizer = CommonOptions.Locate(tokenizer, HubRepoKind.Tokenizer, console),
                TokenizerLabel = tokenizer,
                OutputDirectory = output,
                HypernetDirectory = hypernet is null ? null
                    : CommonOptions.Locate(hypernet, HubRepoKind.Hypernetwork, console),
                HypernetLabel = hypernet,
                Method = parse.GetValue(_method) == "fvt" ? TransferMethod.Fvt : TransferMethod.Hypernet,
                Language = parse.GetValue(_lang),
                Device = parse.GetValue(_compute.Device)!,
                Gpu = parse.GetValue(_compute.Gpu),
                Precision = _compute.Precision(parse),
                BatchSize = parse.GetValue(_compute.BatchSize),
                ModelClass = parse.GetValue(_modelClass) switch
                {
                    null => null,
                    "masked" => ModelClass.Masked,
                    "base" => ModelClass.Base,
                    _ => ModelClass.Causal,
                },
                Overwrite = parse.GetValue(_overwrite),
                Format = parse.GetValue(_format) switch
                {
                    "gguf" => TransferFormat.Gguf,
                    "both" => TransferFormat.Both,
                    _ => TransferFormat.Hf,
                },
                GgufType = ExportGgufCommand.ParseGgufType(parse.GetValue(_ggufType)),
                EvalData = parse.GetValue(_evalData) ?? [],
                EvalMaxBytes = parse.IsGiven(_evalMaxBytes) ? parse.GetValue(_evalMaxBytes) : null,
                EvalContext = parse.IsGiven(_evalContext) ? parse.GetValue(_evalContext) : null,
            };
            if (options.EvalData.Count == 0 && (options.EvalMaxBytes is not null
                || options.EvalContext is not null))
            {
                throw new ZettException("--eval-max-bytes and --eval-context need --eval-data FILE");
            }
        }
        TransferResult result = TokenizerTransfer.Run(options, ProgressBar.ForConsole(console),
            line => console.Error.WriteLine(line));
        foreach (string line in result.SummaryLines())
        {
            console.Out.WriteLine(line);
        }
        return 0;
    }
}
