using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.Transfer;

namespace ZeTT.Cli;

/// <summary><c>zett transfer</c>: a model under a new tokenizer (ZETT.md §4).</summary>
internal sealed class TransferCommand : ICommand
{
    public string Name => "transfer";

    public string Summary => "transfer a model to a new tokenizer (hypernetwork or FVT); no arguments: the built-in default";

    public string Usage => """
        usage: zett transfer --model DIR --tokenizer PATH|NAME --out DIR [--hypernet DIR]
                             [--method hypernet|fvt] [--lang CODE] [--device auto|cpu|cuda]
                             [--gpu N] [--dtype bf16|fp32] [--batch-size N]
                             [--model-class causal|masked|base] [--overwrite]
                             [--format hf|gguf|both] [--gguf-type f16|bf16|f32|q8_0]
               zett transfer        (no arguments: assets/stories260K -> gpt2 with FVT,
                                     written to ./out/default)

          --model        Hugging Face model directory (config.json, safetensors, tokenizer.json)
          --tokenizer    target tokenizer: tokenizer.json, a directory holding one, or a
                         built-in name (gpt2, r50k_base, cl100k_base, o200k_base)
          --out          output directory (written atomically: it appears only when complete)
          --hypernet     ZeTT hypernetwork directory (config.json, weights, tokenizer.json)
          --method       hypernet (default) or fvt: each token the mean of the source embeddings
                         of its pieces under the model's own tokenizer (no hypernetwork)
          --lang         language code of a multilingual hypernetwork
          --device       auto (CUDA when available, else CPU), cpu or cuda
          --gpu          CUDA device ordinal (after CUDA_VISIBLE_DEVICES), default 0
          --dtype        hypernetwork precision: bf16 (default, as the reference) or fp32
          --batch-size   tokens per hypernetwork batch (default: the backend's choice)
          --model-class  check the checkpoint kind: causal (bias saved beside as
                         bias.safetensors), masked (bias into lm_head.bias), base
          --overwrite    replace an existing output directory
          --format       hf (default): a Hugging Face directory; gguf: --out is one .gguf file
                         for llama.cpp; both: the directory with model.gguf inside
          --gguf-type    type of the GGUF file's matrices (default f16; norms stay f32)
        """;

    public int Run(CommandLine args, CliConsole console)
    {
        TransferOptions options;
        bool isDefault = args.Positionals.Count == 0 && !args.Has("model") && !args.Has("tokenizer")
            && !args.Has("out") && !args.Has("hypernet");
        if (isDefault)
        {
            args.EnsureAllUsed();
            options = DefaultTransfer.Options();
            console.Out.WriteLine($"zett transfer (built-in default): {options.ModelDirectory} -> "
                + $"tokenizer {options.Tokenizer}, method fvt, model class causal, out "
                + $"{DefaultTransfer.OutputPath}");
        }
        else
        {
            options = new TransferOptions
            {
                ModelDirectory = args.Required("model"),
                Tokenizer = args.Required("tokenizer"),
                OutputDirectory = args.Required("out"),
                HypernetDirectory = args.Optional("hypernet"),
                Method = args.Choice("method", "hypernet", "hypernet", "fvt") == "fvt"
                    ? TransferMethod.Fvt : TransferMethod.Hypernet,
                Language = args.Optional("lang"),
                Device = args.Choice("device", "auto", "auto", "cpu", "cuda"),
                Gpu = args.Int("gpu", 0, min: 0),
                Precision = args.Choice("dtype", "bf16", "bf16", "fp32") == "fp32"
                    ? HypernetPrecision.Float32 : HypernetPrecision.BFloat16,
                BatchSize = args.Int("batch-size", 0, min: 1),
                ModelClass = args.Optional("model-class") is null ? null
                    : args.Choice("model-class", "causal", "causal", "masked", "base") switch
                    {
                        "masked" => ModelClass.Masked,
                        "base" => ModelClass.Base,
                        _ => ModelClass.Causal,
                    },
                Overwrite = args.Flag("overwrite"),
                Format = args.Choice("format", "hf", "hf", "gguf", "both") switch
                {
                    "gguf" => TransferFormat.Gguf,
                    "both" => TransferFormat.Both,
                    _ => TransferFormat.Hf,
                },
                GgufType = ExportGgufCommand.GgufTypeOption(args),
            };
            args.EnsureAllUsed();
        }
        TransferResult result = TokenizerTransfer.Run(options, ProgressBar.ForConsole(console),
            line => console.Error.WriteLine(line));
        foreach (string line in result.SummaryLines())
        {
            console.Out.WriteLine(line);
        }
        return 0;
    }
}
