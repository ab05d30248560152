using System.Globalization;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Tokenizers;

namespace ZeTT.Cli;

/// <summary><c>zett surface-forms</c>: the hypernetwork's input matrix for a target tokenizer,
/// as transfer prepares it.</summary>
internal sealed class SurfaceFormsCommand : ICommand
{
    public string Name => "surface-forms";

    public string Summary => "write the surface-form matrix of a target tokenizer";

    public string Usage =>
        "usage: zett surface-forms --hn-tokenizer PATH --tokenizer PATH|NAME --maxlen N\n" +
        "                          --out FILE.safetensors [--model-tokenizer PATH]\n" +
        "  --hn-tokenizer     the hypernetwork's tokenizer (converted plainly, pad := eos)\n" +
        "  --tokenizer        the target (converted with whitespace consistency, special\n" +
        "                     tokens matched to --model-tokenizer, default the hn tokenizer)\n" +
        "  --maxlen           surface-form length (hn_surface_maxlen of the hypernetwork)\n" +
        "  writes tensor surface_forms, int32 [target vocab, maxlen]";

    public int Run(CommandLine args, CliConsole console)
    {
        string hn = args.Required("hn-tokenizer");
        string target = args.Required("tokenizer");
        int maxLen = args.Int("maxlen", 0, min: 1);
        if (maxLen == 0)
        {
            throw new UsageException("missing required option --maxlen");
        }
        string output = args.Required("out");
        string? model = args.Optional("model-tokenizer");
        args.EnsureAllUsed();

        TransferTokenizers t = TransferTokenizers.Prepare(hn, target, model, maxLen);
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
