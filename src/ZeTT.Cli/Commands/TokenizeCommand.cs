using System.CommandLine;
using System.Diagnostics;
using ZeTT.Runtime;
using ZeTT.Runtime.Hub;
using ZeTT.Runtime.IO;
using ZeTT.Runtime.Tokenizers;

namespace ZeTT.Cli;

/// <summary><c>zett tokenize</c>: text to ids and tokens (or ids back to text) exactly as the
/// Hugging Face <c>tokenizers</c> library encodes and decodes, one JSON line per document.
/// </summary>
internal sealed class TokenizeCommand : ZettCommand
{
    private readonly Option<string> _tokenizer = CommonOptions.Required("--tokenizer", "PATH|NAME",
        "tokenizer.json, a directory with one, or gpt2, r50k_base, cl100k_base, o200k_base");

    private readonly Option<string> _text = CommonOptions.Optional("--text", "STR",
        "one document to encode");

    private readonly Option<string> _input = CommonOptions.Optional("--input", "FILE",
        ".txt (the whole file is one document) or .jsonl (one {\"text\": ...} per line); with "
        + "--decode, JSON lines with \"ids\"");

    private readonly Option<string> _out = CommonOptions.Optional("--out", "FILE",
        "write the JSON lines here (default: stdout)");

    private readonly Option<bool> _noSpecial = new("--no-special-tokens")
    {
        Description = "do not add the post-processor's special tokens (add_special_tokens=False)",
    };

    private readonly Option<bool> _decode = new("--decode")
    {
        Description = "turn ids back into text: {\"text\": ...} per line",
    };

    private readonly Option<string> _ids = CommonOptions.Optional("--ids", "1,2,3",
        "ids to decode (with --decode)");

    private readonly Option<bool> _skipSpecial = new("--skip-special-tokens")
    {
        Description = "with --decode, leave special tokens out (skip_special_tokens=True)",
    };

    private readonly Option<bool> _overwrite = CommonOptions.Overwrite();

    public TokenizeCommand() : base("tokenize",
        "encode text to ids and tokens, or decode ids, exactly as Hugging Face tokenizers")
    {
        Options.Add(_tokenizer);
        Options.Add(_text);
        Options.Add(_input);
        Options.Add(_out);
        Options.Add(_noSpecial);
        Options.Add(_decode);
        Options.Add(_ids);
        Options.Add(_skipSpecial);
        Options.Add(_overwrite);
    }

    protected override int Run(ParseResult parse, CliConsole console)
    {
        string? text = parse.GetValue(_text);
        string? input = parse.GetValue(_input);
        string? ids = parse.GetValue(_ids);
        string? output = parse.GetValue(_out);
        bool decode = parse.GetValue(_decode);
        int sources = (text is null ? 0 : 1) + (input is null ? 0 : 1) + (ids is null ? 0 : 1);
        if (sources != 1 || (decode && text is not null) || (!decode && ids is not null))
        {
            throw new ZettException(decode
                ? "tokenize --decode: give exactly one of --ids or --input"
                : "tokenize: give exactly one of --text or --input");
        }
        string tokenizerPath = CommonOptions.Locate(parse.GetRequiredValue(_tokenizer),
            HubRepoKind.Tokenizer, console);
        bool overwrite = parse.GetValue(_overwrite);
        string?[] inputs = [input, tokenizerPath];
        if (output is not null)
        {
            // Refused before any work: an output that is an input, an existing file without
            // --overwrite.
            OutputTarget.Check(output, OutputKind.File, overwrite, inputs);
        }
        HfTokenizer tokenizer = HfTokenizer.Load(tokenizerPath);
        var clock = Stopwatch.StartNew();
        if (decode)
        {
            List<int[]> lists = ids is not null ? [TokenizeDocuments.ParseIds(ids)]
                : [.. TokenizeDocuments.ReadIds(input!)];
            bool skip = parse.GetValue(_skipSpecial);
            long n = output is null
                ? TokenizeDocuments.Decode(tokenizer, lists, skip, console.Out)
                : TokenizeDocuments.WriteAtomically(output,
                    w => TokenizeDocuments.Decode(tokenizer, lists, skip, w), overwrite, inputs);
            console.Error.WriteLine($"decoded {n} id lists in {clock.Elapsed.TotalSeconds:F2} s");
            return 0;
        }
        List<string> texts = text is not null ? [text] : [.. TokenizeDocuments.ReadTexts(input!)];
        bool special = !parse.GetValue(_noSpecial);
        var progress = new Action<long>(done =>
        {
            if (texts.Count > 10000)
            {
                console.Error.WriteLine($"  {done}/{texts.Count} documents");
            }
        });
        (long docs, long tokens, long bytes) = output is null
            ? TokenizeDocuments.Encode(tokenizer, texts, special, console.Out, progress)
            : TokenizeDocuments.WriteAtomically(output,
                w => TokenizeDocuments.Encode(tokenizer, texts, special, w, progress), overwrite,
                inputs);
        double seconds = clock.Elapsed.TotalSeconds;
        console.Error.WriteLine($"encoded {docs} documents, {bytes / 1e6:F2} MB → {tokens} tokens " +
            $"in {seconds:F2} s ({bytes / 1e6 / Math.Max(seconds, 1e-9):F1} MB/s)");
        return 0;
    }
}
