using System.CommandLine;
using System.CommandLine.Invocation;
using System.CommandLine.Parsing;
using ZeTT.Kernels;
using ZeTT.Runtime;

namespace ZeTT.Cli;

/// <summary>Entry point of the <c>zett</c> command. Exit codes: 0 success, 2 bad input or usage
/// (one line <c>error: …</c> on stderr), 1 an internal error (with its stack trace).</summary>
public static class Program
{
    /// <summary>Runs <c>zett</c> with <paramref name="args"/>.</summary>
    public static int Main(string[] args) => Run(args, CliConsole.System);

    /// <summary>The command tree: every sub-command, in the order <c>zett --help</c> lists them.
    /// Built per run (commands hold their option declarations).</summary>
    internal static RootCommand CreateRootCommand()
    {
        var root = new RootCommand("zett — zero-shot tokenizer transfer, native.")
        {
            new TransferCommand(),
            new ExportGgufCommand(),
            new PredictCommand(),
            new EvalCommand(),
            new GenerateCommand(),
            new TrainCommand(),
            new ApplyToFtCommand(),
            new ConvertTokenizerCommand(),
            new SurfaceFormsCommand(),
            new TokenizeCommand(),
            new InspectCommand(),
            new VersionCommand(),
            new CompletionCommand(),
        };
        foreach (Option option in root.Options)
        {
            if (option is VersionOption version)
            {
                version.Action = new PrintVersionAction();
            }
        }
        // `zett` alone prints the help, as `zett --help` does.
        root.SetAction(parse => root.Parse(["--help"]).Invoke(parse.InvocationConfiguration));
        return root;
    }

    internal static int Run(string[] args, CliConsole console)
    {
        // `zett help [COMMAND]` is `zett [COMMAND] --help`.
        if (args is ["help", .. string[] rest])
        {
            args = [.. rest, "--help"];
        }
        RootCommand root = CreateRootCommand();
        ParseResult parse = root.Parse(args);
        if (parse.Action is ParseErrorAction)
        {
            console.Error.WriteLine($"error: {UsageError(parse)}");
            return 2;
        }
        string name = parse.CommandResult.Command.Name;
        try
        {
            return parse.Invoke(new InvocationConfiguration
            {
                Output = console.Out,
                Error = console.Error,
                EnableDefaultExceptionHandler = false,
            });
        }
        catch (ZettException e)
        {
            console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException
            or UnauthorizedAccessException)
        {
            console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }
        catch (CudaException e)
        {
            // The GPU said no (out of memory after the backend's retries, a driver fault): one
            // line naming the call and the code; nothing was written (outputs are atomic).
            console.Error.WriteLine($"error: CUDA: {e.Message}");
            return 1;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            console.Error.WriteLine($"error: internal error in zett {name}: {e}");
            return 1;
        }
    }

    /// <summary>One parse error as one line, naming where help is. Errors of the whole line
    /// (an unreadable response file) come first; then a stray token, the likeliest cause of what
    /// follows (a misspelt option leaves a required one missing); then every missing required
    /// option and argument together; then the rest (a bad value).</summary>
    private static string UsageError(ParseResult parse)
    {
        Command command = parse.CommandResult.Command;
        bool atRoot = command is RootCommand;
        string help = atRoot ? "zett --help" : $"zett {command.Name} --help";
        string[] missing = [
            .. command.Options.Where(o => o.Required
                && parse.GetResult(o) is not OptionResult { IdentifierToken: not null })
                .Select(o => o.HelpName is null ? o.Name : $"{o.Name} {o.HelpName}"),
            .. command.Arguments.Where(a => a.Arity.MinimumNumberOfValues > 0
                && parse.GetResult(a) is not ArgumentResult { Tokens.Count: > 0 }).Select(a => a.Name),
        ];
        string message;
        if (parse.Errors.FirstOrDefault(e => e.SymbolResult is null) is { } whole)
        {
            message = Sentence(whole.Message);
        }
        else if (parse.UnmatchedTokens.Count > 0)
        {
            string token = parse.UnmatchedTokens[0];
            message = token.StartsWith('-') ? $"unknown option {token}"
                : atRoot ? $"unknown command '{token}'"
                : $"unexpected argument '{token}'";
        }
        else if (missing.Length > 0)
        {
            message = $"{command.Name} needs " + (missing.Length == 1 ? missing[0]
                : string.Join(", ", missing[..^1]) + " and " + missing[^1]);
        }
        else
        {
            message = Sentence(parse.Errors[0].Message);
        }
        return $"{message} (see {help})";
    }

    /// <summary>System.CommandLine's own sentences ("Response file not found 'x'.") as one
    /// line in the style of ours.</summary>
    private static string Sentence(string text)
    {
        text = string.Join(' ', text.Split((char[])['\n', '\r', '\t'],
            StringSplitOptions.RemoveEmptyEntries).Select(s => s.Trim())).TrimEnd('.');
        return text.Length > 1 && char.IsUpper(text[0]) && !char.IsUpper(text[1])
            ? char.ToLowerInvariant(text[0]) + text[1..] : text;
    }

    /// <summary><c>zett --version</c>: the version alone, as scripts expect.</summary>
    private sealed class PrintVersionAction : SynchronousCommandLineAction
    {
        public override int Invoke(ParseResult parseResult)
        {
            ArgumentNullException.ThrowIfNull(parseResult);
            parseResult.InvocationConfiguration.Output.WriteLine(VersionCommand.Version);
            return 0;
        }
    }
}
