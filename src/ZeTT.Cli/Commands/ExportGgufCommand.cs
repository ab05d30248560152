using System.CommandLine;
using ZeTT.Runtime.Formats;

namespace ZeTT.Cli;

/// <summary><c>zett export-gguf</c>: a Hugging Face model directory as one GGUF file for
/// llama.cpp (docs/gguf.md).</summary>
internal sealed class ExportGgufCommand : ZettCommand
{
    private readonly Option<string> _model = CommonOptions.Required("--model", "DIR",
        "Hugging Face model directory (llama, mistral, qwen2, gemma, gpt2, gpt_neox) with "
        + "config.json, safetensors and tokenizer.json");

    private readonly Option<string> _out = CommonOptions.Required("--out", "FILE",
        "the .gguf file (written atomically: it appears only when complete)");

    private readonly Option<string> _type = GgufTypeOption();

    private readonly Option<bool> _overwrite = CommonOptions.Overwrite();

    public ExportGgufCommand() : base("export-gguf",
        "write a Hugging Face model directory as a GGUF file for llama.cpp")
    {
        Options.Add(_model);
        Options.Add(_out);
        Options.Add(_type);
        Options.Add(_overwrite);
    }

    /// <summary><c>--gguf-type</c>, shared with <c>zett transfer</c>.</summary>
    internal static Option<string> GgufTypeOption() => CommonOptions.Choice("--gguf-type",
        "type of the GGUF file's matrices and embeddings (norms and biases stay f32)", "f16",
        "f16", "bf16", "f32", "q8_0");

    /// <summary>The ggml type of a validated <c>--gguf-type</c> value.</summary>
    internal static GgmlType ParseGgufType(string? name) =>
        GgmlTypes.TryParse(name ?? "f16", out GgmlType type) ? type
            : throw new InvalidOperationException($"--gguf-type '{name}' passed validation");

    protected override int Run(ParseResult parse, CliConsole console)
    {
        GgmlType type = ParseGgufType(parse.GetValue(_type));
        GgufExportResult result = GgufExporter.Export(parse.GetRequiredValue(_model),
            parse.GetRequiredValue(_out), type, ProgressBar.ForConsole(console),
            parse.GetValue(_overwrite));
        console.Out.WriteLine($"wrote {result.Path}: {result.Architecture}, {result.Tensors} tensors, "
            + $"{type.ToString().ToLowerInvariant()}, {result.Bytes} bytes");
        foreach (string note in result.Notes)
        {
            console.Out.WriteLine($"  note: {note}");
        }
        return 0;
    }
}
