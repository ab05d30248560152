using System.CommandLine;
using ZeTT.Runtime.Formats;

namespace ZeTT.Cli;

/// <summary><c>zett inspect PATH</c>: what a checkpoint file, model directory, hypernetwork or
/// tokenizer.json holds.</summary>
internal sealed class InspectCommand : ZettCommand
{
    private readonly Argument<string> _path = new("PATH")
    {
        Description = "a .safetensors file or model.safetensors.index.json, a .gguf file, a "
            + "Hugging Face model directory, a ZeTT hypernetwork directory, a flax_model.msgpack, "
            + "or a tokenizer.json",
    };

    private readonly Option<bool> _tensors = new("--tensors")
    {
        Description = "list every tensor of a model directory (files always list them)",
    };

    public InspectCommand() : base("inspect",
        "describe a .safetensors or .gguf file, model or hypernetwork directory, or tokenizer.json")
    {
        Arguments.Add(_path);
        Options.Add(_tensors);
    }

    protected override int Run(ParseResult parse, CliConsole console)
    {
        FormatInspector.Describe(parse.GetRequiredValue(_path), console.Out, parse.GetValue(_tensors));
        return 0;
    }
}
