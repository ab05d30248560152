using System.CommandLine;
using System.Globalization;
using ZeTT.Runtime.Hub;
using ZeTT.Runtime.Transfer;

namespace ZeTT.Cli;

/// <summary><c>zett predict</c>: run a hypernetwork over surface forms or tokens.</summary>
internal sealed class PredictCommand : ZettCommand
{
    private readonly Option<string> _hypernet = CommonOptions.Required("--hypernet", "DIR|NAME",
        "ZeTT hypernetwork directory or Hugging Face name");

    private readonly Option<string> _sourceEmbeddings = CommonOptions.Optional(
        "--source-embeddings", "FILE", "safetensors with embeddings_in [V, n_embd] (and "
        + "embeddings_out [V, n_embd] for untied models); or --model");

    private readonly Option<string> _model = CommonOptions.Optional("--model", "DIR|NAME",
        "a Hugging Face model directory or name to take the source embeddings from; or "
        + "--source-embeddings");

    private readonly Option<string?> _revision = CommonOptions.Revision();

    private readonly Option<string> _surfaceForms = CommonOptions.Optional("--surface-forms",
        "FILE", "safetensors with surface_forms I32 [N, hn_surface_maxlen]; or --tokens");

    private readonly Option<string> _tokens = CommonOptions.Optional("--tokens", "FILE",
        "a text file, one byte-level token per line (surface forms made with the hypernetwork's "
        + "tokenizer, converted to byte level); or --surface-forms");

    private readonly Option<string> _out = CommonOptions.Required("--out", "FILE",
        "output safetensors: embeddings_in F32 [N, n_embd], embeddings_out F32 [N, n_embd] "
        + "(untied), bias F32 [N] (when predicted)");

    private readonly Option<string?> _lang = CommonOptions.Language();

    private readonly ComputeOptions _compute = new();

    private readonly Option<bool> _overwrite = CommonOptions.Overwrite();

    public PredictCommand() : base("predict",
        "predict embeddings for surface forms or tokens with a hypernetwork")
    {
        Options.Add(_hypernet);
        Options.Add(_sourceEmbeddings);
        Options.Add(_model);
        Options.Add(_revision);
        Options.Add(_surfaceForms);
        Options.Add(_tokens);
        Options.Add(_out);
        Options.Add(_lang);
        _compute.AddTo(this);
        Options.Add(_overwrite);
    }

    protected override int Run(ParseResult parse, CliConsole console)
    {
        CommonOptions.CheckOutput(parse.GetRequiredValue(_out), parse.GetValue(_overwrite), directory: false);
        var options = new PredictOptions
        {
            HypernetDirectory = CommonOptions.Locate(parse.GetRequiredValue(_hypernet),
                HubRepoKind.Hypernetwork, console),
            SourceEmbeddingsFile = parse.GetValue(_sourceEmbeddings),
            ModelDirectory = parse.GetValue(_model) is { } model
                ? CommonOptions.Locate(model, HubRepoKind.Model, console, parse.GetValue(_revision)) : null,
            SurfaceFormsFile = parse.GetValue(_surfaceForms),
            TokensFile = parse.GetValue(_tokens),
            OutputFile = parse.GetRequiredValue(_out),
            Language = parse.GetValue(_lang),
            Device = parse.GetValue(_compute.Device)!,
            Gpu = parse.GetValue(_compute.Gpu),
            Precision = _compute.Precision(parse),
            BatchSize = parse.GetValue(_compute.BatchSize),
        };
        PredictResult result = EmbeddingPrediction.Run(options, ProgressBar.ForConsole(console),
            line => console.Error.WriteLine(line));
        string truncated = options.TokensFile is null ? ""
            : string.Create(CultureInfo.InvariantCulture, $", {result.TruncatedTokens} surface forms truncated");
        console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"wrote {options.OutputFile}: {result.Rows} tokens ({result.Backend}){truncated}"));
        return 0;
    }
}
