using ZeTT.Runtime.Formats;

namespace ZeTT.Cli;

/// <summary><c>zett inspect PATH</c>: what a checkpoint file, model directory, hypernetwork or
/// tokenizer.json holds.</summary>
internal sealed class InspectCommand : ICommand
{
    public string Name => "inspect";

    public string Summary => "describe a .safetensors file, model or hypernetwork directory, or tokenizer.json";

    public string Usage => """
        usage: zett inspect PATH [--tensors]

          PATH        a .safetensors file or model.safetensors.index.json, a Hugging Face model
                      directory, a ZeTT hypernetwork directory, a flax_model.msgpack, or a
                      tokenizer.json
          --tensors   list every tensor of a model directory (files always list them)
        """;

    public int Run(CommandLine args, CliConsole console)
    {
        bool tensors = args.Flag("tensors");
        args.EnsureAllUsed(maxPositionals: 1);
        if (args.Positionals.Count != 1)
        {
            throw new UsageException("inspect needs one PATH");
        }
        FormatInspector.Describe(args.Positionals[0], console.Out, tensors);
        return 0;
    }
}
