using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using ZeTT.Runtime.Hub;
using ZeTT.Runtime.Hypernetwork;

namespace ZeTT.Cli;

/// <summary>
/// Options that several commands take, each declared once here (name, help text, default,
/// validation), so every command that takes one parses, documents and checks it alike.
/// </summary>
internal static class CommonOptions
{
    /// <summary>The one default of <c>--dtype</c>: bf16, as the reference casts the hypernetwork.
    /// </summary>
    public const string DefaultDtype = "bf16";

    /// <summary>An option with a fixed set of values (completed by the shell, listed in help,
    /// anything else an error naming them).</summary>
    public static Option<string> Choice(string name, string description, string? defaultValue,
        params string[] values)
    {
        var option = new Option<string>(name)
        {
            Description = description,
            HelpName = string.Join('|', values),
        };
        if (defaultValue is not null)
        {
            option.DefaultValueFactory = _ => defaultValue;
        }
        option.CompletionSources.Add(values);
        option.Validators.Add(result =>
        {
            string? value = result.GetValueOrDefault<string?>();
            if (value is not null && !values.Contains(value, StringComparer.Ordinal))
            {
                result.AddError($"{name} must be one of {string.Join(", ", values)}; got '{value}'");
            }
        });
        return option;
    }

    /// <summary>An integer option that must be at least <paramref name="min"/>; without it the
    /// value is 0.</summary>
    public static Option<int> Integer(string name, string description, int min, string helpName = "N") =>
        new(name)
        {
            Description = description,
            HelpName = helpName,
            CustomParser = result => ParseInteger(result, name, min),
        };

    private static int ParseInteger(ArgumentResult result, string name, int min)
    {
        string text = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
        if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int value)
            || value < min)
        {
            result.AddError($"{name} needs an integer ≥ {min}; got '{text}'");
            return 0;
        }
        return value;
    }

    /// <summary>Numbers in invariant culture, one or more after the option name
    /// (<c>--lambdas 0.3 0.7</c>).</summary>
    public static Option<double[]> Numbers(string name, string description) =>
        new(name)
        {
            Description = description,
            HelpName = "X",
            AllowMultipleArgumentsPerToken = true,
            Arity = ArgumentArity.OneOrMore,
            CustomParser = result =>
            {
                var values = new double[result.Tokens.Count];
                for (int i = 0; i < values.Length; i++)
                {
                    string text = result.Tokens[i].Value;
                    if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out values[i]))
                    {
                        result.AddError($"{name}: '{text}' is not a number");
                    }
                }
                return values;
            },
        };

    /// <summary>A path or name that the command requires.</summary>
    public static Option<string> Required(string name, string helpName, string description) =>
        new(name) { Description = description, HelpName = helpName, Required = true };

    /// <summary>A path or name that the command may take.</summary>
    public static Option<string> Optional(string name, string helpName, string description) =>
        new(name) { Description = description, HelpName = helpName };

    /// <summary><c>--overwrite</c>: the one overwrite rule of every command that writes.</summary>
    public static Option<bool> Overwrite() => new("--overwrite")
    {
        Description = "replace an existing output (only once the new one is complete); without it "
            + "an existing non-empty output is an error",
    };

    /// <summary><c>--lang</c>: the language of a multilingual hypernetwork.</summary>
    public static Option<string?> Language() => new("--lang")
    {
        Description = "language code of a multilingual hypernetwork (zett inspect HYPERNET lists them)",
        HelpName = "CODE",
    };

    /// <summary><c>--revision</c>: which revision of a model named on the Hub.</summary>
    public static Option<string?> Revision() => new("--revision")
    {
        Description = "branch, tag or commit of a --model given by Hugging Face name [default: "
            + "main]; NAME@REV names a revision for any name",
        HelpName = "REV",
    };

    /// <summary>The local path of a model, hypernetwork or tokenizer the user named: a path is
    /// itself, <c>org/name</c> resolves in the Hugging Face cache (downloading where the Hub is
    /// reachable).</summary>
    public static string Locate(string value, HubRepoKind kind, CliConsole console, string? revision = null)
    {
        ArgumentNullException.ThrowIfNull(console);
        return HubResolver.Locate(value, kind, revision, null, ProgressBar.ForConsole(console),
            line => console.Error.WriteLine(line));
    }

    /// <summary>Whether <paramref name="option"/> was typed on the command line (not a default).
    /// </summary>
    public static bool IsGiven(this ParseResult parse, Option option) =>
        parse.GetResult(option) is { Implicit: false };
}

/// <summary>The device and precision options of every command that runs the hypernetwork:
/// <c>--device</c>, <c>--gpu</c>, <c>--dtype</c>, <c>--batch-size</c>.</summary>
internal sealed class ComputeOptions
{
    /// <summary><c>--device auto|cpu|cuda</c>.</summary>
    public Option<string> Device { get; } = CommonOptions.Choice("--device",
        "where it computes: cuda when a usable device is found, else the cpu (auto)",
        "auto", "auto", "cpu", "cuda");

