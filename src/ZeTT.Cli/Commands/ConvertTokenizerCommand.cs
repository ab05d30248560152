using System.CommandLine;
using ZeTT.Runtime.Hub;
using ZeTT.Runtime.Tokenizers;

namespace ZeTT.Cli;

/// <summary><c>zett convert-tokenizer</c>: a tokenizer converted to byte level as the reference
/// converts it, written as tokenizer.json (+ tokenizer_config.json, special_tokens_map.json).
/// </summary>
internal sealed class ConvertTokenizerCommand : ZettCommand
{
    private readonly Option<string> _tokenizer = CommonOptions.Required("--tokenizer", "PATH|NAME",
        "tokenizer.json, a directory with one, gpt2, r50k_base, cl100k_base, o200k_base, or a "
        + "Hugging Face name (org/name)");

    private readonly Option<string> _out = CommonOptions.Required("--out", "DIR",
        "directory to write tokenizer.json, tokenizer_config.json and special_tokens_map.json into");

    private readonly Option<bool> _whitespace = new("--whitespace-consistent")
    {
        Description = "replace whitespace-run tokens, add the canonical runs",
    };

    private readonly Option<string> _match = CommonOptions.Optional("--match-special-tokens-to",
        "PATH|NAME", "put the special tokens at this tokenizer's ids");

    private readonly Option<bool> _overwrite = CommonOptions.Overwrite();

    public ConvertTokenizerCommand() : base("convert-tokenizer",
        "convert a tokenizer to byte level (the ids the reference assigns)")
    {
        Options.Add(_tokenizer);
        Options.Add(_out);
        Options.Add(_whitespace);
        Options.Add(_match);
        Options.Add(_overwrite);
    }

    protected override int Run(ParseResult parse, CliConsole console)
    {
        string source = parse.GetRequiredValue(_tokenizer);
        string output = parse.GetRequiredValue(_out);
        string? match = parse.GetValue(_match);
        CommonOptions.CheckOutput(output, parse.GetValue(_overwrite), directory: true);
        HfTokenizer original = HfTokenizer.Load(CommonOptions.Locate(source, HubRepoKind.Tokenizer, console));
        HfTokenizer converted = ByteLevelConverter.Convert(original, parse.GetValue(_whitespace),
            match is null ? null
            : HfTokenizer.Load(CommonOptions.Locate(match, HubRepoKind.Tokenizer, console)));
        converted.Save(output);
        string kept = converted.OriginalVocabSize is int n
            ? $"ids below {n} unchanged, {converted.VocabSize - n} appended"
            : "special tokens moved to the matched tokenizer's ids";
        console.Out.WriteLine(
            $"{source}: {original.VocabSize} → {converted.VocabSize} tokens ({kept}); wrote {output}");
        return 0;
    }
}
