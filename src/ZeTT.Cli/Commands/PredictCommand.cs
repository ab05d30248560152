using System.Globalization;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.Transfer;

namespace ZeTT.Cli;

/// <summary><c>zett predict</c>: run a hypernetwork over surface forms or tokens.</summary>
internal sealed class PredictCommand : ICommand
{
    public string Name => "predict";

    public string Summary => "predict embeddings for surface forms or tokens with a hypernetwork";

    public string Usage => """
        usage: zett predict --hypernet DIR (--source-embeddings FILE | --model DIR)
                            (--surface-forms FILE | --tokens FILE) --out FILE
                            [--lang CODE] [--device auto|cpu|cuda] [--gpu N] [--dtype fp32|bf16]
                            [--batch-size N]

          --hypernet           ZeTT hypernetwork directory
          --source-embeddings  safetensors with embeddings_in [V, n_embd] (and embeddings_out
                               [V, n_embd] for untied models)
          --model              or: a Hugging Face model directory to take them from
          --surface-forms      safetensors with surface_forms I32 [N, hn_surface_maxlen]
          --tokens             or: a text file, one byte-level token per line (surface forms
                               made with the hypernetwork's tokenizer, converted to byte level)
          --out                output safetensors: embeddings_in F32 [N, n_embd],
                               embeddings_out F32 [N, n_embd] (untied), bias F32 [N]
          --lang               language code of a multilingual hypernetwork
          --device             auto (default), cpu or cuda
          --dtype              fp32 (default) or bf16
        """;

    public int Run(CommandLine args, CliConsole console)
    {
        var options = new PredictOptions
        {
            HypernetDirectory = args.Required("hypernet"),
            SourceEmbeddingsFile = args.Optional("source-embeddings"),
            ModelDirectory = args.Optional("model"),
            SurfaceFormsFile = args.Optional("surface-forms"),
            TokensFile = args.Optional("tokens"),
            OutputFile = args.Required("out"),
            Language = args.Optional("lang"),
            Device = args.Choice("device", "auto", "auto", "cpu", "cuda"),
            Gpu = args.Int("gpu", 0, min: 0),
            Precision = args.Choice("dtype", "fp32", "fp32", "bf16") == "bf16"
                ? HypernetPrecision.BFloat16 : HypernetPrecision.Float32,
            BatchSize = args.Int("batch-size", 0, min: 1),
        };
        args.EnsureAllUsed();
        PredictResult result = EmbeddingPrediction.Run(options, ProgressBar.ForConsole(console),
            line => console.Error.WriteLine(line));
        string truncated = options.TokensFile is null ? ""
            : string.Create(CultureInfo.InvariantCulture, $", {result.TruncatedTokens} surface forms truncated");
        console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"wrote {options.OutputFile}: {result.Rows} tokens ({result.Backend}){truncated}"));
        return 0;
    }
}
