using ZeTT.Runtime.Tokenizers;

namespace ZeTT.Cli;

/// <summary><c>zett convert-tokenizer</c>: a tokenizer converted to byte level as the reference
/// converts it, written as tokenizer.json (+ tokenizer_config.json, special_tokens_map.json).
/// </summary>
internal sealed class ConvertTokenizerCommand : ICommand
{
    public string Name => "convert-tokenizer";

    public string Summary => "convert a tokenizer to byte level (the ids the reference assigns)";

    public string Usage =>
        "usage: zett convert-tokenizer --tokenizer PATH|NAME --out DIR [--whitespace-consistent]\n" +
        "                              [--match-special-tokens-to PATH|NAME]\n" +
        "  --tokenizer                 tokenizer.json, a directory with one, or gpt2, r50k_base,\n" +
        "                              cl100k_base, o200k_base\n" +
        "  --whitespace-consistent     replace whitespace-run tokens, add the canonical runs\n" +
        "  --match-special-tokens-to   put the special tokens at this tokenizer's ids";

    public int Run(CommandLine args, CliConsole console)
    {
        string source = args.Required("tokenizer");
        string output = args.Required("out");
        bool whitespace = args.Flag("whitespace-consistent");
        string? match = args.Optional("match-special-tokens-to");
        args.EnsureAllUsed();

        HfTokenizer original = HfTokenizer.Load(source);
        HfTokenizer converted = ByteLevelConverter.Convert(original, whitespace,
            match is null ? null : HfTokenizer.Load(match));
        converted.Save(output);
        string kept = converted.OriginalVocabSize is int n
            ? $"ids below {n} unchanged, {converted.VocabSize - n} appended"
            : "special tokens moved to the matched tokenizer's ids";
        console.Out.WriteLine(
            $"{source}: {original.VocabSize} → {converted.VocabSize} tokens ({kept}); wrote {output}");
        return 0;
    }
}
