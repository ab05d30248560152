using System.CommandLine;
using System.Globalization;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Hub;
using ZeTT.Runtime.Tokenizers;

namespace ZeTT.Cli;

/// <summary><c>zett surface-forms</c>: the hypernetwork's input matrix for a target tokenizer,
/// as transfer prepares it.</summary>
internal sealed class SurfaceFormsCommand : ZettCommand
{
    private readonly Option<string> _hn = CommonOptions.Required("--hn-tokenizer", "PATH",
        "the hypernetwork's tokenizer (converted plainly, pad := eos)");

    private readonly Option<string> _tokenizer = CommonOptions.Required("--tokenizer", "PATH|NAME",
        "the target (converted with whitespace consistency, special tokens matched to "
        + "--model-tokenizer)");

    private readonly Option<int> _maxLen = CommonOptions.Integer("--maxlen",
        "surface-form length (hn_surface_maxlen of the hypernetwork)", min: 1);

    private readonly Option<string> _out = CommonOptions.Required("--out", "FILE",
        "output safetensors: tensor surface_forms, int32 [target vocab, maxlen]");

    private readonly Option<string> _modelTokenizer = CommonOptions.Optional("--model-tokenizer",
        "PATH", "the model's tokenizer, whose special-token ids the target takes [default: the "
        + "--hn-tokenizer]");

    private readonly Option<bool> _overwrite = CommonOptions.Overwrite();

    public SurfaceFormsCommand() : base("surface-forms",
        "write the surface-form matrix of a target tokenizer")
    {
        _maxLen.Required = true;
        Options.Add(_hn);
        Options.Add(_tokenizer);
        Options.Add(_maxLen);
        Options.Add(_out);
        Options.Add(_modelTokenizer);
        Options.Add(_overwrite);
    }

    protected override int Run(ParseResult parse, CliConsole console)
    {
        string output = parse.GetRequiredValue(_out);
        CommonOptions.CheckOutput(output, parse.GetValue(_overwrite), directory: false);
        string Tokenizer(string value) => CommonOptions.Locate(value, HubRepoKind.Tokenizer, console);
        TransferTokenizers t = TransferTokenizers.Prepare(Tokenizer(parse.GetRequiredValue(_hn)),
            Tokenizer(parse.GetRequiredValue(_tokenizer)),
            parse.GetValue(_modelTokenizer) is { } mt ? Tokenizer(mt) : null, parse.GetValue(_maxLen));
        SurfaceFormMatrix m = t.SurfaceForms;
        SafetensorsWriter.Write(output,
            [SafetensorsEntry.FromInt32("surface_forms", [m.Rows, m.MaxLen], m.Ids)],
            new Dictionary<string, string>
            {
                ["n_truncated"] = m.TruncatedCount.ToString(CultureInfo.InvariantCulture),
                ["pad_id"] = m.PadId.ToString(CultureInfo.InvariantCulture),
            });
        console.Out.WriteLine($"surface forms [{m.Rows}, {m.MaxLen}] (pad {m.PadId}) → {output}");
        console.Out.WriteLine($"Truncated {m.TruncatedCount} tokens.");
        return 0;
    }
}
