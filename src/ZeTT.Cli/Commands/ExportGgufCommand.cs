using ZeTT.Runtime.Formats;

namespace ZeTT.Cli;

/// <summary><c>zett export-gguf</c>: a Hugging Face model directory as one GGUF file for
/// llama.cpp (docs/gguf.md).</summary>
internal sealed class ExportGgufCommand : ICommand
{
    public string Name => "export-gguf";

    public string Summary => "write a Hugging Face model directory as a GGUF file for llama.cpp";

    public string Usage => """
        usage: zett export-gguf --model DIR --out FILE [--gguf-type f16|bf16|f32|q8_0] [--overwrite]

          --model      Hugging Face model directory (llama, mistral, qwen2, gemma, gpt2, gpt_neox)
                       with config.json, safetensors and tokenizer.json
          --out        the .gguf file (written atomically: it appears only when complete)
          --gguf-type  type of the matrices and embeddings (default f16); norms and biases stay f32
          --overwrite  replace an existing file
        """;

    public int Run(CommandLine args, CliConsole console)
    {
        string model = args.Required("model");
        string output = args.Required("out");
        GgmlType type = GgufTypeOption(args);
        bool overwrite = args.Flag("overwrite");
        args.EnsureAllUsed();
        GgufExportResult result = GgufExporter.Export(model, output, type,
            ProgressBar.ForConsole(console), overwrite);
        console.Out.WriteLine($"wrote {result.Path}: {result.Architecture}, {result.Tensors} tensors, "
            + $"{type.ToString().ToLowerInvariant()}, {result.Bytes} bytes");
        foreach (string note in result.Notes)
        {
            console.Out.WriteLine($"  note: {note}");
        }
        return 0;
    }

    /// <summary>Parses <c>--gguf-type</c> (default f16), shared with <c>zett transfer</c>.</summary>
    internal static GgmlType GgufTypeOption(CommandLine args)
    {
        string name = args.Choice("gguf-type", "f16", "f16", "bf16", "f32", "q8_0");
        return GgmlTypes.TryParse(name, out GgmlType type) ? type
            : throw new UsageException($"--gguf-type: unknown type '{name}'");
    }
}