    /// <summary><c>--gpu N</c>.</summary>
    public Option<int> Gpu { get; } = CommonOptions.Integer("--gpu",
        "CUDA device ordinal, counted after CUDA_VISIBLE_DEVICES [default: 0]; only with "
        + "--device cuda or auto", min: 0);

    /// <summary><c>--dtype bf16|fp32</c>.</summary>
    public Option<string> Dtype { get; } = CommonOptions.Choice("--dtype",
        "hypernetwork precision: bf16 weights and matmul inputs with fp32 accumulation (as the "
        + "reference), or fp32 throughout", CommonOptions.DefaultDtype, "bf16", "fp32");

    /// <summary><c>--batch-size N</c>.</summary>
    public Option<int> BatchSize { get; } = CommonOptions.Integer("--batch-size",
        "tokens per hypernetwork batch [default: the backend's choice from its memory]", min: 1);

    /// <summary>All four, in help order.</summary>
    public IEnumerable<Option> All => [Device, Gpu, Dtype, BatchSize];

    /// <summary>Adds the options to <paramref name="command"/>, with the rule that --gpu needs a
    /// device that can be CUDA.</summary>
    public void AddTo(Command command) => AddTo(command, All);

    /// <summary>Adds <paramref name="options"/> (some of <see cref="All"/>) to
    /// <paramref name="command"/>, with the same --gpu rule.</summary>
    public void AddTo(Command command, IEnumerable<Option> options)
    {
        ArgumentNullException.ThrowIfNull(command);
        ArgumentNullException.ThrowIfNull(options);
        foreach (Option option in options)
        {
            command.Options.Add(option);
        }
        command.Validators.Add(result =>
        {
            if (result.GetResult(Gpu) is { Implicit: false } && result.GetValue(Device) == "cpu")
            {
                result.AddError("--gpu selects a CUDA device; it does not apply to --device cpu");
            }
        });
    }

    /// <summary>The precision chosen.</summary>
    public HypernetPrecision Precision(ParseResult parse) =>
        parse.GetValue(Dtype) == "fp32" ? HypernetPrecision.Float32 : HypernetPrecision.BFloat16;
}

/// <summary>Where a language model runs, for <c>zett eval</c> and <c>zett generate</c>:
/// <c>--device</c>, <c>--gpu</c> and <c>--dtype</c> (the activations').</summary>
internal sealed class LmComputeOptions
{
    /// <summary><c>--device auto|cpu|cuda</c>.</summary>
    public Option<string> Device { get; } = CommonOptions.Choice("--device",
        "where it computes: cuda when a usable device is found, else the cpu (auto)",
        "auto", "auto", "cpu", "cuda");

    /// <summary><c>--gpu N</c>.</summary>
    public Option<int> Gpu { get; } = CommonOptions.Integer("--gpu",
        "CUDA device ordinal, counted after CUDA_VISIBLE_DEVICES [default: 0]; only with "
        + "--device cuda or auto", min: 0);

    /// <summary><c>--dtype fp32|bf16</c>.</summary>
    public Option<string> Dtype { get; } = CommonOptions.Choice("--dtype",
        "activations: fp32 (weights stay in their stored dtype), or bf16 activations and KV "
        + "cache with fp32 statistics, logits and losses (CUDA only; as a bf16 PyTorch model)",
        "fp32", "fp32", "bf16");

    /// <summary>Adds the options to <paramref name="command"/>, with the rule that --gpu needs a
    /// device that can be CUDA.</summary>
    public void AddTo(Command command)
    {
        ArgumentNullException.ThrowIfNull(command);
        command.Options.Add(Device);
        command.Options.Add(Gpu);
        command.Options.Add(Dtype);
        command.Validators.Add(result =>
        {
            if (result.GetResult(Gpu) is { Implicit: false } && result.GetValue(Device) == "cpu")
            {
                result.AddError("--gpu selects a CUDA device; it does not apply to --device cpu");
            }
        });
    }

    /// <summary>The backend the options choose (the caller disposes it) and the activation
    /// dtype; says which backend and why on stderr. bf16 on the CPU is an error.</summary>
    public (ZeTT.Ops.IOpBackend Backend, ZeTT.Ops.DType Activations) Open(ParseResult parse,
        CliConsole console)
    {
        ArgumentNullException.ThrowIfNull(parse);
        ArgumentNullException.ThrowIfNull(console);
        ZeTT.Ops.IOpBackend backend = HypernetPredictor.OpenBackend(
            parse.GetValue(Device) ?? "auto", parse.GetValue(Gpu), out string why);
        bool bf16 = parse.GetValue(Dtype) == "bf16";
        if (bf16 && backend.Device != ZeTT.Ops.TensorDevice.Cuda)
        {
            backend.Dispose();
            throw new Runtime.ZettException($"--dtype bf16 needs a CUDA device ({why}): the CPU "
                + "computes activations in fp32");
        }
        string name = backend is ZeTT.Ops.Cuda.CudaBackend gpu ? $"cuda: {gpu.DeviceName}" : "cpu";
        console.Error.WriteLine($"backend: {name} ({why}), {(bf16 ? "bf16" : "fp32")} activations");
        return (backend, bf16 ? ZeTT.Ops.DType.BF16 : ZeTT.Ops.DType.F32);
    }
}
