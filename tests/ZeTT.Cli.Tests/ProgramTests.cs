using System.CommandLine;

namespace ZeTT.Cli.Tests;

public sealed class ProgramTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("zett-cli-program-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static IEnumerable<Command> Commands => Program.CreateRootCommand().Subcommands;

    [Fact]
    public void Help_lists_every_command()
    {
        var (code, output, _) = Zett.Run("--help");
        Assert.Equal(0, code);
        foreach (Command c in Commands)
        {
            Assert.Contains(c.Name, output, StringComparison.Ordinal);
        }
        Assert.Equal(output, Zett.Run().Out);
        Assert.Equal(Zett.Run("transfer", "--help").Out, Zett.Run("help", "transfer").Out);
    }

    [Fact]
    public void Each_commands_help_is_made_from_the_options_it_parses()
    {
        foreach (Command c in Commands)
        {
            var (code, output, err) = Zett.Run(c.Name, "--help");
            Assert.True(code == 0, err);
            foreach (Option o in c.Options)
            {
                Assert.Contains(o.Name, output, StringComparison.Ordinal);
                string first = o.Description!.Split(' ')[0];
                Assert.Contains(first, output, StringComparison.Ordinal);
            }
        }
    }

    [Fact]
    public void Shared_options_read_alike_in_every_command_that_takes_them()
    {
        string[] shared = ["--device", "--gpu", "--dtype", "--batch-size", "--overwrite", "--lang"];
        var seen = new Dictionary<string, string>();
        foreach (Command c in Commands)
        {
            string[] help = Zett.Run(c.Name, "--help").Out.Split('\n');
            foreach (string name in shared)
            {
                string? line = help.FirstOrDefault(l => l.TrimStart().StartsWith(name + " ", StringComparison.Ordinal));
                if (line is null)
                {
                    continue;
                }
                string text = string.Join(' ', line.Trim()[name.Length..]
                    .Split(' ', StringSplitOptions.RemoveEmptyEntries));
                // --dtype is the hypernetwork's precision in the commands that run it and the
                // activations' in those that run a language model (eval, generate).
                string key = name == "--dtype" && c.Name is "eval" or "generate"
                    ? "--dtype (language model)" : name;
                if (seen.TryGetValue(key, out string? before))
                {
                    Assert.Equal(before, text);
                }
                seen[key] = text;
            }
        }
        Assert.Contains("[default: bf16]", seen["--dtype"], StringComparison.Ordinal);
        Assert.Contains("[default: fp32]", seen["--dtype (language model)"],
            StringComparison.Ordinal);
        Assert.Equal(shared.Append("--dtype (language model)").Order(StringComparer.Ordinal),
            seen.Keys.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void Unknown_command_is_a_usage_error()
    {
        var (code, _, err) = Zett.Run("frobnicate");
        Assert.Equal(2, code);
        Assert.Equal("error: unknown command 'frobnicate' (see zett --help)", err.TrimEnd());
    }

    [Fact]
    public void Unknown_option_is_rejected_with_exit_2()
    {
        var (code, _, err) = Zett.Run("version", "--verbose");
        Assert.Equal(2, code);
        Assert.Equal("error: unknown option --verbose (see zett version --help)", err.TrimEnd());
    }

    [Theory]
    [InlineData("surface-forms --hn-tokenizer x",
        "surface-forms needs --tokenizer PATH|NAME, --maxlen N and --out FILE")]
    [InlineData("surface-forms --hn-tokenizer x --tokenizer y --out z --maxlen 0",
        "--maxlen needs an integer ≥ 1; got '0'")]
    [InlineData("predict --hypernet h --out o --device gpu", "--device must be one of auto, cpu, cuda; got 'gpu'")]
    [InlineData("predict --hypernet h --out o --device cpu --gpu 1",
        "--gpu selects a CUDA device; it does not apply to --device cpu")]
    [InlineData("transfer --model m --tokenizer t --out o --device cpu --gpu 1",
        "--gpu selects a CUDA device; it does not apply to --device cpu")]
    [InlineData("transfer --model m --tokenizer t --out o --dtype fp16", "--dtype must be one of bf16, fp32; got 'fp16'")]
    [InlineData("eval --model m --data d --device cpu --gpu 1",
        "--gpu selects a CUDA device; it does not apply to --device cpu")]
    [InlineData("generate --model m --dtype fp16", "--dtype must be one of fp32, bf16; got 'fp16'")]
    [InlineData("apply-to-ft --base b --ft f --transferred-base t --out o --lambdas 0.5 x", "--lambdas: 'x' is not a number")]
    [InlineData("inspect", "inspect needs PATH")]
    [InlineData("inspect a b", "unexpected argument 'b'")]
    [InlineData("completion fish", "completion: SHELL must be bash or zsh; got 'fish'")]
    public void Usage_errors_are_one_line_naming_what_is_wrong(string args, string expected)
    {
        var (code, output, err) = Zett.Run(args.Split(' '));
        Assert.Equal(2, code);
        Assert.Empty(output);
        string[] lines = err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith($"error: {expected} (see zett ", lines[0], StringComparison.Ordinal);
    }

    [Fact]
    public void Transfer_without_its_inputs_says_what_it_needs()
    {
        var (code, _, err) = Zett.Run("transfer", "--out", Path.Combine(_dir, "x"));
        Assert.Equal(2, code);
        Assert.Equal("error: transfer needs --model, --tokenizer and --out (missing --model DIR, "
            + "--tokenizer PATH|NAME); run zett transfer with no options for the built-in default",
            err.TrimEnd());
    }

    [Fact]
    public void Version_reports_cuda_state_and_version_option_prints_the_version()
    {
        var (code, output, _) = Zett.Run("version");
        Assert.Equal(0, code);
        Assert.Contains("cuda: ", output, StringComparison.Ordinal);
        (code, string version, _) = Zett.Run("--version");
        Assert.Equal(0, code);
        Assert.Equal($"zett {version.Trim()}", output.Split('\n')[0]);
        Assert.Matches(@"^\d+\.\d+\.\d+", version);
    }

    [Fact]
    public void Response_files_hold_arguments()
    {
        string rsp = Path.Combine(_dir, "args.rsp");
        File.WriteAllLines(rsp, ["--hypernet h", "--out o", "--device", "cpu", "--gpu 1"]);
        var (code, _, err) = Zett.Run("predict", $"@{rsp}");
        Assert.Equal(2, code);
        Assert.StartsWith("error: --gpu selects a CUDA device", err, StringComparison.Ordinal);

        (code, _, err) = Zett.Run("predict", $"@{rsp}.missing");
        Assert.Equal(2, code);
        Assert.Contains($"{rsp}.missing", err, StringComparison.Ordinal);
    }

    [Fact]
    public void Completion_answers_from_the_declarations()
    {
        string Suggest(string line) => Zett.Run($"[suggest:{line.Length}]", line).Out;
        string name = RootCommand.ExecutableName;
        Assert.Equal(["--dtype"], Suggest($"{name} transfer --dt").Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(["auto", "cpu", "cuda"],
            Suggest($"{name} predict --device ").Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("convert-tokenizer", Suggest($"{name} con"), StringComparison.Ordinal);

        var (code, script, _) = Zett.Run("completion", "bash");
        Assert.Equal(0, code);
        Assert.Contains("[suggest:", script, StringComparison.Ordinal);
        Assert.Contains("complete -o default -F _zett_complete zett", script, StringComparison.Ordinal);
        Assert.StartsWith("autoload -U +X bashcompinit", Zett.Run("completion", "zsh").Out, StringComparison.Ordinal);
    }
}
