using System.CommandLine;
using System.Globalization;
using ZeTT.Ops;
using ZeTT.Runtime.Hub;
using ZeTT.Runtime.Models;
using ZeTT.Runtime.Tokenizers;

namespace ZeTT.Cli;

/// <summary><c>zett generate</c>: continue a prompt with a causal language model, streamed.
/// </summary>
internal sealed class GenerateCommand : ZettCommand
{
    private readonly Option<string> _model = CommonOptions.Required("--model", "DIR",
        "a Hugging Face model directory (with its tokenizer.json)");

    private readonly Option<string> _prompt = new("--prompt")
    {
        Description = "text to continue; empty starts from the BOS token alone [default: \"\"]",
        HelpName = "TEXT",
        DefaultValueFactory = _ => "",
    };

    private readonly Option<int> _maxNew = new("--max-new-tokens")
    {
        Description = "tokens to generate at most (EOS stops earlier) [default: 256]",
        HelpName = "N",
        DefaultValueFactory = _ => 256,
    };

    private readonly Option<float> _temperature = new("--temperature")
    {
        Description = "0 picks the most likely token (greedy); above 0 samples [default: 0]",
        HelpName = "T",
    };

    private readonly Option<float> _topP = new("--top-p")
    {
        Description = "sample among the most likely tokens that cover this probability "
            + "[default: 1]",
        HelpName = "P",
        DefaultValueFactory = _ => 1f,
    };

    private readonly Option<int> _seed = CommonOptions.Integer("--seed",
        "seed of the sampler [default: 0]", min: 0);

    private readonly LmComputeOptions _compute = new();

    public GenerateCommand() : base("generate",
        "continue a prompt with a causal language model (KV cache, text streamed)")
    {
        Options.Add(_model);
        Options.Add(_prompt);
        Options.Add(_maxNew);
        Options.Add(_temperature);
        Options.Add(_topP);
        Options.Add(_seed);
        _compute.AddTo(this);
    }

    protected override int Run(ParseResult parse, CliConsole console)
    {
        string dir = CommonOptions.Locate(parse.GetRequiredValue(_model), HubRepoKind.Model, console);
        int maxNew = parse.GetValue(_maxNew);
        float temperature = parse.GetValue(_temperature);
        float topP = parse.GetValue(_topP);
        if (maxNew < 1 || temperature < 0 || topP <= 0 || topP > 1)
        {
            throw new Runtime.ZettException(string.Create(CultureInfo.InvariantCulture,
                $"--max-new-tokens must be ≥ 1, --temperature ≥ 0 and --top-p in (0, 1]; got "
                + $"{maxNew}, {temperature}, {topP}"));
        }
        (IOpBackend backend, DType activations) = _compute.Open(parse, console);
        using IOpBackend owned = backend;
        using LanguageModel model = LanguageModel.Open(dir, backend, activations);
        HfTokenizer tokenizer = HfTokenizer.Load(dir);
        string prompt = parse.GetValue(_prompt) ?? "";
        console.Out.Write(prompt);
        foreach (string piece in TextStreaming.Generate(model, tokenizer, prompt, maxNew,
            new SamplingOptions(temperature, topP, parse.GetValue(_seed))))
        {
            console.Out.Write(piece);
            console.Out.Flush();
        }
        console.Out.WriteLine();
        return 0;
    }
}
