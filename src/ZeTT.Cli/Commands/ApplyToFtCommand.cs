using System.CommandLine;
using ZeTT.Runtime.Hub;
using ZeTT.Runtime.Transfer;

namespace ZeTT.Cli;

/// <summary><c>zett apply-to-ft</c>: carry a tokenizer transfer over to a fine-tuned model.</summary>
internal sealed class ApplyToFtCommand : ZettCommand
{
    private readonly Option<string> _base = CommonOptions.Required("--base", "DIR|NAME",
        "the base model B (a directory or Hugging Face name, as for every model here)");

    private readonly Option<string> _ft = CommonOptions.Required("--ft", "DIR|NAME",
        "a fine-tune F of B (same tokenizer)");

    private readonly Option<string> _transferred = CommonOptions.Required("--transferred-base",
        "DIR|NAME", "B transferred to the new tokenizer (B')");

    private readonly Option<string> _out = CommonOptions.Required("--out", "DIR",
        "output: with one lambda the model itself, with several one model per lambda in "
        + "OUT/lambda_<value>");

    private readonly Option<double[]> _lambdas = CommonOptions.Numbers("--lambdas",
        "interpolation weights: every non-embedding tensor becomes "
        + "F + lambda * (B' - B); embeddings and tokenizer are B''s, the chat template F's");

    private readonly Option<bool> _overwrite = CommonOptions.Overwrite();

    public ApplyToFtCommand() : base("apply-to-ft",
        "apply a transferred base model's new tokenizer to a fine-tune of it")
    {
        _lambdas.DefaultValueFactory = _ => [0.5];
        Options.Add(_base);
        Options.Add(_ft);
        Options.Add(_transferred);
        Options.Add(_out);
        Options.Add(_lambdas);
        Options.Add(_overwrite);
    }

    protected override int Run(ParseResult parse, CliConsole console)
    {
        string Model(Option<string> o) =>
            CommonOptions.Locate(parse.GetRequiredValue(o), HubRepoKind.Model, console);
        ApplyToFineTuned.Run(Model(_base), Model(_ft), Model(_transferred), parse.GetRequiredValue(_out),
            parse.GetRequiredValue(_lambdas), parse.GetValue(_overwrite),
            line => console.Out.WriteLine(line));
        return 0;
    }
}
