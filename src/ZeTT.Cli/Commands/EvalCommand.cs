using System.CommandLine;
using System.Globalization;
using ZeTT.Ops;
using ZeTT.Runtime.Hub;
using ZeTT.Runtime.IO;
using ZeTT.Runtime.Models;

namespace ZeTT.Cli;

/// <summary><c>zett eval</c>: bits per byte, tokens per byte and perplexity of language models
/// on the same text, side by side.</summary>
internal sealed class EvalCommand : ZettCommand
{
    private readonly Option<string[]> _models = new("--model")
    {
        Description = "a Hugging Face model directory or name (with its tokenizer.json); repeat to compare",
        HelpName = "DIR|NAME",
        Required = true,
        AllowMultipleArgumentsPerToken = false,
    };

    private readonly Option<string[]> _data = new("--data")
    {
        Description = "text: .txt (one document), .jsonl (a \"text\" field per line) or .parquet "
            + "(a text column); repeat for more",
        HelpName = "FILE",
        Required = true,
    };

    private readonly Option<int> _context = CommonOptions.Integer("--context",
        "window length in tokens [default: min(1024, max_position_embeddings)]", min: 2);

    private readonly Option<long> _maxBytes = new("--max-bytes")
    {
        Description = "evaluate at most this many UTF-8 bytes of text (documents in order, the "
            + "last one cut)",
        HelpName = "N",
    };

    private readonly Option<int> _seed = CommonOptions.Integer("--seed",
        "seed of the masked-LM token selection [default: 0]", min: 0);

    private readonly Option<string> _json = CommonOptions.Optional("--json", "FILE",
        "also write the results as JSON");

    private readonly Option<bool> _overwrite = CommonOptions.Overwrite();

    private readonly LmComputeOptions _compute = new();

    public EvalCommand() : base("eval",
        "bits per byte, tokens per byte and perplexity of language models on text")
    {
        Options.Add(_models);
        Options.Add(_data);
        Options.Add(_context);
        Options.Add(_maxBytes);
        Options.Add(_seed);
        Options.Add(_json);
        Options.Add(_overwrite);
        _compute.AddTo(this);
    }

    protected override int Run(ParseResult parse, CliConsole console)
    {
        // Names are resolved like every other command's --model; the table and JSON keep the
        // name as typed, not the cache snapshot's path.
        string[] typed = parse.GetRequiredValue(_models);
        string[] models = [.. typed.Select(m => CommonOptions.Locate(m, HubRepoKind.Model, console))];
        string[] data = parse.GetRequiredValue(_data);
        long? maxBytes = parse.IsGiven(_maxBytes) ? parse.GetValue(_maxBytes) : null;
        if (maxBytes is < 1)
        {
            throw new Runtime.ZettException($"--max-bytes must be at least 1, got {maxBytes}");
        }
        int? context = parse.IsGiven(_context) ? parse.GetValue(_context) : null;
        string? json = parse.GetValue(_json);
        bool overwrite = parse.GetValue(_overwrite);
        if (json is not null)
        {
            // Refused before the evaluation runs: an output that is an input, an existing file
            // without --overwrite.
            OutputTarget.Check(json, OutputKind.File, overwrite, [.. data, .. models]);
        }
        IReadOnlyList<EvalDocument> docs = EvalText.Read(data, maxBytes);
        if (docs.Sum(d => d.Bytes) == 0)
        {
            throw new Runtime.ZettException($"{string.Join(", ", data)}: no text to evaluate");
        }
        (IOpBackend backend, DType activations) = _compute.Open(parse, console);
        IReadOnlyList<LmEvalResult> results;
        using (backend)
        {
            results = [.. LmEvaluation.Run(models, docs, context, parse.GetValue(_seed), backend,
                ProgressBar.ForConsole(console), activations)
                .Select((r, i) => r with { Model = typed[i] })];
        }
        TextWriter o = console.Out;
        o.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{docs.Count} documents, {docs.Sum(d => d.Bytes)} bytes"));
        o.WriteLine($"{"model",-40} {"bits/byte",10} {"tokens/byte",12} {"perplexity",11} "
            + $"{"tokens",9} {"context",8}");
        foreach (LmEvalResult r in results)
        {
            string acc = r.Accuracy is { } a
                ? string.Create(CultureInfo.InvariantCulture, $"  masked accuracy {a:F4}") : "";
            o.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{Shorten(r.Model),-40} {r.BitsPerByte,10:F4} {r.TokensPerByte,12:F4} "
                + $"{r.Perplexity,11:F3} {r.Tokens,9} {r.Context,8}{acc}"));
        }
        if (json is not null)
        {
            LmEvaluation.WriteJson(json, results, data, overwrite, models);
            o.WriteLine($"wrote {json}");
        }
        return 0;
    }

    private static string Shorten(string path) =>
        path.Length <= 40 ? path : "…" + path[^39..];
}
