using ZeTT.Runtime.Transfer;

namespace ZeTT.Cli;

/// <summary><c>zett apply-to-ft</c>: carry a tokenizer transfer over to a fine-tuned model.</summary>
internal sealed class ApplyToFtCommand : ICommand
{
    public string Name => "apply-to-ft";

    public string Summary => "apply a transferred base model's new tokenizer to a fine-tune of it";

    public string Usage => """
        usage: zett apply-to-ft --base DIR --ft DIR --transferred-base DIR --out DIR
                                [--lambdas 0.5 ...] [--overwrite]

          --base              the base model B
          --ft                a fine-tune F of B (same tokenizer)
          --transferred-base  B transferred to the new tokenizer (B')
          --out               output: with one lambda the model itself, with several
                              one model per lambda in OUT/lambda_<value>
          --lambdas           interpolation weights (default 0.5): every non-embedding tensor
                              becomes F + lambda * (B' - B); embeddings and tokenizer are B''s,
                              the chat template F's
          --overwrite         replace existing output directories
        """;

    public int Run(CommandLine args, CliConsole console)
    {
        string baseDir = args.Required("base");
        string ft = args.Required("ft");
        string transferred = args.Required("transferred-base");
        string output = args.Required("out");
        IReadOnlyList<double> lambdas = args.Has("lambdas") ? args.Doubles("lambdas") : [0.5];
        bool overwrite = args.Flag("overwrite");
        args.EnsureAllUsed();
        ApplyToFineTuned.Run(baseDir, ft, transferred, output, lambdas, overwrite,
            line => console.Out.WriteLine(line));
        return 0;
    }
}
